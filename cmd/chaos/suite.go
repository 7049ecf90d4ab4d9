package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/consumer/config"
	"github.com/tasker-systems/consumer/internal/proc"
	"github.com/tasker-systems/consumer/internal/timeutil"
)

// Defaults of the Options fields.
const (
	RequestsDefault      = 200
	RequestsShortDefault = 30
	ParallelDefault      = 1
	LogLevelDefault      = config.LogLevelDefault
)

// Options tune a suite run.
type Options struct {
	// Requests is the number of valid task requests of a full-size scenario; scenarios scale
	// from it. If 0, RequestsDefault (RequestsShortDefault with Short) is used.
	Requests int
	// Short runs the reduced version (fewer faults) that `go test` runs.
	Short bool
	// Restart allows the PostgreSQL restart scenarios (they still need a local cluster).
	Restart bool
	// RestartSkipReason is shown in the rows of the restart scenarios when Restart is false.
	RestartSkipReason string
	// Keep keeps the scenario databases.
	Keep bool
	// Only selects scenarios by name or name prefix; empty means all.
	Only []string
	// Seed seeds the random choices (kill times, contexts); 0 picks one.
	Seed uint64
	// Parallel is the number of scenarios run at once (the restart scenarios always run
	// alone). If 0, ParallelDefault is used.
	Parallel int
	// LogDir receives one directory of logs per scenario. Required.
	LogDir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// LogLevel is the LOG_LEVEL of the processes. If empty, LogLevelDefault is used.
	LogLevel string
}

// Suite is what every scenario shares: the binaries, the server, the module root.
type Suite struct {
	opts     Options
	admin    string // server connection string (a maintenance database)
	root     string // module root
	bins     proc.Binaries
	pgScript string // scripts/pg.sh of the local cluster; "" when the server is not local
	notLocal string // why pgScript is empty

	progressMu sync.Mutex

	peakOwn, peakServer atomic.Int64 // connections: to the scenario databases, to the server
}

// NewSuite builds the binaries into a temporary directory under opts.LogDir and finds out
// whether the server can be restarted.
func NewSuite(ctx context.Context, admin string, opts Options) (*Suite, error) {
	if opts.LogDir == "" {
		return nil, errors.New("chaos: LogDir is required")
	}
	if opts.Requests < 0 || opts.Parallel < 0 {
		return nil, fmt.Errorf("chaos: Requests (%d) and Parallel (%d) must not be negative", opts.Requests, opts.Parallel)
	}
	requests := RequestsDefault
	if opts.Short {
		requests = RequestsShortDefault
	}
	opts.Requests = cmp.Or(opts.Requests, requests)
	opts.Parallel = cmp.Or(opts.Parallel, ParallelDefault)
	opts.LogLevel = cmp.Or(opts.LogLevel, LogLevelDefault)
	if opts.Seed == 0 {
		opts.Seed = rand.Uint64()
	}
	root, err := proc.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		return nil, err
	}
	bins, err := proc.Build(ctx, binDir)
	if err != nil {
		return nil, err
	}
	s := &Suite{opts: opts, admin: admin, root: root, bins: bins}
	s.pgScript, s.notLocal = localCluster(admin, root)
	return s, nil
}

// Close removes the built binaries.
func (s *Suite) Close() {
	_ = os.RemoveAll(filepath.Dir(s.bins.Consumer))
}

// localCluster returns the restart script when admin is the local cluster of scripts/pg.sh
// (or CONSUMER_CHAOS_PG_SCRIPT names one), else why not.
func localCluster(admin, root string) (script, whyNot string) {
	if s := os.Getenv("CONSUMER_CHAOS_PG_SCRIPT"); s != "" {
		return s, ""
	}
	script = filepath.Join(root, "scripts", "pg.sh")
	if _, err := os.Stat(script); err != nil {
		return "", "not a local cluster (no scripts/pg.sh)"
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", "not a local cluster (unparsable DATABASE_URL)"
	}
	port := os.Getenv("CONSUMER_PG_PORT")
	if port == "" {
		port = "54329"
	}
	if net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) != net.JoinHostPort("127.0.0.1", port) {
		return "", fmt.Sprintf("not a local cluster (%s:%d is not scripts/pg.sh's 127.0.0.1:%s)", cfg.Host, cfg.Port, port)
	}
	return script, ""
}

