// Package timeutil holds the small timing rules every long-running loop of the project shares:
// how a wait is jittered and how a wait gives way to a cancelled context. It depends on nothing
// but the standard library, so the worker SDK may use it too.
package timeutil
