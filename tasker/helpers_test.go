package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-systems/consumer/pgmq"
)

const testQueue = "jobs"

func body(s string) json.RawMessage { return json.RawMessage(s) }

// countingDB counts the statements sent through it (package tasker sends Exec and Query
// only). With a nil DB it fails the test on any statement: for arguments that must be
// rejected client-side.
type countingDB struct {
	pgmq.DB
	t *testing.T
	n atomic.Int64
}

var errUnexpected = errors.New("unexpected statement")

func (d *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	d.n.Add(1)
	if d.DB == nil {
		d.t.Errorf("unexpected Exec %s", sql)
		return pgconn.CommandTag{}, errUnexpected
	}
	return d.DB.Exec(ctx, sql, args...)
}

func (d *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	d.n.Add(1)
	if d.DB == nil {
		d.t.Errorf("unexpected Query %s", sql)
		return nil, errUnexpected
	}
	return d.DB.Query(ctx, sql, args...)
}
