package config_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/tasker-systems/consumer/config"
)

func load(env map[string]string) (*config.Config, error) {
	return config.LoadFrom(context.Background(), envconfig.MapLookuper(env))
}

func TestDefaults(t *testing.T) {
	c, err := load(map[string]string{"DATABASE_URL": "postgres://x@localhost/db"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		DatabaseURL: "postgres://x@localhost/db", ListenDatabaseURL: "postgres://x@localhost/db", Mode: config.ModeHybrid,
		VisibilityTimeout: 30 * time.Second, PollInterval: time.Second, PollBatchSize: 100, Concurrency: 8,
		MaxReadCount: 5, CommandBuffer: 5000, NotifyBuffer: 10000, ShutdownTimeout: 30 * time.Second,
		HTTPAddr: ":9090", LogLevel: "info", LogFormat: "json", BatchSize: 64, DBMaxConns: 12,
		ListenerPing: 15 * time.Second, ReconnectMax: 10 * time.Second, PprofAddr: "127.0.0.1:6060", MaxMessageBytes: 4 << 20, ConnectTimeout: 10 * time.Second,
	}
	if *c != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", *c, want)
	}
	if !c.Mode.Listens() || !c.Mode.Polls() {
		t.Fatal("hybrid listens and polls")
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://x@localhost/db"}
	cases := map[string]string{
		"CONSUMER_VISIBILITY_TIMEOUT":  "abc",
		"CONSUMER_MODE":                "sometimes",
		"CONSUMER_POLL_INTERVAL":       "-1s",
		"CONSUMER_CONCURRENCY":         "0",
		"CONSUMER_POLL_BATCH_SIZE":     "many",
		"CONSUMER_MAX_READ_COUNT":      "-3",
		"CONSUMER_NOTIFICATION_BUFFER": "0",
		"LOG_LEVEL":                    "chatty",
		"LOG_FORMAT":                   "xml",
	}
	for variable, value := range cases {
		env := map[string]string{variable: value}
		for k, v := range base {
			env[k] = v
		}
		_, err := load(env)
		if err == nil {
			t.Errorf("%s=%s accepted", variable, value)
			continue
		}
		if !strings.Contains(err.Error(), variable) {
			t.Errorf("%s=%s: error %q does not name the variable", variable, value, err)
		}
	}
}

func TestSubSecondVisibilityTimeoutRejected(t *testing.T) {
	_, err := load(map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "CONSUMER_VISIBILITY_TIMEOUT": "500ms"})
	if err == nil || !strings.Contains(err.Error(), "CONSUMER_VISIBILITY_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
}

func TestDatabaseURLRequired(t *testing.T) {
	for _, env := range []map[string]string{{}, {"DATABASE_URL": ""}, {"DATABASE_URL": "  "}} {
		_, err := load(env)
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Fatalf("env %v: err = %v, want DATABASE_URL named", env, err)
		}
	}
}

func TestModes(t *testing.T) {
	for mode, want := range map[config.Mode][2]bool{config.ModeHybrid: {true, true}, config.ModeEventDriven: {true, false}, config.ModePolling: {false, true}} {
		if mode.Listens() != want[0] || mode.Polls() != want[1] {
			t.Errorf("%s: listens=%v polls=%v", mode, mode.Listens(), mode.Polls())
		}
	}
	c, err := load(map[string]string{"DATABASE_URL": "postgres://a@localhost/db", "LISTEN_DATABASE_URL": "postgres://b@localhost/db", "CONSUMER_MODE": "polling"})
	if err != nil || c.ListenDatabaseURL != "postgres://b@localhost/db" || c.Mode != config.ModePolling {
		t.Fatalf("c = %+v, err = %v", c, err)
	}
}

