package migrate_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/migrate"
)

// Up finds or installs PGMQ and applies the tasker migrations; run it at every start.
func ExampleUp() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		panic(err)
	}
	rep, err := migrate.Up(ctx, pool, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.PGMQ, rep.ToVersion)
}
