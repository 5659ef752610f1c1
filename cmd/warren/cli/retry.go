package cli

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

func (a *app) jobRetryCmd() *cobra.Command {
	var o jobIDsOptions
	return &cobra.Command{
		Use:   "retry ID...",
		Short: "Run failed or canceled jobs again",
		Long: `Run each job named again, in turn, from its first attempt, and print
"ID queued" for each (with -o json or -o yaml, the retried jobs as a list).
The job keeps its id, payload and settings; its error and result are
cleared, and its attempts start again from 1.

Only a job that failed or was canceled can be retried. Any other is
reported on standard error as "ID: STATUS, not failed or canceled" (an
unknown id as "ID: no such job"), and the other jobs are still retried.

Exit status: 0 if every job named was retried, 1 otherwise.`,
		Example: `  # A job canceled before it ran, run after all (now, whatever its delay was)
  id=$(warren enqueue sys.echo '{"message":"later"}' --delay 1h)
  warren job cancel "$id"
  warren job retry "$id"
  warren job wait "$id"

  # Every job that failed for good, once its cause is fixed
  warren job retry ID1 ID2 ID3 -o json`,
		Args: needIDs("retry"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.IDs = uniq(args)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.eachJob(ctx, format, o.IDs, func(id string) (*jobs.Job, error) { return c.Retry(ctx, id, nil) },
				func(id string, err error) string { return notRetryableText(ctx, c, id, err) })
		},
	}
}

// notRetryableText says why a job could not be retried: its status, read
// from the job, or the API's own message if the job cannot be read.
func notRetryableText(ctx context.Context, c *client.Client, id string, conflict error) string {
	if j, err := c.Get(ctx, id); err == nil && j.Status != jobs.StatusFailed && j.Status != jobs.StatusCanceled {
		return string(j.Status) + ", not failed or canceled"
	}
	var ae *client.APIError
	if errors.As(conflict, &ae) && ae.Message != "" {
		return ae.Message
	}
	return conflict.Error()
}
