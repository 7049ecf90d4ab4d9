package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tasker-systems/consumer/config"
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
	cfg, err := config.LoadFrom(ctx, envconfig.OsLookuper())
	if err != nil {
		return nil, usageError{strings.ReplaceAll(err.Error(), "\n", "; ")}
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

// connect opens the pool, naming the connections "consumer" unless the URL names them.
func connect(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, usagef("DATABASE_URL: %v", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "application_name") {
		pc.ConnConfig.RuntimeParams["application_name"] = "consumer"
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
	cfg.DBMaxConns = 2
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return f(pool)
}
