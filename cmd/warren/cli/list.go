package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// jobListOptions are the inputs of `warren job list`.
type jobListOptions struct {
	watchOptions
	Status, Type, Pool string
	Meta               []string // KEY=VALUE
	Since, Until       string
	Limit              int
	All                bool
}

// Validate checks the options.
func (o *jobListOptions) Validate() error {
	if err := o.watchOptions.Validate(); err != nil {
		return err
	}
	if o.Status != "" && !slices.Contains(jobs.Statuses, jobs.Status(o.Status)) {
		return fmt.Errorf("--status %q: want one of %s", o.Status, strings.Join(statusWords(), ", "))
	}
	if o.Type != "" && !jobs.ValidTypeName(o.Type) {
		return fmt.Errorf("--type %q is not a type name", o.Type)
	}
	if o.Pool != "" && !jobs.ValidPoolName(o.Pool) {
		return fmt.Errorf("--pool %q is not a pool name", o.Pool)
	}
	for _, m := range o.Meta {
		if k, _, ok := strings.Cut(m, "="); !ok || k == "" {
			return fmt.Errorf("--meta %q: want KEY=VALUE", m)
		}
	}
	if o.Limit < 1 || o.Limit > 1000 {
		return fmt.Errorf("--limit %d: want 1 to 1000", o.Limit)
	}
	if o.All && o.Watch {
		return fmt.Errorf("--all and --watch do not go together")
	}
	return nil
}

// query turns the options into a listing's filters; since and until are
// RFC 3339 times or durations ago, as the API takes them.
func (o *jobListOptions) query(now time.Time) (client.JobQuery, error) {
	q := client.JobQuery{Status: jobs.Status(o.Status), Type: o.Type, Pool: o.Pool, Limit: o.Limit}
	for _, m := range o.Meta {
		k, v, _ := strings.Cut(m, "=")
		if q.Meta == nil {
			q.Meta = map[string]string{}
		}
		q.Meta[k] = v
	}
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"since", o.Since, &q.Since}, {"until", o.Until, &q.Until}} {
		if t.v == "" {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, t.v); err == nil {
			*t.dst = at
			continue
		}
		d, err := time.ParseDuration(t.v)
		if err != nil || d < 0 {
			return q, fmt.Errorf("--%s %q: want a time (2026-01-02T15:04:05Z) or a duration ago (1h)", t.flag, t.v)
		}
		*t.dst = now.Add(-d)
	}
	return q, nil
}

func (a *app) jobListCmd() *cobra.Command {
	o := jobListOptions{Limit: 50}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List jobs, newest first, by status, type, pool, label and time",
		Long: `List jobs, newest first: one row each with its id, type, status, attempts,
age and, for a failed one, its error. Filters combine: --status, --type,
--pool, --meta KEY=VALUE (repeatable: all must match), --since and --until
(an RFC 3339 time, or a duration ago such as 1h). --limit jobs a page (50;
at most 1000); --all follows the pages to the end. -o wide adds the pool,
worker and who submitted it; -o json and -o yaml print the API's pages.
'warren jobs' is the same command.`,
		Example: `  # What failed in the last hour, and why
  warren job list --status failed --since 1h

  # Jobs of one tenant, as JSON
  warren jobs --meta tenant=acme -o json

  # Every queued image job
  warren job list --pool image --status queued --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), o.watchOptions, format, "warren job list", func(ctx context.Context, w io.Writer) error {
				q, err := o.query(time.Now())
				if err != nil {
					return err
				}
				var pages []*client.JobPage
				for {
					page, err := c.List(ctx, q)
					if err != nil {
						return apiError(err)
					}
					pages = append(pages, page)
					if !o.All || page.NextCursor == "" {
						break
					}
					q.Cursor = page.NextCursor
				}
				return writeJobList(w, format, pages)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Status, "status", "", "only jobs with this status: "+strings.Join(statusWords(), ", "))
	f.StringVar(&o.Type, "type", "", "only jobs of this type")
	f.StringVar(&o.Pool, "pool", "", "only jobs of this pool")
	f.StringArrayVar(&o.Meta, "meta", nil, "only jobs labelled KEY=VALUE (repeatable)")
	f.StringVar(&o.Since, "since", "", "only jobs created since: a time, or a duration ago (1h)")
	f.StringVar(&o.Until, "until", "", "only jobs created until: a time, or a duration ago")
	f.IntVar(&o.Limit, "limit", o.Limit, "jobs a page, 1 to 1000")
	f.BoolVar(&o.All, "all", false, "follow the pages to the end of the listing")
	o.bind(cmd)
	_ = cmd.RegisterFlagCompletionFunc("type", a.completeTypeValues)
	_ = cmd.RegisterFlagCompletionFunc("pool", a.completePoolValues)
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(statusWords(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// jobsCmd is `warren jobs`, the same command as `warren job list`.
func (a *app) jobsCmd() *cobra.Command {
	cmd := a.jobListCmd()
	cmd.Use, cmd.Aliases = "jobs", nil
	cmd.Short = "List jobs (the same as 'warren job list')"
	return cmd
}

// writeJobList prints pages of a listing: as data, the API's pages (one
// object when there is one page); as a table, one row a job.
func writeJobList(w io.Writer, format string, pages []*client.JobPage) error {
	if isData(format) {
		if len(pages) == 1 {
			return writeData(w, format, pages[0])
		}
		return writeData(w, format, pages)
	}
	var js []*jobs.Job
	for _, p := range pages {
		js = append(js, p.Jobs...)
	}
	if len(js) == 0 {
		_, err := fmt.Fprintln(w, "no jobs match")
		return err
	}
	wide := format == formatWide
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "ID\tTYPE\tSTATUS\tATTEMPTS\tCREATED\tERROR"
	if wide {
		header = "ID\tTYPE\tPOOL\tSTATUS\tATTEMPTS\tCREATED\tWORKER\tSUBMITTED BY\tERROR"
	}
	fmt.Fprintln(tw, header)
	now := time.Now()
	for _, j := range js {
		errText := "-"
		if j.Error != nil && j.Status != jobs.StatusSucceeded {
			errText = oneLine(j.Error.Code + ": " + j.Error.Message)
			if len(errText) > 60 {
				errText = errText[:57] + "..."
			}
		}
		created := durationText(now.Sub(j.CreatedAt).Round(time.Second)) + " ago"
		attempts := fmt.Sprintf("%d/%d", j.Attempt, j.MaxAttempts)
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Type, orDash(j.Pool), j.Status, attempts, created,
				orDash(oneLine(j.Worker)), orDash(oneLine(j.SubmittedBy)), errText)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Type, j.Status, attempts, created, errText)
		}
	}
	if last := pages[len(pages)-1]; last.NextCursor != "" {
		fmt.Fprintln(tw, "(more: --all, or --limit up to 1000)")
	}
	return tw.Flush()
}

func statusWords() []string {
	out := make([]string, len(jobs.Statuses))
	for i, s := range jobs.Statuses {
		out[i] = string(s)
	}
	return out
}
