// Command consumer is the orchestration consumer: it serves the orchestration queues (run),
// installs its schema (migrate), and helps operators submit tasks, inspect them and handle dead
// letters. See `consumer --help`; the commands live in package consumercli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasker-systems/consumer/cmd/consumer/consumercli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := consumercli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, version)
	stop()
	os.Exit(code)
}
