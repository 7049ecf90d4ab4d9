package textutil

import "testing"

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456789…"},
		{"héllo", 2, "h…"}, // é is two bytes: never cut inside it
		{"héllo", 3, "hé…"},
		{"日本語", 4, "日…"},
		{"abc", 0, "…"},
		{"abc", -1, "…"},
		{"", 0, ""},
	} {
		if got := Truncate(c.in, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"one":                                    "one",
		"failed to connect\n  to a:\n\n  to b\n": "failed to connect; to a:; to b",
		"":                                       "",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"one":           "one",
		"one\n":         "one",
		"one\ntwo\nthr": "one …",
		"":              "",
	} {
		if got := FirstLine(in); got != want {
			t.Errorf("FirstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, é ✓":         "plain text, é ✓",
		"\x1b[31mred\x1b[0m":      `\x1b[31mred\x1b[0m`,
		"a\rb\tc\nd":              `a\rb\tc\nd`,
		"\u009b2J":                `\u009b2J`,
		"bad \xff byte":           `bad \xff byte`,
		"real \uFFFD replacement": "real \uFFFD replacement",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
