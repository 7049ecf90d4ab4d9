package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Mode selects how the consumer learns about new messages.
type Mode string

const (
	// ModeHybrid: LISTEN/NOTIFY plus the fallback poller (the default).
	ModeHybrid Mode = "hybrid"
	// ModeEventDriven: LISTEN/NOTIFY only, plus a full poll after every (re)connect.
	ModeEventDriven Mode = "event_driven"
	// ModePolling: the poller only (for PgBouncer in transaction mode, which breaks LISTEN).
	ModePolling Mode = "polling"
)

// Listens reports whether the mode uses LISTEN/NOTIFY.
func (m Mode) Listens() bool { return m == ModeHybrid || m == ModeEventDriven }

// Polls reports whether the mode runs the periodic fallback poller.
func (m Mode) Polls() bool { return m == ModeHybrid || m == ModePolling }

// Config is every setting of the consumer. The env tags are part of the product's outside
// contract (docs/configuration.md): rename one only with a migration path.
type Config struct {
	DatabaseURL       string        `env:"DATABASE_URL, required"`
	ListenDatabaseURL string        `env:"LISTEN_DATABASE_URL"`
	Mode              Mode          `env:"CONSUMER_MODE, default=hybrid"`
	VisibilityTimeout time.Duration `env:"CONSUMER_VISIBILITY_TIMEOUT, default=30s"`
	PollInterval      time.Duration `env:"CONSUMER_POLL_INTERVAL, default=1s"`
	PollBatchSize     int           `env:"CONSUMER_POLL_BATCH_SIZE, default=100"`
	Concurrency       int           `env:"CONSUMER_CONCURRENCY, default=8"`
	MaxReadCount      int           `env:"CONSUMER_MAX_READ_COUNT, default=5"`
	CommandBuffer     int           `env:"CONSUMER_COMMAND_BUFFER, default=5000"`
	NotifyBuffer      int           `env:"CONSUMER_NOTIFICATION_BUFFER, default=10000"`
	ShutdownTimeout   time.Duration `env:"CONSUMER_SHUTDOWN_TIMEOUT, default=30s"`
	HTTPAddr          string        `env:"CONSUMER_HTTP_ADDR, default=:9090"`
	TemplatePath      string        `env:"CONSUMER_TEMPLATE_PATH"`
	LogLevel          string        `env:"LOG_LEVEL, default=info"`
	LogFormat         string        `env:"LOG_FORMAT, default=json"`

	// Tuning knobs (also listed in docs/configuration.md):
	BatchSize    int           `env:"CONSUMER_BATCH_SIZE, default=64"`              // messages per handler transaction
	DBMaxConns   int           `env:"CONSUMER_DB_MAX_CONNS"`                        // pool size; 0 = concurrency + 4
	ListenerPing time.Duration `env:"CONSUMER_LISTENER_PING_INTERVAL, default=15s"` // idle health ping of the LISTEN connection
	ReconnectMax time.Duration `env:"CONSUMER_RECONNECT_MAX_DELAY, default=10s"`    // cap of the listener's reconnect backoff
	Pprof        bool          `env:"CONSUMER_PPROF, default=false"`                // serve /debug/pprof/ on CONSUMER_HTTP_ADDR
}

// Load reads the configuration from the process environment.
func Load(ctx context.Context) (*Config, error) {
	return LoadFrom(ctx, envconfig.OsLookuper())
}

// LoadFrom reads the configuration through lookuper (tests use envconfig.MapLookuper).
func LoadFrom(ctx context.Context, lookuper envconfig.Lookuper) (*Config, error) {
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: lookuper}); err != nil {
		return nil, EnvError(err, &c)
	}
	if c.ListenDatabaseURL == "" {
		c.ListenDatabaseURL = c.DatabaseURL
	}
	if c.DBMaxConns == 0 {
		c.DBMaxConns = c.Concurrency + 4
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks every setting and reports all problems at once, each naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.DatabaseURL) == "" {
		bad("DATABASE_URL", "required")
	}
	switch c.Mode {
	case ModeHybrid, ModeEventDriven, ModePolling:
	default:
		bad("CONSUMER_MODE", "%q is not one of hybrid, event_driven, polling", c.Mode)
	}
	if c.VisibilityTimeout < time.Second {
		bad("CONSUMER_VISIBILITY_TIMEOUT", "%s is below 1s (PGMQ counts visibility in whole seconds)", c.VisibilityTimeout)
	}
	positiveDuration := map[string]time.Duration{
		"CONSUMER_POLL_INTERVAL":          c.PollInterval,
		"CONSUMER_SHUTDOWN_TIMEOUT":       c.ShutdownTimeout,
		"CONSUMER_LISTENER_PING_INTERVAL": c.ListenerPing,
		"CONSUMER_RECONNECT_MAX_DELAY":    c.ReconnectMax,
	}
	for name, d := range positiveDuration {
		if d <= 0 {
			bad(name, "must be a positive duration, got %s", d)
		}
	}
	positiveInt := []struct {
		name string
		v    int
	}{
		{"CONSUMER_POLL_BATCH_SIZE", c.PollBatchSize}, {"CONSUMER_CONCURRENCY", c.Concurrency},
		{"CONSUMER_MAX_READ_COUNT", c.MaxReadCount}, {"CONSUMER_COMMAND_BUFFER", c.CommandBuffer},
		{"CONSUMER_NOTIFICATION_BUFFER", c.NotifyBuffer}, {"CONSUMER_BATCH_SIZE", c.BatchSize},
		{"CONSUMER_DB_MAX_CONNS", c.DBMaxConns},
	}
	for _, p := range positiveInt {
		if p.v < 1 {
			bad(p.name, "must be at least 1, got %d", p.v)
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		bad("LOG_FORMAT", "%q is not one of json, console", c.LogFormat)
	}
	return errors.Join(errs...)
}
