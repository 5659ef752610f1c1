package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// maxDeadLimit is the most dead letters the API lists at once.
const maxDeadLimit = 1000

// deadErrorWidth is how much of a dead letter's error a table row shows.
const deadErrorWidth = 60

func (a *app) deadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List, replay or purge the dead letters of a worker pool",
		Long: `Each worker pool has a dead-letter queue: the jobs of its types that failed
for good, kept there to be looked at, run again (replayed) or deleted
(purged). A pool has one once a worker of the pool has run.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		// Runnable, so that an unknown subcommand is an error, not help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.deadListCmd(), a.deadReplayCmd(), a.deadPurgeCmd())
	return cmd
}

// checkPool refuses what cannot be a pool name before it is sent.
func checkPool(pool string) error {
	if !jobs.ValidPoolName(pool) {
		return fmt.Errorf("%q is not a pool name: want a lower-case word, such as sys", pool)
	}
	return nil
}

// deadListOptions are the inputs of `warren dead list`.
type deadListOptions struct {
	Pool  string
	Limit int
}

// Validate reports what is wrong with the options, if anything.
func (o *deadListOptions) Validate() error {
	if err := checkPool(o.Pool); err != nil {
		return err
	}
	if o.Limit < 1 || o.Limit > maxDeadLimit {
		return fmt.Errorf("--limit %d: want 1 to %d", o.Limit, maxDeadLimit)
	}
	return nil
}

func (a *app) deadListCmd() *cobra.Command {
	var o deadListOptions
	cmd := &cobra.Command{
		Use:   "list POOL",
		Short: "List the dead letters of a pool, oldest first",
		Long: `List the oldest dead letters of POOL, up to --limit of them: a table of
their ids, types, attempts, when they failed and their errors, then how many
of the pool's dead letters that is. -o json prints the list as the API returns
it, with each job's payload. Listing leaves the dead letters where they are.`,
		Example: `  warren dead list sys
  warren dead list sys --limit 10 -o json`,
		Args: exactArgs(1, "a pool name, such as: warren dead list sys"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Pool = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			l, err := c.Dead(cmd.Context(), o.Pool, o.Limit)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, l)
			}
			return writeDeadTable(a.out, l, format == formatWide)
		},
		ValidArgsFunction: a.completePools,
	}
	cmd.Flags().IntVar(&o.Limit, "limit", 100, fmt.Sprintf("list at most this many, 1 to %d", maxDeadLimit))
	return cmd
}

