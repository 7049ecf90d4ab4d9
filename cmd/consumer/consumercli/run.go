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

	"github.com/tasker-systems/consumer/migrate"
	"github.com/tasker-systems/consumer/ops"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// Timeouts of the HTTP server of /healthz, /readyz and /metrics.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpShutdownTimeout   = 5 * time.Second
)

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

	var srv *http.Server
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("CONSUMER_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
		srv = &http.Server{Handler: ops.Handler(svc, reg, cfg.Pprof), ReadHeaderTimeout: httpReadHeaderTimeout}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server failed", zap.Error(err))
			}
		}()
		log.Info("http listening", zap.String("addr", ln.Addr().String()))
	}

	err = svc.Run(ctx)
	if srv != nil {
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
		_ = srv.Shutdown(shutCtx)
		cancel()
	}
	if err != nil {
		return err
	}
	log.Info("consumer stopped")
	return nil
}
