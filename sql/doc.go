// Package sql embeds the project's SQL: the tasker schema migrations (migrations/, applied in
// order by the migrate package) and the bundled PGMQ-compatible schema (pgmq/), which is kept
// apart because it is installed only when the database has no PGMQ of its own.
package sql

import "embed"

// Migrations holds migrations/NNN_name.sql, in tern's format.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// BundledPGMQ is the project's own PGMQ-compatible schema, installed only when the database has
// neither the pgmq extension nor a SQL-only PGMQ (docs/protocol.md, "PGMQ itself"). The script
// is idempotent: re-running it upgrades a bundled install in place and never touches queue data.
//
//go:embed pgmq/pgmq.sql
var BundledPGMQ string
