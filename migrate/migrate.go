package migrate

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"go.uber.org/zap"

	sqlfiles "github.com/tasker-systems/consumer/sql"
)

// PGMQSource says where the database's PGMQ came from.
type PGMQSource string

const (
	// PGMQExtension is the pgmq extension (CREATE EXTENSION pgmq).
	PGMQExtension PGMQSource = "extension"
	// PGMQSQLOnly is a PGMQ installed as plain SQL in the pgmq schema by someone else.
	PGMQSQLOnly PGMQSource = "sql-only"
	// PGMQBundled is the project's own PGMQ-compatible schema.
	PGMQBundled PGMQSource = "bundled"
)

// VersionTable records the applied tasker migration (tern's format).
const VersionTable = "tasker.schema_version"

// bundledMarker is the comment the bundled script puts on the pgmq schema, so that a later
// migrate knows it may upgrade the schema in place.
const bundledMarker = "consumer-bundled-pgmq"

// lockKey serializes concurrent migrations across processes (an arbitrary constant).
const lockKey int64 = 0x7461736b65720001

// Report describes what Up found and did.
type Report struct {
	PGMQ PGMQSource
	// PGMQVersion is the extension's version, or the bundled schema's (pgmq.bundled_version);
	// empty for a SQL-only install, which records none.
	PGMQVersion string
	FromVersion int32 // tasker schema version before
	ToVersion   int32 // tasker schema version after
}

// Up brings the database to the latest schema. See the package documentation.
func Up(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) (Report, error) {
	if log == nil {
		log = zap.NewNop()
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	return UpConn(ctx, conn.Conn(), log)
}

// UpConn is Up on a single connection that the caller owns.
//
// Everything runs in one transaction that holds a transaction-level advisory lock: concurrent
// migrations wait for each other, a failure leaves the database as it was, and nothing is held
// on the session afterwards. That also makes it safe through a transaction pooler (PgBouncer in
// transaction mode), which pins a server connection for a transaction but not across them, so a
// session-level lock could be taken on one backend, released on another and leak.
func UpConn(ctx context.Context, conn *pgx.Conn, log *zap.Logger) (rep Report, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("migrate: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
		return rep, fmt.Errorf("migrate: take lock: %w", err)
	}

	rep.PGMQ, rep.PGMQVersion, err = ensurePGMQ(ctx, tx)
	if err != nil {
		return rep, err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS tasker"); err != nil {
		return rep, fmt.Errorf("migrate: create schema tasker: %w", err)
	}
	// tern runs inside this transaction (DisableTx); its own session lock is taken and released
	// within it, on the same backend.
	m, err := migrate.NewMigratorEx(ctx, conn, VersionTable, &migrate.MigratorOptions{DisableTx: true})
	if err != nil {
		return rep, fmt.Errorf("migrate: init migrator: %w", err)
	}
	files, err := fs.Sub(sqlfiles.Migrations, "migrations")
	if err != nil {
		return rep, fmt.Errorf("migrate: embedded migrations: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return rep, fmt.Errorf("migrate: load migrations: %w", err)
	}
	if rep.FromVersion, err = m.GetCurrentVersion(ctx); err != nil {
		return rep, fmt.Errorf("migrate: read schema version: %w", err)
	}
	m.OnStart = func(seq int32, name, _, _ string) {
		log.Info("applying migration", zap.Int32("version", seq), zap.String("name", name))
	}
	if err := m.Migrate(ctx); err != nil {
		return rep, fmt.Errorf("migrate: apply migrations: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("migrate: commit: %w", err)
	}
	rep.ToVersion = int32(len(m.Migrations))
	log.Info("database ready", zap.String("pgmq", string(rep.PGMQ)), zap.String("pgmq_version", rep.PGMQVersion),
		zap.Int32("schema_from", rep.FromVersion), zap.Int32("schema_to", rep.ToVersion))
	return rep, nil
}

// ensurePGMQ finds or installs PGMQ, preferring in order: the pgmq extension (installed or
// available), an existing SQL-only install (a pgmq schema with pgmq.send that is not ours), and
// the bundled schema, which is installed fresh or upgraded in place.
func ensurePGMQ(ctx context.Context, conn pgx.Tx) (PGMQSource, string, error) {
	var installed, available, hasSend bool
	var schemaComment *string
	err := conn.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq'),
		       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq'),
		       EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		                WHERE n.nspname = 'pgmq' AND p.proname = 'send'),
		       (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'pgmq')`,
	).Scan(&installed, &available, &hasSend, &schemaComment)
	if err != nil {
		return "", "", fmt.Errorf("migrate: detect pgmq: %w", err)
	}
	switch {
	case installed || available:
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pgmq"); err != nil {
			return "", "", fmt.Errorf("migrate: create extension pgmq: %w", err)
		}
		var version string
		if err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'pgmq'").Scan(&version); err != nil {
			return "", "", fmt.Errorf("migrate: read pgmq version: %w", err)
		}
		return PGMQExtension, version, nil
	case hasSend && (schemaComment == nil || *schemaComment != bundledMarker):
		return PGMQSQLOnly, "", nil
	default:
		// A fresh install, or an upgrade of an earlier bundled version: the script does both.
		if _, err := conn.Exec(ctx, sqlfiles.BundledPGMQ, pgx.QueryExecModeSimpleProtocol); err != nil {
			return "", "", fmt.Errorf("migrate: install bundled pgmq: %w", err)
		}
		var version string
		if err := conn.QueryRow(ctx, "SELECT max(version)::text FROM pgmq.bundled_version").Scan(&version); err != nil {
			return "", "", fmt.Errorf("migrate: read bundled pgmq version: %w", err)
		}
		return PGMQBundled, version, nil
	}
}
