package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/pgmq"
)

// statementStat is one row of pg_stat_statements for the run's database.
type statementStat struct {
	Calls      int64   `json:"calls"`
	TotalMS    float64 `json:"total_ms"`
	MeanMS     float64 `json:"mean_ms"`
	PlanMS     float64 `json:"plan_ms"`
	Rows       int64   `json:"rows"`
	Query      string  `json:"query"`
	PerStepUS  float64 `json:"us_per_step"`
	CallsPerSt float64 `json:"calls_per_step"`
}

// resetStatements creates pg_stat_statements in the run's database (benchmark databases
// only; the migrations never do) and clears its counters. It reports false when the server
// does not preload the module (scripts/pg.sh does when PostgreSQL ships it).
func resetStatements(ctx context.Context, db pgmq.DB) bool {
	if _, err := db.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return false
	}
	_, err := db.Exec(ctx, "SELECT pg_stat_statements_reset()")
	return err == nil
}

// topStatements returns the n statements of the current database that took the most execution
// time since resetStatements, with their cost per workflow step.
func topStatements(ctx context.Context, db pgmq.DB, n, steps int) ([]statementStat, error) {
	rows, err := db.Query(ctx, `
		SELECT calls, total_exec_time, mean_exec_time, total_plan_time, rows, regexp_replace(query, '\s+', ' ', 'g')
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND query NOT LIKE '%pg_stat_statements%'
		ORDER BY total_exec_time + total_plan_time DESC LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (statementStat, error) {
		var s statementStat
		err := row.Scan(&s.Calls, &s.TotalMS, &s.MeanMS, &s.PlanMS, &s.Rows, &s.Query)
		if steps > 0 {
			s.PerStepUS = 1000 * (s.TotalMS + s.PlanMS) / float64(steps)
			s.CallsPerSt = float64(s.Calls) / float64(steps)
		}
		return s, err
	})
	return out, err
}

// printStatements writes the statements as a short table.
func printStatements(w io.Writer, title string, stats []statementStat) {
	fmt.Fprintf(w, "%s (pg_stat_statements, by execution + planning time)\n", title)
	fmt.Fprintf(w, "  %9s %9s %8s %8s %6s  %s\n", "calls", "total ms", "mean ms", "µs/step", "/step", "query")
	for _, s := range stats {
		q := s.Query
		if len(q) > 110 {
			q = q[:110] + "…"
		}
		fmt.Fprintf(w, "  %9d %9.0f %8.3f %8.1f %6.2f  %s\n", s.Calls, s.TotalMS+s.PlanMS, s.MeanMS, s.PerStepUS, s.CallsPerSt, strings.TrimSpace(q))
	}
}
