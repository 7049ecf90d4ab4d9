// Package testdb gives each test its own freshly migrated PostgreSQL database.
//
// TEST_DATABASE_URL (or DATABASE_URL) names a server and a maintenance database; `make test`
// sets it, starting a local cluster when needed. The first test of a run migrates a template
// database (named after a hash of the embedded SQL, so a schema change makes a new one) and every
// test then gets a cheap copy of it, dropped when the test ends. Tests therefore never see each
// other's rows, queues or notifications, and can run in parallel.
//
// Create and Drop do the same outside tests, for the chaos suite and the benchmarks.
package testdb

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/migrate"
	sqlfiles "github.com/tasker-systems/consumer/sql"
)

// DB is one test's database.
type DB struct {
	Pool *pgxpool.Pool
	URL  string // connection string of this database, for processes and extra connections
	Name string
}

// templateLock serializes template creation across test processes.
const templateLock int64 = 0x7461736b65720002

// AdminURL returns the server connection string the tests use, failing the test when unset.
func AdminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		u = os.Getenv("DATABASE_URL")
	}
	if u == "" {
		t.Fatal("TEST_DATABASE_URL is not set: run the tests with `make test`, which starts a local PostgreSQL")
	}
	return u
}

// New creates a migrated database for t and drops it when t ends. The pool is capped at
// maxConns connections (0 means 8) so parallel packages do not exhaust max_connections.
func New(t testing.TB, maxConns int32) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl, err := ensureTemplate(ctx, AdminURL(t))
	if err != nil {
		t.Fatalf("testdb: template: %v", err)
	}
	return create(ctx, t, maxConns, "TEMPLATE "+pgx.Identifier{tmpl}.Sanitize())
}

// NewBlank creates an empty, unmigrated database for t (for migration tests).
func NewBlank(t testing.TB, maxConns int32) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return create(ctx, t, maxConns, "")
}

func create(ctx context.Context, t testing.TB, maxConns int32, options string) *DB {
	t.Helper()
	admin := AdminURL(t)
	name := "consumer_test_" + randomSuffix()
	if err := exec(ctx, admin, fmt.Sprintf("CREATE DATABASE %s %s", pgx.Identifier{name}.Sanitize(), options)); err != nil {
		t.Fatalf("testdb: create database: %v", err)
	}
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("testdb: parse url: %v", err)
	}
	if maxConns <= 0 {
		maxConns = 8
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testdb: connect: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Drop(ctx, admin, name); err != nil {
			t.Errorf("testdb: %v", err)
		}
	})
	return &DB{Pool: pool, URL: dbURL, Name: name}
}

// Create makes a migrated database named prefix_<random> on the server of admin, outside of
// tests (the chaos suite and the benchmarks). It returns the database's URL and name; Drop
// removes it.
func Create(ctx context.Context, admin, prefix string) (dbURL, name string, err error) {
	tmpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		return "", "", fmt.Errorf("testdb: template: %w", err)
	}
	name = prefix + "_" + randomSuffix()
	if err := exec(ctx, admin, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize())); err != nil {
		return "", "", fmt.Errorf("testdb: create database: %w", err)
	}
	dbURL, err = withDatabase(admin, name)
	return dbURL, name, err
}

// Drop removes a database, disconnecting its sessions.
func Drop(ctx context.Context, admin, name string) error {
	if err := exec(ctx, admin, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ensureTemplate creates and migrates the template database of the current SQL, once.
func ensureTemplate(ctx context.Context, admin string) (string, error) {
	name, err := templateName()
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redact(admin), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		return "", err
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLock) }()

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Build under a temporary name and rename at the end, so a run killed half-way never
	// leaves a half-migrated template behind under the real name.
	building := name + "_building"
	if _, err := conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{building}.Sanitize())); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", pgx.Identifier{building}.Sanitize())); err != nil {
		return "", err
	}
	buildURL, err := withDatabase(admin, building)
	if err != nil {
		return "", err
	}
	tconn, err := pgx.Connect(ctx, buildURL)
	if err != nil {
		return "", err
	}
	_, merr := migrate.UpConn(ctx, tconn, nil)
	_ = tconn.Close(context.Background())
	if merr != nil {
		return "", merr
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", pgx.Identifier{building}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	return name, nil
}

// templateName hashes every embedded SQL file, so a changed schema gets a new template.
func templateName() (string, error) {
	h := sha256.New()
	h.Write([]byte(sqlfiles.BundledPGMQ))
	err := fs.WalkDir(sqlfiles.Migrations, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sqlfiles.Migrations, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", err
	}
	return "consumer_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// withDatabase returns url with its database replaced, keeping every other setting (TLS, etc.).
func withDatabase(raw, dbname string) (string, error) {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("testdb: parse database url: %w", err)
		}
		u.Path = "/" + dbname
		return u.String(), nil
	}
	// keyword=value form: a later keyword overrides an earlier one.
	return raw + " dbname=" + dbname, nil
}

func exec(ctx context.Context, connString, sql string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact(connString), err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func redact(connString string) string {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return "(unparsable url)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ForExample creates a migrated database for an Example function, which has no *testing.T, on
// the server of TEST_DATABASE_URL (or DATABASE_URL), and returns its URL and a function that
// drops it. An example cannot report an error, so ForExample panics when the server cannot be
// used.
func ForExample(prefix string) (dbURL string, drop func()) {
	admin := cmp.Or(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"))
	if admin == "" {
		panic("testdb: TEST_DATABASE_URL is not set: run the examples with `make test`, which starts a local PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL, name, err := Create(ctx, admin, prefix)
	if err != nil {
		panic(err)
	}
	return dbURL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Drop(ctx, admin, name); err != nil {
			panic(err)
		}
	}
}
