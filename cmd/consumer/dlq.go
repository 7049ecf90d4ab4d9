package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/pgmq"
)

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("dlq: want a subcommand: list or replay")
	}
	switch args[0] {
	case "list":
		return cmdDLQList(ctx, args[1:], stdout, stderr)
	case "replay":
		return cmdDLQReplay(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "Usage: consumer dlq list [--limit N] [--json] | consumer dlq replay MSG_ID...")
		return errHelp
	default:
		return usagef("dlq: unknown subcommand %q (want list or replay)", args[0])
	}
}

func cmdDLQList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dlq list", "dlq list [--limit N] [--json]", stderr)
	limit := fs.Int("limit", 100, "at most this many dead letters, oldest first")
	asJSON := fs.Bool("json", false, "print each dead letter as a JSON line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("dlq list: --limit must be at least 1")
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		// Read the table directly: listing must not claim (and so hide) the dead letters.
		rows, err := pool.Query(ctx, "SELECT msg_id, enqueued_at, message FROM pgmq.q_"+messages.QueueDLQ+" ORDER BY msg_id LIMIT $1", *limit)
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		type row struct {
			ID   int64
			At   time.Time
			Body []byte
		}
		list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		if *asJSON {
			for _, r := range list {
				fmt.Fprintf(stdout, "{\"msg_id\":%d,\"dead_letter\":%s}\n", r.ID, r.Body)
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MSG_ID\tDEAD-LETTERED\tSOURCE\tSOURCE_MSG_ID\tREAD_CT\tREASON\tERROR")
		for _, r := range list {
			var d messages.DeadLetter
			_ = json.Unmarshal(r.Body, &d)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.At.UTC().Format(time.RFC3339), d.SourceQueue, d.SourceMsgID, d.ReadCount, d.Reason, short([]byte(strconv.Quote(d.Error))))
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d dead letter(s)\n", len(list))
		return nil
	})
}

func cmdDLQReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dlq replay", "dlq replay MSG_ID...", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("dlq replay: want at least one MSG_ID")
	}
	var ids []int64
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id < 1 {
			return usagef("dlq replay: %q is not a message id", a)
		}
		ids = append(ids, id)
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		var errs []error
		for _, id := range ids {
			newID, queue, err := replay(ctx, pool, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(stdout, "replayed dead letter %d to %s as msg_id %d\n", id, queue, newID)
		}
		return errors.Join(errs...)
	})
}

// replay re-enqueues one dead letter's original body on its source queue and removes it from
// the DLQ, in one transaction.
func replay(ctx context.Context, pool *pgxpool.Pool, id int64) (newID int64, queue string, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var body []byte
		if err := tx.QueryRow(ctx, "SELECT message FROM pgmq.q_"+messages.QueueDLQ+" WHERE msg_id = $1 FOR UPDATE", id).Scan(&body); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("dead letter %d not found", id)
			}
			return fmt.Errorf("read dead letter %d: %w", id, err)
		}
		var d messages.DeadLetter
		if err := json.Unmarshal(body, &d); err != nil || d.SourceQueue == "" || len(d.Message) == 0 {
			return fmt.Errorf("dead letter %d has no source queue or message to replay", id)
		}
		queue = d.SourceQueue
		var err error
		if newID, err = pgmq.Send(ctx, tx, d.SourceQueue, d.Message, pgmq.SendOptions{}); err != nil {
			return err
		}
		_, err = pgmq.Delete(ctx, tx, messages.QueueDLQ, id)
		return err
	})
	return newID, queue, err
}
