package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// barWidth is the number of cells of the progress bar.
const barWidth = 30

// progressLine renders "[#########-----] 63/100 complete, 0 error  12.3s": the bar fills with
// the finished tasks (complete or not).
func progressLine(complete, failed, total int, elapsed time.Duration) string {
	filled := 0
	if total > 0 {
		filled = min(barWidth, (complete+failed)*barWidth/total)
	}
	return fmt.Sprintf("[%s%s] %d/%d complete, %d error  %.1fs",
		strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled),
		complete, total, failed, elapsed.Seconds())
}

// progress draws progressLine on a terminal in place (redrawn with \r); elsewhere (CI, a pipe)
// it prints a plain line at most every plainEvery, so logs stay short.
type progress struct {
	w          io.Writer
	terminal   bool
	plainEvery time.Duration
	last       time.Time
	lastLine   string
}

func newProgress(f *os.File) *progress {
	return &progress{w: f, terminal: isTerminal(f), plainEvery: 2 * time.Second}
}

// update shows the current state.
func (p *progress) update(line string) {
	if p.terminal {
		if line != p.lastLine {
			fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		}
		p.lastLine = line
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.plainEvery {
		fmt.Fprintln(p.w, line)
		p.last, p.lastLine = now, line
	}
}

// finish shows the final state and ends the line.
func (p *progress) finish(line string) {
	switch {
	case p.terminal:
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", line)
	case line != p.lastLine:
		fmt.Fprintln(p.w, line)
	}
	p.lastLine = line
}

// isTerminal reports whether f is a character device (a terminal) that understands \r.
func isTerminal(f *os.File) bool {
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// shortDuration renders a latency with a precision that suits its size: 850µs, 42ms, 1.25s.
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 100*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}
