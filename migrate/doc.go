// Package migrate installs what the consumer needs in a database: PGMQ (the extension, an
// existing SQL-only install, or the project's bundled schema, in that order of preference) and
// the tasker schema migrations embedded from sql/migrations.
//
// The bundled schema records its version in pgmq.bundled_version; running its script again
// upgrades a database installed by any earlier bundled version in place, keeping every message.
// docs/pgmq-compatibility.md says what each PGMQ source provides.
//
// Up is safe to repeat and safe when several processes run it at once: everything happens in one
// transaction holding a transaction-level advisory lock (so it also works through a transaction
// pooler), and every step is idempotent.
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package migrate
