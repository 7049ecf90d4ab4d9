// Package config reads the consumer's settings from environment variables (see
// docs/configuration.md) with go-envconfig and validates them once, at start-up, with errors
// that name the variable.
//
// Every default is an exported XxxDefault constant, gathered in [Defaults]; [Process] applies
// such a struct of defaults to the variables that are not set, for this package and for the
// other programs of the project (the example worker) alike.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package config
