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

// workersOptions are the inputs of `warren workers`.
type workersOptions struct {
	watchOptions
	// Pool, if set, shows that pool's workers alone.
	Pool string
}

// Validate reports what is wrong with the options, if anything.
func (o *workersOptions) Validate() error {
	if o.Pool != "" {
		if err := checkPool(o.Pool); err != nil {
			return fmt.Errorf("--pool: %w", err)
		}
	}
	return o.watchOptions.Validate()
}

// workersOutput is what `warren workers -o json` prints: the API's answer.
type workersOutput struct {
	Workers []client.Worker `json:"workers"`
}

func (a *app) workersCmd() *cobra.Command {
	var o workersOptions
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "Show the live worker processes: what each pool of each is doing",
		Long: `Show the worker processes whose leases are current, one row for each pool
of each process, sorted by pool:

  POOL     the pool
  WORKER   the worker id, which job records name as their worker
  HOST     the machine (the pod in Kubernetes) and PID the process
  VERSION  the version of the program it runs
  BUSY     jobs in hand / the pool's concurrency in that process
  DONE     attempts it ended in success since it started
  FAILED   attempts it ended with an error since it started (retried or not)
  UP       how long ago it started
  SEEN     how long ago it last renewed its lease; the figures are that old

A worker renews its lease every few seconds; one that died leaves the list
within 10 seconds. --pool shows one pool's workers. -o json and -o yaml print
the list as the API returns it. --watch shows it again every --interval (2s)
until Ctrl-C.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		Example: `  warren workers
  warren workers --pool sys -o json | jq '.workers[] | {id, busy, done}'
  warren workers --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), o.watchOptions, format, "warren workers", func(ctx context.Context, w io.Writer) error {
				ws, err := c.Workers(ctx, o.Pool)
				if err != nil {
					return apiError(err)
				}
				if isData(format) {
					return writeData(w, format, workersOutput{Workers: ws})
				}
				return writeWorkersTable(w, ws, o.Pool, time.Now())
			})
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVar(&o.Pool, "pool", "", "show this pool's workers alone")
	_ = cmd.RegisterFlagCompletionFunc("pool", a.completePoolValues)
	return cmd
}

// writeWorkersTable writes workers as a table, one row each, with their
// ages as of now, or says there are none.
func writeWorkersTable(w io.Writer, ws []client.Worker, pool string, now time.Time) error {
	if len(ws) == 0 {
		what := "no live workers"
		if pool != "" {
			what += " in pool " + pool
		}
		_, err := fmt.Fprintln(w, what)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tWORKER\tHOST\tPID\tVERSION\tBUSY\tDONE\tFAILED\tUP\tSEEN")
	for _, wk := range ws {
		pid := "-"
		if wk.PID > 0 {
			pid = fmt.Sprint(wk.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n",
			orDash(oneLine(wk.Pool)), oneLine(wk.ID), orDash(oneLine(wk.Host)), pid, orDash(oneLine(wk.Version)),
			wk.Busy, wk.Concurrency, wk.Done, wk.Failed, sinceText(now, wk.StartedAt, ""), sinceText(now, wk.LastSeenAt, " ago"))
	}
	return tw.Flush()
}

// sinceText is how long before now t was, to the second, and suffix; "-"
// for a zero t.
func sinceText(now, t time.Time, suffix string) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "<1s" + suffix
	}
	return durationText(d.Truncate(time.Second)) + suffix
}

// workerVersion is the version a worker's lease reports: the one the build
// set (-ldflags "-X ...cli.Version=v1.2.3"), else "" for the worker to take
// from the build information.
func workerVersion() string {
	if Version == "dev" {
		return ""
	}
	return Version
}
