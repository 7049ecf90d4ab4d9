package actor

import (
	"errors"

	"github.com/tasker-systems/consumer/commands"
)

var errShuttingDown = errors.New("consumer shutting down")

// execute is the one place an outcome is accounted for: it records the statistic and sends the
// reply when someone waits, logging at ERROR when the requester has gone away.
func execute[T any](a *Actor, kind commands.Kind, outcome commands.Outcome, resp commands.Responder[T], v T, err error) {
	a.stats.Record(kind, outcome)
	a.reply(kind, kind.String(), func() bool { return resp.Send(v, err) })
}
