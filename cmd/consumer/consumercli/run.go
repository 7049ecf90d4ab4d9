package consumercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/tasker-systems/consumer/migrate"
	"github.com/tasker-systems/consumer/ops"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// httpShutdownTimeout bounds the shutdown of the HTTP servers.
const httpShutdownTimeout = 5 * time.Second

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", "migrate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		rep, err := migrate.Up(ctx, pool, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "migrated: pgmq %s %s, schema version %d -> %d\n", rep.PGMQ, rep.PGMQVersion, rep.FromVersion, rep.ToVersion)
		return nil
	})
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run", "[run]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	// Templates are read before touching the database: a bad file is a configuration error.
	var templates []*template.Template
	if cfg.TemplatePath != "" {
		if templates, err = template.LoadDir(cfg.TemplatePath); err != nil {
			return usagef("CONSUMER_TEMPLATE_PATH: %v", err)
		}
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, log.Named("migrate")); err != nil {
		return err
	}
	if err := workflow.Register(ctx, pool, templates, log.Named("templates")); err != nil {
		return err
	}
	engine := workflow.NewEngine(workflow.EngineOptions{Logger: log.Named("workflow")})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := service.New(cfg, pool, engine.Handlers(), log, reg)
	if err != nil {
		return err
	}

	// The servers and the service stop together: when one fails for good, the others are
	// stopped and the process ends with its error, instead of running half-served.
	g, gctx := errgroup.WithContext(ctx)
	serve := func(variable, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", variable, addr, err)
		}
		log.Info("http listening", zap.String("variable", variable), zap.String("addr", ln.Addr().String()))
		g.Go(func() error { return ops.Serve(gctx, ln, h, httpShutdownTimeout) })
		return nil
	}
	if cfg.HTTPAddr != "" {
		if err := serve("CONSUMER_HTTP_ADDR", cfg.HTTPAddr, ops.Handler(svc, reg)); err != nil {
			return err
		}
	}
	if cfg.Pprof {
		if err := serve("CONSUMER_PPROF_ADDR", cfg.PprofAddr, ops.ProfilingHandler()); err != nil {
			return err
		}
	}
	g.Go(func() error {
		err := svc.Run(gctx)
		if err == nil && ctx.Err() == nil && gctx.Err() != nil {
			return nil // stopped because a server failed: that server's error is the one reported
		}
		if err == nil && ctx.Err() == nil {
			return errors.New("consumer service stopped unexpectedly")
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("consumer stopped")
	return nil
}
