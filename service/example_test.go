package service_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/migrate"
	"github.com/tasker-systems/consumer/service"
	"github.com/tasker-systems/consumer/template"
	"github.com/tasker-systems/consumer/workflow"
)

// The consumer in a few lines: configuration, schema, templates, the workflow engine as the
// actor's handlers, and the pipeline until SIGTERM (after which in-flight work drains).
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zap.NewExample()
	cfg, err := config.Load(ctx)
	if err != nil {
		log.Fatal("configuration", zap.Error(err))
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		log.Fatal("connect", zap.Error(err))
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, log); err != nil {
		log.Fatal("migrate", zap.Error(err))
	}
	templates, err := template.LoadDir(cfg.TemplatePath)
	if err != nil {
		log.Fatal("templates", zap.Error(err))
	}
	if err := workflow.Register(ctx, pool, templates, log); err != nil {
		log.Fatal("register", zap.Error(err))
	}
	engine := workflow.NewEngine(workflow.EngineOptions{Logger: log})
	svc, err := service.New(cfg, pool, engine.Handlers(), log, prometheus.NewRegistry())
	if err != nil {
		log.Fatal("service", zap.Error(err))
	}
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped", zap.Error(err))
	}
}
