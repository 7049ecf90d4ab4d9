// Package config reads the consumer's settings from environment variables (SPEC §7) with
// go-envconfig and validates them once, at start-up, with errors that name the variable.
package config