func (s *Suite) progress(format string, args ...any) {
	if s.opts.Progress == nil {
		return
	}
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	fmt.Fprintf(s.opts.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// selected returns the scenarios that Only selects, in suite order.
func (s *Suite) selected() []scenario {
	var out []scenario
	for _, sc := range scenarios() {
		if sc.fullOnly && s.opts.Short {
			continue
		}
		if len(s.opts.Only) == 0 {
			out = append(out, sc)
			continue
		}
		for _, o := range s.opts.Only {
			if o = strings.TrimSpace(o); o != "" && strings.HasPrefix(sc.name, o) {
				out = append(out, sc)
				break
			}
		}
	}
	return out
}

// Run runs the selected scenarios and returns one row each, in suite order.
func (s *Suite) Run(ctx context.Context) []*Row {
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s.sampleConnections(sampleCtx)
	}()
	defer func() {
		stopSampling()
		<-sampled
	}()
	list := s.selected()
	rows := make([]*Row, len(list))
	var exclusive []int // the restart scenarios: alone, after the others
	sem := make(chan struct{}, s.opts.Parallel)
	var wg sync.WaitGroup
	for i, sc := range list {
		if sc.restartMode != "" {
			exclusive = append(exclusive, i)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rows[i] = s.runScenario(ctx, sc)
		}()
	}
	wg.Wait()
	for _, i := range exclusive {
		rows[i] = s.runScenario(ctx, list[i])
	}
	return rows
}

// runScenario runs one scenario: it skips what cannot run here, else sets up the harness, runs
// the faults, settles, checks and tears down.
func (s *Suite) runScenario(ctx context.Context, sc scenario) *Row {
	row := &Row{Scenario: sc.name}
	if sc.restartMode != "" {
		switch {
		case s.pgScript == "":
			row.Verdict, row.Faults = verdictSkip, "skipped: "+s.notLocal
			return row
		case !s.opts.Restart:
			row.Verdict, row.Faults = verdictSkip, "skipped: "+s.opts.RestartSkipReason
			return row
		}
	}
	start := time.Now()
	s.progress("%s: start", sc.name)
	h, err := newHarness(ctx, s, sc)
	if err != nil {
		row.Verdict = verdictFail
		row.Problems = append(row.Problems, "setup: "+err.Error())
		return row
	}
	h.run(ctx, sc, row)
	row.Took = time.Since(start)
	s.progress("%s: %s in %s", sc.name, row.Verdict, row.Took.Round(100*time.Millisecond))
	return row
}

// sampleConnections records the peak number of connections to the scenario databases and to
// the whole server until ctx ends.
func (s *Suite) sampleConnections(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for timeutil.Sleep(ctx, 250*time.Millisecond) == nil {
		if conn == nil || conn.IsClosed() {
			c, err := pgx.Connect(ctx, s.admin)
			if err != nil {
				continue // the server may be restarting
			}
			conn = c
		}
		var own, all int64
		err := conn.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE datname LIKE 'chaos\_%'), count(*)
			FROM pg_stat_activity WHERE backend_type = 'client backend'`).Scan(&own, &all)
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		for _, p := range []struct {
			peak *atomic.Int64
			v    int64
		}{{&s.peakOwn, own}, {&s.peakServer, all}} {
			for cur := p.peak.Load(); p.v > cur && !p.peak.CompareAndSwap(cur, p.v); cur = p.peak.Load() {
			}
		}
	}
}

// PeakConnections returns the most connections seen to the scenario databases and to the
// server (which includes everybody else's).
func (s *Suite) PeakConnections() (own, server int64) { return s.peakOwn.Load(), s.peakServer.Load() }
