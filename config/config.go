package config

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// Defaults of the variables (see docs/configuration.md), applied by LoadFrom to every variable
// that is not set. A variable that is set keeps its value even when it is empty or zero:
// CONSUMER_HTTP_ADDR= disables the HTTP server, CONSUMER_CONCURRENCY=0 is an error.
const (
	ModeDefault              = ModeHybrid
	VisibilityTimeoutDefault = 30 * time.Second
	PollIntervalDefault      = time.Second
	PollBatchSizeDefault     = 100
	ConcurrencyDefault       = 8
	MaxReadCountDefault      = 5
	CommandBufferDefault     = 5000
	NotifyBufferDefault      = 10000
	ShutdownTimeoutDefault   = 30 * time.Second
	HTTPAddrDefault          = ":9090"
	LogLevelDefault          = "info"
	LogFormatDefault         = "json"
	BatchSizeDefault         = 64
	ListenerPingDefault      = 15 * time.Second
	ReconnectMaxDefault      = 10 * time.Second
	PprofAddrDefault         = "127.0.0.1:6060"
	MaxMessageBytesDefault   = 4 << 20
	ConnectTimeoutDefault    = 10 * time.Second
	// DBMaxConnsExtra is what the pool has beyond CONSUMER_CONCURRENCY when
	// CONSUMER_DB_MAX_CONNS is unset or 0: the poller, the health checks and the batch
	// transactions need connections of their own.
	DBMaxConnsExtra = 4
)

// Config is every setting of the consumer. The env tags are the contract of
// docs/configuration.md.
type Config struct {
	DatabaseURL       string        `env:"DATABASE_URL, required"`
	ListenDatabaseURL string        `env:"LISTEN_DATABASE_URL"` // "": DatabaseURL
	Mode              Mode          `env:"CONSUMER_MODE"`
	VisibilityTimeout time.Duration `env:"CONSUMER_VISIBILITY_TIMEOUT"`
	PollInterval      time.Duration `env:"CONSUMER_POLL_INTERVAL"`
	PollBatchSize     int           `env:"CONSUMER_POLL_BATCH_SIZE"`
	Concurrency       int           `env:"CONSUMER_CONCURRENCY"`
	MaxReadCount      int           `env:"CONSUMER_MAX_READ_COUNT"`
	CommandBuffer     int           `env:"CONSUMER_COMMAND_BUFFER"`
	NotifyBuffer      int           `env:"CONSUMER_NOTIFICATION_BUFFER"`
	ShutdownTimeout   time.Duration `env:"CONSUMER_SHUTDOWN_TIMEOUT"`
	HTTPAddr          string        `env:"CONSUMER_HTTP_ADDR"`
	TemplatePath      string        `env:"CONSUMER_TEMPLATE_PATH"`
	LogLevel          string        `env:"LOG_LEVEL"`
	LogFormat         string        `env:"LOG_FORMAT"`

	// Beyond the product's required variables (each listed in docs/configuration.md):
	BatchSize    int           `env:"CONSUMER_BATCH_SIZE"`             // messages per handler transaction
	DBMaxConns   int           `env:"CONSUMER_DB_MAX_CONNS"`           // pool size; 0: Concurrency + DBMaxConnsExtra
	ListenerPing time.Duration `env:"CONSUMER_LISTENER_PING_INTERVAL"` // idle health ping of the LISTEN connection
	ReconnectMax time.Duration `env:"CONSUMER_RECONNECT_MAX_DELAY"`    // cap of the listener's reconnect backoff
	Pprof        bool          `env:"CONSUMER_PPROF"`                  // serve /debug/pprof/ on CONSUMER_PPROF_ADDR
	PprofAddr    string        `env:"CONSUMER_PPROF_ADDR"`             // loopback only
	// ConnectTimeout bounds each connection attempt unless the connection string sets
	// connect_timeout: a server that accepts TCP and never answers must not hang a command.
	ConnectTimeout time.Duration `env:"CONSUMER_DB_CONNECT_TIMEOUT"`

	// MaxMessageBytes: larger bodies are dead-lettered (message_too_large) without being read.
	MaxMessageBytes ByteSize `env:"CONSUMER_MAX_MESSAGE_BYTES"`
}

// Upper bounds: a value beyond them is a typo or an overflow, never a useful setting.
const (
	maxDuration = 24 * time.Hour
	// maxVisibilityTimeout keeps visibility timeouts far inside PGMQ's integer seconds.
	maxVisibilityTimeout = 12 * time.Hour
	maxCount             = 1_000_000
	// maxConns stays within the pool's int32 and any server's max_connections.
	maxConns = 10_000
)