// writeDeadTable writes dead letters as a table, one row each, and a line
// saying how many of the pool's they are. wide adds why each was
// dead-lettered and shows errors in full.
func writeDeadTable(w io.Writer, l *client.DeadList, wide bool) error {
	if len(l.Dead) > 0 {
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		if wide {
			fmt.Fprintln(tw, "ID\tTYPE\tATTEMPTS\tFAILED AT\tREASON\tERROR")
		} else {
			fmt.Fprintln(tw, "ID\tTYPE\tATTEMPTS\tFAILED AT\tERROR")
		}
		for _, d := range l.Dead {
			failed := "-"
			if !d.FailedAt.IsZero() {
				failed = timeText(d.FailedAt)
			}
			if wide {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n",
					oneLine(d.ID), oneLine(d.Type), d.Attempts, failed, orDash(oneLine(d.Reason)), orDash(errorText(d.Error)))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n",
				oneLine(d.ID), oneLine(d.Type), d.Attempts, failed, orDash(cut(errorText(d.Error), deadErrorWidth)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d of %d dead letters in pool %s\n", len(l.Dead), l.Total, l.Pool)
	return err
}

// cut shortens s to at most n runes, ending it with "…" if it was longer.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// deadReplayOptions are the inputs of `warren dead replay`.
type deadReplayOptions struct {
	Pool string
	IDs  []string
	All  bool
}

// Validate reports what is wrong with the options, if anything.
func (o *deadReplayOptions) Validate() error {
	if err := checkPool(o.Pool); err != nil {
		return err
	}
	switch {
	case o.All && len(o.IDs) > 0:
		return errors.New("give job ids or --all, not both")
	case !o.All && len(o.IDs) == 0:
		return fmt.Errorf("replay needs the ids of the jobs to replay, or --all for every dead letter of pool %s", o.Pool)
	}
	for _, id := range o.IDs {
		if err := checkJobID(id); err != nil {
			return err
		}
	}
	return nil
}

// deadReplayResult is what `warren dead replay -o json` prints.
type deadReplayResult struct {
	Replayed int      `json:"replayed"`
	Missing  []string `json:"missing"`
}

func (a *app) deadReplayCmd() *cobra.Command {
	var o deadReplayOptions
	cmd := &cobra.Command{
		Use:   "replay POOL (ID... | --all)",
		Short: "Run dead letters again",
		Long: `Take the jobs named (or, with --all, every one) out of POOL's dead-letter
queue and queue them again with their attempts reset, so that each runs again
from its first attempt. Prints how many were replayed (with -o json, an
object with "replayed" and "missing").

An id that is not in the dead-letter queue is reported on standard error;
the others are still replayed. Exit status: 0 if every job named was
replayed, 1 otherwise.`,
		Example: `  # Replay the oldest dead letter of pool sys
  id=$(warren dead list sys --limit 1 -o json | jq -r '.dead[0].id')
  warren dead replay sys "$id"

  # Replay every dead letter of pool sys
  warren dead replay sys --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("replay needs a pool, then job ids or --all, such as: warren dead replay sys --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Pool, o.IDs = args[0], uniq(args[1:])
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			res := deadReplayResult{Missing: []string{}}
			if o.All {
				res.Replayed, err = c.ReplayAllDead(cmd.Context(), o.Pool)
			} else {
				var missing []string
				res.Replayed, missing, err = c.ReplayDead(cmd.Context(), o.Pool, o.IDs)
				res.Missing = append(res.Missing, missing...)
			}
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				err = writeData(a.out, format, res)
			} else {
				_, err = fmt.Fprintf(a.out, "replayed %d\n", res.Replayed)
			}
			if err != nil {
				return err
			}
			for _, id := range res.Missing {
				fmt.Fprintf(a.errOut, "not in the dead-letter queue: %s\n", id)
			}
			if len(res.Missing) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "replay every dead letter of the pool")
	cmd.ValidArgsFunction = a.completePools
	return cmd
}

// deadPurgeOptions are the inputs of `warren dead purge`.
type deadPurgeOptions struct {
	Pool string
	Yes  bool
}

// Validate reports what is wrong with the options, if anything.
func (o *deadPurgeOptions) Validate() error {
	if err := checkPool(o.Pool); err != nil {
		return err
	}
	if !o.Yes {
		return fmt.Errorf("purge deletes every dead letter of pool %s, for good; pass --yes to go ahead", o.Pool)
	}
	return nil
}

func (a *app) deadPurgeCmd() *cobra.Command {
	var o deadPurgeOptions
	cmd := &cobra.Command{
		Use:   "purge POOL --yes",
		Short: "Delete every dead letter of a pool",
		Long: `Delete every dead letter of POOL, for good, and print how many were deleted
(with -o json, an object with "purged"). The jobs' records are left as they
are.
Since this cannot be undone, it asks for --yes.`,
		Example: `  warren dead purge sys --yes`,
		Args:    exactArgs(1, "a pool name, such as: warren dead purge sys --yes"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Pool = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			n, err := c.PurgeDead(cmd.Context(), o.Pool)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, map[string]int{"purged": n})
			}
			_, err = fmt.Fprintf(a.out, "purged %d\n", n)
			return err
		},
	}
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "confirm deleting every dead letter of the pool")
	cmd.ValidArgsFunction = a.completePools
	return cmd
}
