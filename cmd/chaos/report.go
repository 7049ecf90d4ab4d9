package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdicts.
const (
	verdictPass = "PASS"
	verdictFail = "FAIL"
	verdictSkip = "SKIP"
)

// Row is one scenario's result.
type Row struct {
	Scenario     string
	Requests     int // valid task requests submitted
	Invalid      int // invalid and poison messages submitted
	Faults       string
	Lost         int
	Duplicated   int
	DLQValid     int // valid requests dead-lettered (allowed, but worth knowing)
	Recovery     string
	RecoveryWhat string
	Verdict      string
	Problems     []string // failed checks, with evidence
	Notes        []string // observations that do not fail the row
	LogDir       string
	Logs         []string
	Took         time.Duration
}

// Failed reports whether the row failed.
func (r *Row) Failed() bool { return r.Verdict == verdictFail }

// printTable writes the summary table.
func printTable(w io.Writer, rows []*Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tREQUESTS\tFAULTS INJECTED\tLOST\tDUPLICATED\tVALID→DLQ\tRECOVERY\tTIME\tVERDICT")
	for _, r := range rows {
		if r == nil {
			continue
		}
		if r.Verdict == verdictSkip {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\t-\t-\t%s\n", r.Scenario, r.Faults, r.Verdict)
			continue
		}
		req := strconv.Itoa(r.Requests)
		if r.Invalid > 0 {
			req += fmt.Sprintf(" + %d bad", r.Invalid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Scenario, req, r.Faults, r.Lost, r.Duplicated,
			r.DLQValid, r.Recovery, r.Took.Round(100*time.Millisecond), r.Verdict)
	}
	_ = tw.Flush()
}

// printDetails writes each row's notes and, for failed rows, the evidence and where to look.
func printDetails(w io.Writer, rows []*Row) {
	for _, r := range rows {
		if r == nil || r.Verdict == verdictSkip {
			continue
		}
		if len(r.Notes) == 0 && !r.Failed() && r.RecoveryWhat == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", r.Scenario, r.Verdict)
		if r.RecoveryWhat != "" {
			fmt.Fprintf(w, "  recovery measures: %s\n", r.RecoveryWhat)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if !r.Failed() {
			continue
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  FAIL: %s\n", p)
		}
		fmt.Fprintf(w, "  logs: %s\n", strings.Join(r.Logs, " "))
	}
}
