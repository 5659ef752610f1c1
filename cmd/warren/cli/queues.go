package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

// queuesOptions are the inputs of `warren queues`: none but the global
// flags, which prepare reads.
type queuesOptions struct{}

// Validate reports what is wrong with the options: nothing can be.
func (o *queuesOptions) Validate() error { return nil }

// queuesOutput is what `warren queues -o json` prints: the API's answer.
type queuesOutput struct {
	Queues []client.Queue `json:"queues"`
}

func (a *app) queuesCmd() *cobra.Command {
	var o queuesOptions
	return &cobra.Command{
		Use:   "queues",
		Short: "Show each pool's queue: backlog, consumers, oldest waiting job, dead letters, rescues, replicas",
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
  DEAD       messages in the pool's dead-letter queue ('warren dead list')
  RESCUED    jobs published again in the last hour because the broker had lost
             their messages (docs/guarantees.md)
  REPLICAS   worker processes, current/desired, as the pool's autoscaler last
             reported; - when none reported recently

The management API refreshes its figures every few seconds. -o json prints
the list as the API returns it.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		Example: `  warren queues
  warren queues -o json | jq '.queues[] | {pool, backlog}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			qs, err := c.Queues(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			if format == formatJSON {
				return writeJSON(a.out, queuesOutput{Queues: qs})
			}
			return writeQueuesTable(a.out, qs)
		},
	}
}

// writeQueuesTable writes queues as a table, one row each, or says there
// are none.
func writeQueuesTable(w io.Writer, qs []client.Queue) error {
	if len(qs) == 0 {
		_, err := fmt.Fprintln(w, "no pools yet: a pool appears once a worker of it has declared its types")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tBACKLOG\tREADY\tUNACKED\tCONSUMERS\tOLDEST\tDEAD\tRESCUED\tREPLICAS")
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
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%d\t%d\t%s\n",
			oneLine(q.Pool), q.Backlog, q.Ready, unacked, q.Consumers, oldest, q.Dead, q.RescuedLastHour, replicas)
	}
	return tw.Flush()
}
