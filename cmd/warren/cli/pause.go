package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

func (a *app) queueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Pause or resume a worker pool",
		Long: `Pause a pool's workers, so they take no new jobs, and resume them. A pause
is kept in Redis: it outlives every process, and a worker that starts while
its pool is paused takes nothing. 'warren queues' shows which pools are
paused.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080). Pausing and resuming need an API key with the
admin scope where the API has keys.`,
		// Runnable, so that an unknown subcommand is an error, not help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.poolActionCmd("pause", "Pause a pool: its workers finish what they run and take no new jobs",
			`Pause POOL. Each of its workers stops consuming at once: jobs it had received
but not started go back to the queue, and those it runs finish as usual.
Jobs are still accepted; they wait in the queue until 'warren queue resume'.
The autoscaler keeps a paused pool at its size rather than growing it for its
backlog. Pausing a paused pool changes nothing.`),
		a.poolActionCmd("resume", "Resume a paused pool: its workers take jobs again",
			`Resume POOL: its workers consume its queue again at once. Resuming a pool
that is not paused changes nothing.`),
	)
	return cmd
}

// poolActionOptions are the inputs of `warren queue pause|resume`.
type poolActionOptions struct {
	Pool string
}

// Validate reports what is wrong with the options, if anything.
func (o *poolActionOptions) Validate() error { return checkPool(o.Pool) }

func (a *app) poolActionCmd(action, short, long string) *cobra.Command {
	var o poolActionOptions
	return &cobra.Command{
		Use:               action + " POOL",
		Short:             short,
		Long:              long + "\n\n-o json prints the pool's state as the API returns it.",
		Example:           "  warren queue " + action + " sys",
		Args:              exactArgs(1, "a pool name, such as: warren queue "+action+" sys"),
		ValidArgsFunction: a.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Pool = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			var st *client.PoolState
			if action == "pause" {
				st, err = c.PausePool(cmd.Context(), o.Pool)
			} else {
				st, err = c.ResumePool(cmd.Context(), o.Pool)
			}
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, st)
			}
			return writePoolState(a.out, st)
		},
	}
}

// writePoolState says what a pause or resume did.
func writePoolState(w io.Writer, st *client.PoolState) error {
	var msg string
	switch {
	case st.Paused && st.Changed:
		msg = fmt.Sprintf("paused pool %s: its workers finish the jobs they run and take no new ones; 'warren queue resume %s' resumes it", st.Pool, st.Pool)
	case st.Paused:
		msg = fmt.Sprintf("pool %s was already paused", st.Pool)
		if !st.PausedAt.IsZero() {
			msg += " (since " + timeText(st.PausedAt)
			if st.PausedBy != "" {
				msg += ", by " + oneLine(st.PausedBy)
			}
			msg += ")"
		}
	case st.Changed:
		msg = fmt.Sprintf("resumed pool %s: its workers take jobs again", st.Pool)
	default:
		msg = fmt.Sprintf("pool %s was not paused", st.Pool)
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}
