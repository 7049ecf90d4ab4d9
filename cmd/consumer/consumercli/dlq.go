package consumercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/consumer/internal/dlq"
	"github.com/tasker-systems/consumer/internal/textutil"
)

// ListLimitDefault is how many dead letters `dlq list` shows without --limit.
const ListLimitDefault = 100

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
	limit := fs.Int("limit", ListLimitDefault, "at most this many dead letters, oldest first")
	asJSON := fs.Bool("json", false, "print each dead letter as a JSON line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("dlq list: --limit must be at least 1")
	}
	return withPool(ctx, func(pool *pgxpool.Pool) error {
		letters, err := dlq.List(ctx, pool, dlq.ListOptions{Limit: *limit})
		if err != nil {
			return err
		}
		if *asJSON {
			for _, l := range letters {
				fmt.Fprintf(stdout, "{\"msg_id\":%d,\"dead_letter\":%s}\n", l.MsgID, l.Raw)
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MSG_ID\tDEAD-LETTERED\tSOURCE\tSOURCE_MSG_ID\tREAD_CT\tREASON\tERROR")
		for _, l := range letters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", l.MsgID, l.EnqueuedAt.UTC().Format(time.RFC3339),
				textutil.Printable(l.SourceQueue), l.SourceMsgID, l.ReadCount, textutil.Printable(l.Reason), short([]byte(strconv.Quote(l.Error))))
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d dead letter(s)\n", len(letters))
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
			r, err := dlq.Replay(ctx, pool, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(stdout, "replayed dead letter %d to %s as msg_id %d\n", r.DeadLetter, r.Queue, r.MsgID)
		}
		return errors.Join(errs...)
	})
}
