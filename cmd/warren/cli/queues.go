package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

// queuesOptions are the inputs of `warren queues`, besides the global
// flags, which prepare reads.
type queuesOptions struct {
	watchOptions
}

// queuesOutput is what `warren queues -o json` prints: the API's answer.
type queuesOutput struct {
	Queues []client.Queue `json:"queues"`
}

func (a *app) queuesCmd() *cobra.Command {
	var o queuesOptions
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "Show each pool's queue: backlog, consumers, oldest waiting job, jobs rate-limited, dead letters, rescues, replicas",
		Long: `Show the queue of every pool the API knows (those of declared types, and
those an autoscaler reports on), one row each:

  BACKLOG    ready + unacknowledged messages: what autoscalers size the pool on
  READY      messages waiting for a worker
  UNACKED    messages delivered to a worker and not yet settled (running or
             prefetched); - where RabbitMQ's management API did not measure
             the queue (management_url off or not answering): AMQP cannot
             count them, and BACKLOG is then READY alone
  CONSUMERS  consumers of the queue: one per worker process
  OLDEST     how long the oldest waiting job has waited; - when none waits
  LIMITED    jobs their types' rate limits hold back now ('warren limit'): still
             queued, their messages waiting in the delay levels, not in READY
  DEAD       messages in the pool's dead-letter queue ('warren dead list')
  RESCUED    jobs published again in the last hour because the broker had lost
             their messages (docs/guarantees.md)
  REPLICAS   worker processes, current/desired, as the pool's autoscaler last
             reported; - when none reported recently

A paused pool ('warren queue pause') shows as "POOL (paused)": its workers
take no new jobs.

-o wide adds HIGH (the part of BACKLOG in the pool's high lane: jobs of priority
5 to 9, which run first; docs/priorities.md), the pool's jobs SCHEDULED (delayed), RUNNING and RETRYING (waiting
for their next attempt), those that succeeded (OK/1H) and failed (FAILED/1H)
in the last hour, SOURCE (what measured the queue: management or amqp),
SCALED (when the autoscaler last decided) and REASON (why). The management API
refreshes its figures every few seconds. -o json and -o yaml print the list
as the API returns it. --watch shows the table again every --interval (2s)
until Ctrl-C.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		Example: `  warren queues
  warren queues -o wide
  warren queues -o json | jq '.queues[] | {pool, backlog}'

  # A live view, redrawn every second until Ctrl-C
  warren queues --watch --interval 1s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), o.watchOptions, format, "warren queues", func(ctx context.Context, w io.Writer) error {
				qs, err := c.Queues(ctx)
				if err != nil {
					return apiError(err)
				}
				if isData(format) {
					return writeData(w, format, queuesOutput{Queues: qs})
				}
				return writeQueuesTable(w, qs, format == formatWide)
			})
		},
	}
	o.bind(cmd)
	return cmd
}

// writeQueuesTable writes queues as a table, one row each, or says there
// are none. wide adds each queue's source and its autoscaler's last
// decision.
func writeQueuesTable(w io.Writer, qs []client.Queue, wide bool) error {
	if len(qs) == 0 {
		_, err := fmt.Fprintln(w, "no pools yet: a pool appears once a worker of it has declared its types")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "POOL\tBACKLOG\tREADY\tUNACKED\tCONSUMERS\tOLDEST\tLIMITED\tDEAD\tRESCUED\tREPLICAS"
	if wide {
		header += "\tHIGH\tSCHEDULED\tRUNNING\tRETRYING\tOK/1H\tFAILED/1H\tSOURCE\tSCALED\tREASON"
	}
	fmt.Fprintln(tw, header)
	for _, q := range qs {
		unacked := "-"
		if q.Source != "amqp" {
			unacked = fmt.Sprint(q.Unacked)
		}
		oldest := "-"
		switch age := q.OldestAge(); {
		case age >= time.Millisecond:
			oldest = durationText(age.Round(time.Millisecond))
		case age > 0:
			oldest = "<1ms"
		}
		replicas := "-"
		if r := q.Replicas; r != nil {
			replicas = fmt.Sprintf("%d/%d", r.Current, r.Desired)
		}
		pool := oneLine(q.Pool)
		if q.Paused {
			pool += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%s",
			pool, q.Backlog, q.Ready, unacked, q.Consumers, oldest, q.Limited, q.Dead, q.RescuedLastHour, replicas)
		if wide {
			scaled, reason := "-", "-"
			if r := q.Replicas; r != nil {
				scaled, reason = timeText(r.At), orDash(oneLine(r.Reason))
			}
			fmt.Fprintf(tw, "\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s", q.High, q.Scheduled, q.Running, q.Retrying,
				q.SucceededLastHour, q.FailedLastHour, orDash(oneLine(q.Source)), scaled, reason)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
