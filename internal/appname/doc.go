// Package appname names the project's PostgreSQL connections so that operators can tell them
// apart in pg_stat_activity: the consumer's pool is "consumer", its LISTEN connection
// "consumer-listener", a worker's LISTEN connection its pool's name plus "-listener".
//
// The rule is that the operator's choice wins: a name set in the connection string
// (application_name=…) or in the PGAPPNAME environment variable is kept, and only a connection
// left unnamed gets the program's default. pgx puts either of those into the parsed config's
// RuntimeParams, so that map is where the rule looks. The package depends on nothing but the
// standard library, so the worker SDK may use it too.
package appname
