// Package sql embeds the project's SQL: the tasker schema migrations (migrations/, applied in
// order by the migrate package) and the bundled PGMQ-compatible schema (pgmq/), which is kept
// apart because it is installed only when the database has no PGMQ of its own.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package sql

import "embed"

// Migrations holds migrations/NNN_name.sql, in tern's format.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// BundledPGMQ is the project's own PGMQ-compatible schema, for databases without PGMQ (see
// docs/pgmq-compatibility.md). The script is idempotent: re-running it upgrades a bundled install
// of any earlier version in place and keeps every message.
//
//go:embed pgmq/pgmq.sql
var BundledPGMQ string
