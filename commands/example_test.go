package commands_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/consumer/commands"
)

// A requester that needs an answer builds its command around a Responder and waits; the actor
// answers through it. Commands nobody waits for carry the zero Responder.
func ExampleRequest() {
	ch := commands.NewCommandChannel(10)
	stats := commands.NewStats(timeZero)
	stats.Record(commands.KindTaskRequest, commands.OutcomeProcessed)

	go func() { // stands in for the actor
		for cmd := range ch.Receive() {
			if c, ok := cmd.(commands.GetProcessingStats); ok {
				c.Reply.Send(stats.Snapshot(), nil)
			}
		}
	}()

	snap, err := commands.Request(context.Background(), ch, func(r commands.Responder[commands.StatsSnapshot]) commands.Command {
		return commands.GetProcessingStats{Reply: r}
	})
	fmt.Println(snap.ByKind["task_request"].Processed, err)
	// Output: 1 <nil>
}

var timeZero = time.Unix(0, 0)
