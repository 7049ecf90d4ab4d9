package consumercli

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// run runs the CLI in-process with env and returns the exit code and outputs.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for _, k := range []string{"DATABASE_URL", "LISTEN_DATABASE_URL", "CONSUMER_MODE", "CONSUMER_VISIBILITY_TIMEOUT", "CONSUMER_TEMPLATE_PATH", "CONSUMER_HTTP_ADDR", "CONSUMER_PPROF", "CONSUMER_PPROF_ADDR", "CONSUMER_DB_CONNECT_TIMEOUT"} {
		t.Setenv(k, "") // restores the variable after the test
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, &stdout, &stderr, "test")
	return code, stdout.String(), stderr.String()
}

func TestCLIErrorPaths(t *testing.T) {
	okEnv := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"unknown command", okEnv, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"missing DATABASE_URL", nil, []string{"migrate"}, exitUsage, "DATABASE_URL: required"},
		{"bad duration", map[string]string{"DATABASE_URL": "x", "CONSUMER_VISIBILITY_TIMEOUT": "soon"}, []string{"run"}, exitUsage, "CONSUMER_VISIBILITY_TIMEOUT"},
		{"bad mode", map[string]string{"DATABASE_URL": "x", "CONSUMER_MODE": "psychic"}, []string{"run"}, exitUsage, "CONSUMER_MODE"},
		{"bad template dir", map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "CONSUMER_TEMPLATE_PATH": "/nonexistent/templates"}, []string{"run"}, exitUsage, "CONSUMER_TEMPLATE_PATH"},
		{"unknown flag", okEnv, []string{"submit", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"submit without name", okEnv, []string{"submit", "--namespace", "demo", "--version", "1"}, exitUsage, "--name is required"},
		{"submit bad context", okEnv, []string{"submit", "--namespace", "demo", "--name", "x", "--version", "1", "--context", "[1]"}, exitUsage, "--context must be a JSON object"},
		{"status without uuid", okEnv, []string{"status"}, exitUsage, "want exactly one TASK_UUID"},
		{"status bad uuid", okEnv, []string{"status", "nope"}, exitUsage, `"nope" is not a UUID`},
		{"dlq without subcommand", okEnv, []string{"dlq"}, exitUsage, "want a subcommand"},
		{"dlq unknown subcommand", okEnv, []string{"dlq", "purge"}, exitUsage, `unknown subcommand "purge"`},
		{"dlq replay no ids", okEnv, []string{"dlq", "replay"}, exitUsage, "want at least one MSG_ID"},
		{"dlq replay bad id", okEnv, []string{"dlq", "replay", "x1"}, exitUsage, `"x1" is not a message id`},
		{"database unreachable", okEnv, []string{"migrate"}, exitFailure, "connect to database"},
		{"bad listen url", map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "LISTEN_DATABASE_URL": "postgres://x@localhost:port/db"}, []string{"run"}, exitUsage, "LISTEN_DATABASE_URL: not a valid connection string"},
		{"submit null context", okEnv, []string{"submit", "--namespace", "demo", "--name", "x", "--version", "1", "--context", "null"}, exitUsage, "--context must be a JSON object"},
		{"pprof off loopback", map[string]string{"DATABASE_URL": "postgres://x@localhost/db", "CONSUMER_PPROF": "true", "CONSUMER_PPROF_ADDR": "0.0.0.0:6060"}, []string{"run"}, exitUsage, "CONSUMER_PPROF_ADDR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(t, c.env, c.args...)
			if code != c.code {
				t.Fatalf("exit code = %d, want %d (stderr %q)", code, c.code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if !strings.Contains(stderr, c.want) {
				t.Fatalf("stderr %q does not contain %q", stderr, c.want)
			}
			if c.name != "unknown flag" && len(lines) != 1 {
				t.Fatalf("want one line of error, got %d: %q", len(lines), stderr)
			}
			if stdout != "" {
				t.Fatalf("stdout on error: %q", stdout)
			}
		})
	}
}

func TestCLIHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"submit", "--help"}, {"dlq", "--help"}, {"status", "-h"}} {
		code, stdout, stderr := run(t, nil, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		if !strings.Contains(stdout+stderr, "Usage") {
			t.Fatalf("%v: no usage text: %q %q", args, stdout, stderr)
		}
	}
	code, stdout, _ := run(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "consumer ") {
		t.Fatalf("version: %d %q", code, stdout)
	}
}

// A server that accepts TCP connections and never answers must not hang a command: the
// connection attempt is bounded by CONSUMER_DB_CONNECT_TIMEOUT.
func TestASilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	defer func() {
		ln.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c: // held open and never answered
			default:
				c.Close()
			}
		}
	}()
	start := time.Now()
	code, _, stderr := run(t, map[string]string{
		"DATABASE_URL":                "postgres://nobody@" + ln.Addr().String() + "/none?sslmode=disable",
		"CONSUMER_DB_CONNECT_TIMEOUT": "300ms",
	}, "migrate")
	if code != exitFailure || !strings.Contains(stderr, "connect to database") {
		t.Fatalf("exit %d, stderr %q; want a connection failure", code, stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s against a silent server", took)
	}
}
