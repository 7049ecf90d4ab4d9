package consumercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/appname"
	"github.com/tasker-systems/consumer/internal/textutil"
)

// newFlags returns a flag set that reports errors instead of exiting, with a usage line.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("consumer "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: consumer %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err.Error()}
	}
	return nil
}

// loadConfig reads the environment; any problem is a configuration error (exit 2).
func loadConfig(ctx context.Context) (*config.Config, error) {
	cfg, err := config.Load(ctx)
	if err != nil {
		return nil, usageError{textutil.OneLine(err.Error())}
	}
	return cfg, nil
}

// newLogger builds the zap logger of LOG_LEVEL and LOG_FORMAT.
func newLogger(cfg *config.Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil {
		return nil, usagef("LOG_LEVEL: %v", err)
	}
	var zc zap.Config
	if cfg.LogFormat == "console" {
		zc = zap.NewDevelopmentConfig()
	} else {
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.TimeKey = "ts"
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.OutputPaths = []string{"stderr"}
	zc.Sampling = nil // failures are logged once each; never drop them
	return zc.Build()
}

// applicationName names the consumer's pool connections in pg_stat_activity (its LISTEN
// connection is named by package listener).
const applicationName = "consumer"

// operatorPoolConns is the pool size of the operator commands: one query at a time.
const operatorPoolConns = 2

// connect opens the pool, naming the connections applicationName unless the connection string
// or PGAPPNAME names them, and bounding each connection attempt by CONSUMER_DB_CONNECT_TIMEOUT
// unless the connection string sets connect_timeout.
func connect(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, usagef("DATABASE_URL: %v", err)
	}
	appname.Default(pc.ConnConfig.RuntimeParams, applicationName)
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	pc.MaxConns = int32(cfg.DBMaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// withPool loads the configuration and runs f with a connected pool (for the operator commands).
func withPool(ctx context.Context, f func(*pgxpool.Pool) error) error {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	cfg.DBMaxConns = operatorPoolConns
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return f(pool)
}
