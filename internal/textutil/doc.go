// Package textutil shortens text for log lines, error messages and tables, the same way
// everywhere: cut at a rune boundary and mark the cut with "…". It depends on nothing but the
// standard library, so the worker SDK may use it too.
package textutil