// Defaults returns the settings of an environment that sets nothing but DATABASE_URL, before
// the settings derived from others (ListenDatabaseURL, DBMaxConns) are filled in.
func Defaults() Config {
	return Config{
		Mode:              ModeDefault,
		VisibilityTimeout: VisibilityTimeoutDefault,
		PollInterval:      PollIntervalDefault,
		PollBatchSize:     PollBatchSizeDefault,
		Concurrency:       ConcurrencyDefault,
		MaxReadCount:      MaxReadCountDefault,
		CommandBuffer:     CommandBufferDefault,
		NotifyBuffer:      NotifyBufferDefault,
		ShutdownTimeout:   ShutdownTimeoutDefault,
		HTTPAddr:          HTTPAddrDefault,
		LogLevel:          LogLevelDefault,
		LogFormat:         LogFormatDefault,
		BatchSize:         BatchSizeDefault,
		ListenerPing:      ListenerPingDefault,
		ReconnectMax:      ReconnectMaxDefault,
		PprofAddr:         PprofAddrDefault,
		ConnectTimeout:    ConnectTimeoutDefault,
		MaxMessageBytes:   MaxMessageBytesDefault,
	}
}

// Load reads the configuration from the process environment.
func Load(ctx context.Context) (*Config, error) {
	return LoadFrom(ctx, envconfig.OsLookuper())
}

// LoadFrom reads the configuration through lookuper (tests use envconfig.MapLookuper), fills
// in the defaults and validates it.
func LoadFrom(ctx context.Context, lookuper envconfig.Lookuper) (*Config, error) {
	var c Config
	if err := Process(ctx, &c, Defaults(), lookuper); err != nil {
		return nil, err
	}
	c.ListenDatabaseURL = cmp.Or(c.ListenDatabaseURL, c.DatabaseURL)
	c.DBMaxConns = cmp.Or(c.DBMaxConns, c.Concurrency+DBMaxConnsExtra)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkLoopback reports an error unless addr (host:port) names a loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// Validate checks every setting and reports all problems at once, each naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
	}
	for name, url := range map[string]string{"DATABASE_URL": c.DatabaseURL, "LISTEN_DATABASE_URL": c.ListenDatabaseURL} {
		if strings.TrimSpace(url) == "" {
			if name == "DATABASE_URL" {
				bad(name, "required")
			}
			continue
		}
		if name == "LISTEN_DATABASE_URL" && url == c.DatabaseURL {
			continue // the default; checked as DATABASE_URL
		}
		if _, err := pgx.ParseConfig(url); err != nil {
			bad(name, "not a valid connection string: %v", err)
		}
	}
	switch c.Mode {
	case ModeHybrid, ModeEventDriven, ModePolling:
	default:
		bad("CONSUMER_MODE", "%q is not one of hybrid, event_driven, polling", c.Mode)
	}
	if c.VisibilityTimeout < time.Second {
		bad("CONSUMER_VISIBILITY_TIMEOUT", "%s is below 1s (PGMQ counts visibility in whole seconds)", c.VisibilityTimeout)
	}
	if c.VisibilityTimeout > maxVisibilityTimeout {
		bad("CONSUMER_VISIBILITY_TIMEOUT", "%s is above %s", c.VisibilityTimeout, maxVisibilityTimeout)
	}
	positiveDuration := map[string]time.Duration{
		"CONSUMER_POLL_INTERVAL":          c.PollInterval,
		"CONSUMER_SHUTDOWN_TIMEOUT":       c.ShutdownTimeout,
		"CONSUMER_LISTENER_PING_INTERVAL": c.ListenerPing,
		"CONSUMER_RECONNECT_MAX_DELAY":    c.ReconnectMax,
		"CONSUMER_DB_CONNECT_TIMEOUT":     c.ConnectTimeout,
	}
	for name, d := range positiveDuration {
		if d <= 0 || d > maxDuration {
			bad(name, "must be a positive duration of at most %s, got %s", maxDuration, d)
		}
	}
	positiveInt := []struct {
		name     string
		v, limit int
	}{
		{"CONSUMER_POLL_BATCH_SIZE", c.PollBatchSize, maxCount}, {"CONSUMER_CONCURRENCY", c.Concurrency, maxConns},
		{"CONSUMER_MAX_READ_COUNT", c.MaxReadCount, maxCount}, {"CONSUMER_COMMAND_BUFFER", c.CommandBuffer, maxCount},
		{"CONSUMER_NOTIFICATION_BUFFER", c.NotifyBuffer, maxCount}, {"CONSUMER_BATCH_SIZE", c.BatchSize, maxCount},
		{"CONSUMER_DB_MAX_CONNS", c.DBMaxConns, maxConns},
	}
	for _, p := range positiveInt {
		if p.v < 1 || p.v > p.limit {
			bad(p.name, "must be from 1 to %d, got %d", p.limit, p.v)
		}
	}
	if c.MaxMessageBytes < 1024 {
		bad("CONSUMER_MAX_MESSAGE_BYTES", "%s is below 1KiB", c.MaxMessageBytes)
	}
	if c.Pprof {
		if err := checkLoopback(c.PprofAddr); err != nil {
			bad("CONSUMER_PPROF_ADDR", "%v: profiles expose the process's internals, so they are served on loopback only", err)
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
