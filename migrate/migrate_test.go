package migrate_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/testdb"
	"github.com/tasker-systems/consumer/migrate"
)

// schemaFingerprint lists every object of the pgmq and tasker schemas with its definition, so
// two migrations can be compared for "the same schema".
func schemaFingerprint(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var fp string
	err := pool.QueryRow(context.Background(), `
		SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		  SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text AS x
		    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		   WHERE n.nspname IN ('pgmq', 'tasker')
		  UNION ALL
		  SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' || md5(p.prosrc)
		    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		   WHERE n.nspname IN ('pgmq', 'tasker')
		  UNION ALL
		  SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
		  UNION ALL
		  SELECT 'version ' || version FROM tasker.schema_version
		) s`).Scan(&fp)
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	return fp
}

func TestUpTwiceGivesSameSchema(t *testing.T) {
	db := testdb.NewBlank(t, 4)
	ctx := context.Background()
	first, err := migrate.Up(ctx, db.Pool, nil)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if first.FromVersion != 0 || first.ToVersion < 1 {
		t.Fatalf("first migrate report = %+v, want 0 -> latest", first)
	}
	before := schemaFingerprint(t, db.Pool)
	second, err := migrate.Up(ctx, db.Pool, nil)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if second.FromVersion != first.ToVersion || second.ToVersion != first.ToVersion {
		t.Fatalf("second migrate report = %+v, want a no-op at %d", second, first.ToVersion)
	}
	if second.PGMQ != first.PGMQ {
		t.Fatalf("pgmq source changed: %s then %s", first.PGMQ, second.PGMQ)
	}
	if after := schemaFingerprint(t, db.Pool); after != before {
		t.Fatalf("schema changed on second migrate:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	var queues int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pgmq.list_queues()
		WHERE queue_name IN ('orchestration_task_requests','orchestration_step_results','orchestration_task_finalizations','orchestration_dlq')`).Scan(&queues); err != nil {
		t.Fatal(err)
	}
	if queues != 4 {
		t.Fatalf("orchestration queues after migrate = %d, want 4", queues)
	}
}

func TestConcurrentUpSucceeds(t *testing.T) {
	db := testdb.NewBlank(t, 8)
	reference := testdb.NewBlank(t, 2)
	ctx := context.Background()
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := migrate.Up(ctx, db.Pool, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if _, err := migrate.Up(ctx, reference.Pool, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := schemaFingerprint(t, db.Pool), schemaFingerprint(t, reference.Pool); got != want {
		t.Fatalf("concurrent migrations left a different schema:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestSQLOnlyPGMQIsReused(t *testing.T) {
	// A pgmq schema with pgmq.send that is not ours stands for PGMQ's SQL-only install: migrate
	// must use it as it is rather than install the bundled schema over it.
	db := testdb.NewBlank(t, 2)
	ctx := context.Background()
	if _, err := migrate.Up(ctx, db.Pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "COMMENT ON SCHEMA pgmq IS 'installed by hand'"); err != nil {
		t.Fatal(err)
	}
	rep, err := migrate.Up(ctx, db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	var available bool
	if err := db.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq')").Scan(&available); err != nil {
		t.Fatal(err)
	}
	want := migrate.PGMQSQLOnly
	if available {
		want = migrate.PGMQExtension
	}
	if rep.PGMQ != want {
		t.Fatalf("pgmq source = %s, want %s", rep.PGMQ, want)
	}
}