func TestDefaultsAreTheConstants(t *testing.T) {
	d := config.Defaults()
	if d.VisibilityTimeout != config.VisibilityTimeoutDefault || d.Mode != config.ModeDefault || d.HTTPAddr != config.HTTPAddrDefault ||
		d.Concurrency != config.ConcurrencyDefault || d.DatabaseURL != "" || d.DBMaxConns != 0 {
		t.Fatalf("Defaults() = %+v", d)
	}
	c, err := load(map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "CONSUMER_CONCURRENCY": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DBMaxConns != 2+config.DBMaxConnsExtra {
		t.Errorf("DBMaxConns = %d, want concurrency + %d", c.DBMaxConns, config.DBMaxConnsExtra)
	}
}

// A variable that is set wins over its default even when it is empty: that is how the HTTP
// server is turned off, and a zero where zero is invalid stays an error.
func TestSetButEmptyIsNotTheDefault(t *testing.T) {
	c, err := load(map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "CONSUMER_HTTP_ADDR": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "" {
		t.Errorf("CONSUMER_HTTP_ADDR= gave %q, want empty (disabled)", c.HTTPAddr)
	}
	for _, v := range []string{"CONSUMER_CONCURRENCY", "CONSUMER_POLL_INTERVAL"} {
		if _, err := load(map[string]string{"DATABASE_URL": "postgres://x@localhost/db", v: "0"}); err == nil || !strings.HasPrefix(err.Error(), v+": ") {
			t.Errorf("%s=0: error %v, want one naming the variable", v, err)
		}
	}
}

func TestProcessWithTheDefaultsOfAnotherProgram(t *testing.T) {
	type settings struct {
		Name  string        `env:"APP_NAME"`
		Every time.Duration `env:"APP_EVERY"`
		Off   string        `env:"APP_OFF"`
	}
	var s settings
	env := envconfig.MapLookuper(map[string]string{"APP_OFF": ""})
	if err := config.Process(context.Background(), &s, settings{Name: "demo", Every: 90 * time.Second, Off: "on"}, env); err != nil {
		t.Fatal(err)
	}
	if s != (settings{Name: "demo", Every: 90 * time.Second}) {
		t.Errorf("Process = %+v", s)
	}
	s = settings{}
	err := config.Process(context.Background(), &s, settings{}, envconfig.MapLookuper(map[string]string{"APP_EVERY": "soon"}))
	if err == nil || !strings.HasPrefix(err.Error(), "APP_EVERY: ") {
		t.Errorf("bad duration: %v, want an error naming APP_EVERY", err)
	}
	if err := config.Process(context.Background(), &s, config.Defaults(), env); err == nil {
		t.Error("defaults of another type accepted")
	}
}

func TestOverflowsAndBadAddressesAreRefusedNamingTheVariable(t *testing.T) {
	base := "postgres://x@localhost/db"
	for v, value := range map[string]string{
		"CONSUMER_CONCURRENCY":        "9999999999",
		"CONSUMER_DB_MAX_CONNS":       "3000000000",
		"CONSUMER_POLL_BATCH_SIZE":    "10000000",
		"CONSUMER_VISIBILITY_TIMEOUT": "1000000h",
		"CONSUMER_SHUTDOWN_TIMEOUT":   "100000h",
		"CONSUMER_MAX_MESSAGE_BYTES":  "12",
		"LISTEN_DATABASE_URL":         "postgres://x@localhost:notaport/db",
		"DATABASE_URL":                "postgres://x@[::1/db",
	} {
		env := map[string]string{"DATABASE_URL": base, v: value}
		if _, err := load(env); err == nil || !strings.Contains(err.Error(), v+": ") {
			t.Errorf("%s=%s: err = %v, want an error naming %s", v, value, err, v)
		}
	}
	if _, err := load(map[string]string{"DATABASE_URL": base, "CONSUMER_PPROF": "true", "CONSUMER_PPROF_ADDR": ":6060"}); err == nil ||
		!strings.Contains(err.Error(), "CONSUMER_PPROF_ADDR: ") {
		t.Errorf("pprof on every interface: err = %v, want it refused", err)
	}
	c, err := load(map[string]string{"DATABASE_URL": base, "CONSUMER_PPROF": "true", "CONSUMER_MAX_MESSAGE_BYTES": "512KiB"})
	if err != nil || c.MaxMessageBytes != 512<<10 || c.PprofAddr != "127.0.0.1:6060" {
		t.Fatalf("c = %+v, err = %v", c, err)
	}
}

func TestByteSizeRoundTrips(t *testing.T) {
	for text, want := range map[string]config.ByteSize{"4MiB": 4 << 20, "1024": 1 << 10, "3B": 3, "2GiB": 2 << 30, " 7 KiB ": 7 << 10} {
		var b config.ByteSize
		if err := b.EnvDecode(text); err != nil || b != want {
			t.Errorf("%q: %v %v, want %v", text, b, err, want)
		}
		var back config.ByteSize
		if err := back.EnvDecode(want.String()); err != nil || back != want {
			t.Errorf("%v round trip: %v %v", want, back, err)
		}
	}
	for _, bad := range []string{"", "-1", "1.5MiB", "4MB", "99999999999GiB"} {
		var b config.ByteSize
		if err := b.EnvDecode(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, b)
		}
	}
}
