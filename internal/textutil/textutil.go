package textutil

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Ellipsis marks where text was cut.
const Ellipsis = "…"

// Truncate returns s when it is at most n bytes long, else its longest prefix of at most n
// bytes that ends at a rune boundary, followed by Ellipsis. A negative n counts as 0.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Ellipsis
}

// OneLine joins the lines of s with "; ", each trimmed of surrounding white space and empty
// ones dropped: a multi-line error (pgx lists every address it tried) fits one log or table line.
func OneLine(s string) string {
	var parts []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}

// FirstLine returns the first line of s, followed by " " and Ellipsis when more lines follow.
func FirstLine(s string) string {
	line, rest, more := strings.Cut(s, "\n")
	if more && strings.TrimSpace(rest) != "" {
		return line + " " + Ellipsis
	}
	return line
}

// Printable returns s with every control character (terminal escapes, carriage returns, tabs,
// C1 codes) and invalid UTF-8 written as a Go escape, so stored text printed on a terminal can
// neither move the cursor nor break a table.
func Printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
