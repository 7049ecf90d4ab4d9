// Command example-worker runs the demo step handlers of testdata/templates (demo.square,
// demo.double, demo.add, demo.sum, demo.flaky) with the worker SDK (package worker).
//
// Configuration (environment variables):
//
//	DATABASE_URL               required; PostgreSQL connection string of the pool
//	LISTEN_DATABASE_URL        default DATABASE_URL; direct connection for LISTEN
//	WORKER_NAMESPACE           default demo; the queue is worker_<namespace>_queue
//	WORKER_CONCURRENCY         default 8; steps running at once
//	WORKER_VISIBILITY_TIMEOUT  default 30s; claim of a dispatch, extended by heartbeats
//	WORKER_HEARTBEAT_INTERVAL  default 0 (visibility timeout / 3); negative disables
//	WORKER_POLL_INTERVAL       default 1s; fallback poll period
//	WORKER_SHUTDOWN_TIMEOUT    default 30s; how long running steps may finish on SIGTERM
//	WORKER_STEP_DELAY          default 0; an artificial delay per step (demos, chaos tests)
//	WORKER_ID                  default <hostname>-<pid>; metadata.worker_id of each result
//	LOG_LEVEL / LOG_FORMAT     default info / json (debug, info, warn, error / json, console)
//
// Durations use Go syntax (500ms, 30s). An invalid setting exits with status 2 and one line
// naming the variable. SIGINT or SIGTERM stops claiming, lets running steps finish and exits 0.
// The pool's connections are named example-worker in pg_stat_activity (the LISTEN connection
// example-worker-listener) unless the connection string sets application_name.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	settings "github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/worker"
)

const applicationName = "example-worker"

// NamespaceDefault is the namespace of testdata/templates.
const NamespaceDefault = "demo"

// config is the program's configuration; the env tags are its interface.
type config struct {
	DatabaseURL       string        `env:"DATABASE_URL"`
	ListenDatabaseURL string        `env:"LISTEN_DATABASE_URL"`
	Namespace         string        `env:"WORKER_NAMESPACE"`
	Concurrency       int           `env:"WORKER_CONCURRENCY"`
	VisibilityTimeout time.Duration `env:"WORKER_VISIBILITY_TIMEOUT"`
	HeartbeatInterval time.Duration `env:"WORKER_HEARTBEAT_INTERVAL"`
	PollInterval      time.Duration `env:"WORKER_POLL_INTERVAL"`
	ShutdownTimeout   time.Duration `env:"WORKER_SHUTDOWN_TIMEOUT"`
	StepDelay         time.Duration `env:"WORKER_STEP_DELAY"`
	WorkerID          string        `env:"WORKER_ID"`
	LogLevel          string        `env:"LOG_LEVEL"`
	LogFormat         string        `env:"LOG_FORMAT"`

	pool  *pgxpool.Config // parsed DatabaseURL
	level zapcore.Level
}

// defaults are the worker SDK's own defaults, and the consumer's for the shared LOG_ variables.
func defaults() config {
	return config{
		Namespace:         NamespaceDefault,
		Concurrency:       worker.ConcurrencyDefault,
		VisibilityTimeout: worker.VisibilityTimeoutDefault,
		PollInterval:      worker.PollIntervalDefault,
		ShutdownTimeout:   worker.ShutdownTimeoutDefault,
		LogLevel:          settings.LogLevelDefault,
		LogFormat:         settings.LogFormatDefault,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, envconfig.OsLookuper(), os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program: it returns the exit status (0 after a graceful shutdown, 1 on a runtime
// failure, 2 for invalid configuration). Logs and errors go to stderr.
func run(ctx context.Context, env envconfig.Lookuper, stderr io.Writer) int {
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintf(stderr, "example-worker: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	defer func() { _ = log.Sync() }()

	pool, err := pgxpool.NewWithConfig(ctx, cfg.pool)
	if err != nil {
		log.Error("connect", zap.Error(err))
		return 1
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0 // signalled while starting
		}
		log.Error("connect: database unreachable", zap.Error(err))
		return 1
	}

	w := &worker.Worker{
		Pool:              pool,
		ListenConnString:  cfg.ListenDatabaseURL,
		Namespace:         cfg.Namespace,
		Concurrency:       cfg.Concurrency,
		VisibilityTimeout: cfg.VisibilityTimeout,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PollInterval:      cfg.PollInterval,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		WorkerID:          cfg.WorkerID,
		Logger:            log,
	}
	register(w, cfg.StepDelay)
	if err := w.Run(ctx); err != nil {
		log.Error("worker", zap.Error(err))
		return 1
	}
	return 0
}

// loadConfig reads and checks the configuration. The error is one line naming the variable.
func loadConfig(ctx context.Context, env envconfig.Lookuper) (*config, error) {
	var c config
	if err := settings.Process(ctx, &c, defaults(), env); err != nil {
		return nil, err
	}
	if strings.TrimSpace(c.DatabaseURL) == "" {
		return nil, errors.New("DATABASE_URL: required")
	}
	pool, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	appname.Default(pool.ConnConfig.RuntimeParams, applicationName)
	c.ListenDatabaseURL = cmp.Or(c.ListenDatabaseURL, c.DatabaseURL)
	if err := messages.ValidateNamespace(c.Namespace); err != nil {
		return nil, fmt.Errorf("WORKER_NAMESPACE: %w", err)
	}
	switch {
	case c.Concurrency < 1:
		return nil, fmt.Errorf("WORKER_CONCURRENCY: must be at least 1, got %d", c.Concurrency)
	case c.VisibilityTimeout < time.Second:
		return nil, fmt.Errorf("WORKER_VISIBILITY_TIMEOUT: %v is below 1s (PGMQ counts whole seconds)", c.VisibilityTimeout)
	case c.HeartbeatInterval >= c.VisibilityTimeout:
		return nil, fmt.Errorf("WORKER_HEARTBEAT_INTERVAL: %v must be shorter than WORKER_VISIBILITY_TIMEOUT %v",
			c.HeartbeatInterval, c.VisibilityTimeout)
	case c.PollInterval <= 0:
		return nil, fmt.Errorf("WORKER_POLL_INTERVAL: must be positive, got %v", c.PollInterval)
	case c.ShutdownTimeout <= 0:
		return nil, fmt.Errorf("WORKER_SHUTDOWN_TIMEOUT: must be positive, got %v", c.ShutdownTimeout)
	case c.StepDelay < 0:
		return nil, fmt.Errorf("WORKER_STEP_DELAY: must not be negative, got %v", c.StepDelay)
	}
	if !strings.Contains(c.DatabaseURL, "pool_max_conns") {
		// Handlers here do not use the database, but each running step needs a connection for
		// its heartbeats and its result, and the poller one more.
		pool.MaxConns = int32(c.Concurrency) + 2
	}
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return nil, fmt.Errorf("LOG_FORMAT: %q is not one of json, console", c.LogFormat)
	}
	c.pool, c.level = pool, level
	return &c, nil
}

// newLogger builds the zap logger of LOG_LEVEL and LOG_FORMAT, writing to out.
func newLogger(c *config, out io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	var encoder zapcore.Encoder
	if c.LogFormat == "console" {
		encoder = zapcore.NewConsoleEncoder(enc)
	} else {
		encoder = zapcore.NewJSONEncoder(enc)
	}
	core := zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(out)), c.level)
	return zap.New(core).With(zap.String("app", applicationName))
}
