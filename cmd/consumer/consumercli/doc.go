// Package consumercli is the command line of the consumer: it parses each command's flags,
// wires the configuration, the database and the libraries that do the work (service, migrate,
// workflow, internal/dlq, internal/outcome), and prints their results. cmd/consumer only adds
// the process around it: arguments, signals, the exit code.
package consumercli
