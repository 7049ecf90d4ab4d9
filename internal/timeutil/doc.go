// Package timeutil holds the small timing rules the project's loops and queue calls share: how
// a wait is jittered, how a wait gives way to a cancelled context, and how a duration becomes
// PGMQ's whole seconds. It depends on nothing
// but the standard library, so the worker SDK may use it too.
package timeutil
