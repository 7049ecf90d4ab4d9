// Package depth reads the depths of a fixed set of PGMQ queues cheaply enough to run on every
// readiness probe and metrics scrape.
//
// Three rules keep it cheap whatever the database holds: it reads only the queues it was given
// (never every queue of the database), each count stops at a cap (a queue deeper than the cap
// reports the cap), and one reading is cached for a short time and shared by every caller, with
// at most one query in flight: concurrent probes wait for that query instead of starting their
// own.
package depth
