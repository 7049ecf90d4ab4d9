// Package config reads the consumer's settings from environment variables with go-envconfig
// and validates them once, at start-up, with errors that name the variable. Every variable is
// listed in docs/configuration.md.
package config
