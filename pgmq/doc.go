// Package pgmq is a typed Go client for PGMQ's SQL API (https://github.com/pgmq/pgmq) over pgx.
//
// Every function takes a DB, which *pgxpool.Pool, *pgx.Conn and pgx.Tx all satisfy, so the
// same call works on a pool, on a dedicated connection, or inside a transaction. The last is
// how handlers acknowledge work: read or claim a message, apply its effects and Delete (or
// Archive) it in one transaction, so a crash either commits both or neither and the message
// becomes visible again when its visibility timeout expires.
//
// The package runs unchanged against the real pgmq extension (1.5 to 1.13), a SQL-only PGMQ
// install and the project's bundled PGMQ-compatible schema (docs/pgmq-compatibility.md). To
// that end it calls PGMQ functions with every parameter cast (several are overloaded) and
// selects result columns by name (pgmq.message_record gained last_read_at in 1.10). Its tests
// include a conformance suite of PGMQ's SQL API and a run of the third-party client pgmq-go;
// both run against a real PGMQ when TEST_DATABASE_URL points at one.
//
// It is supported API and covers PGMQ's own functions only. The project's extensions (claiming
// messages by id, the notify trigger and its channel names) need the project's migrations and
// live in package tasker, which builds on MessageColumns, ScanMessage and Seconds.
//
// Semantics worth knowing:
//
//   - Visibility timeouts and delays are whole seconds in PGMQ. Durations are rounded up to
//     the next second (a 1ms timeout becomes 1s, never 0); negative durations are an error.
//   - Queue names are checked client-side (ValidateQueueName) before any query, so a bad name
//     gives a clear error and never reaches SQL.
//   - Read uses PGMQ's FOR UPDATE SKIP LOCKED: concurrent readers never receive the same
//     message and never wait for each other.
//   - Send, SendBatch, DeleteBatch and ArchiveBatch are one statement, one round trip each.
//
// Errors name the operation, the queue and, where there is one, the message id, for example
// "pgmq: delete orchestration_step_results/42: ...". They wrap the underlying error, so
// errors.As with *pgconn.PgError and errors.Is with ErrInvalidQueueName work.
package pgmq
