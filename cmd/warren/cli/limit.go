package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

func (a *app) limitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "limit",
		Aliases: []string{"limits"},
		Short:   "Set, list and remove rate limits of job types: N jobs per period across all workers",
		Long: `A rate limit bounds how fast the jobs of one type start, across every worker of
its pool, in any process or language: N jobs per period for the type as a whole
(--limit, --per), and/or N per period for each value of a metadata key, the
tenant (--tenant-key, --tenant-limit, --tenant-per). Jobs start spaced evenly;
--burst lets that many more start at once after a quiet spell. A job over the
limit is not failed and holds no worker: it stays queued, its message waits in
the delay levels, and it starts when a token is its ('warren queues' counts
such jobs under LIMITED). No attempt is counted for the wait.

The limits live in Redis; the workers apply a change within moments, without a
restart. The API's address comes from --api, WARREN_API_URL or api_url in
warren.yaml (default http://127.0.0.1:8080). Listing needs the read scope where
the API has keys; setting and removing need admin. docs/ratelimits.md says
more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.limitSetCmd(), a.limitListCmd(), a.limitGetCmd(), a.limitRmCmd())
	return cmd
}

// limitSetOptions are the inputs of `warren limit set`.
type limitSetOptions struct {
	Type                   string
	Limit, Burst           int
	Per                    time.Duration
	TenantKey              string
	TenantLimit, TenantBur int
	TenantPer              time.Duration
}

// Validate reports what is wrong with the options, if anything; the API
// checks the bounds.
func (o *limitSetOptions) Validate() error {
	rate := o.Limit != 0 || o.Per != 0
	tenant := o.TenantKey != "" || o.TenantLimit != 0 || o.TenantPer != 0
	switch {
	case !rate && !tenant:
		return errors.New("give --limit and --per (such as --limit 100 --per 1m), a tenant rate (--tenant-key customer --tenant-limit 10 --tenant-per 1m), or both")
	case rate && (o.Limit == 0 || o.Per == 0):
		return errors.New("--limit and --per go together, such as --limit 100 --per 1m")
	case !rate && o.Burst != 0:
		return errors.New("--burst goes with --limit and --per")
	case tenant && (o.TenantLimit == 0 || o.TenantPer == 0):
		return errors.New("--tenant-limit and --tenant-per go together, with --tenant-key unless the API's api.tenant_key names the key, such as --tenant-key customer --tenant-limit 10 --tenant-per 1m")
	case !tenant && o.TenantBur != 0:
		return errors.New("--tenant-burst goes with --tenant-limit and --tenant-per")
	}
	return nil
}

// request is what the options ask the API for.
func (o *limitSetOptions) request() client.LimitRequest {
	var req client.LimitRequest
	if o.Limit != 0 {
		req.Rate = &jobs.Rate{Limit: o.Limit, Per: jobs.Duration(o.Per), Burst: o.Burst}
	}
	if o.TenantLimit != 0 {
		req.Tenant = &jobs.TenantRate{Key: o.TenantKey, Rate: jobs.Rate{Limit: o.TenantLimit, Per: jobs.Duration(o.TenantPer), Burst: o.TenantBur}}
	}
	return req
}

func (a *app) limitSetCmd() *cobra.Command {
	var o limitSetOptions
	cmd := &cobra.Command{
		Use:   "set TYPE [--limit N --per DURATION [--burst N]] [--tenant-key KEY --tenant-limit N --tenant-per DURATION [--tenant-burst N]]",
		Short: "Set a type's rate limit, replacing any it had",
		Long: `Set the rate limit of the job type TYPE, replacing any it had. --per and
--tenant-per are 1s to 24h; --limit and --tenant-limit 1 to 1000000; the
bursts 0 (the default) to 10000. In any span of --per, at most --limit +
--burst jobs start. Jobs without the tenant key share one tenant's budget.
--tenant-key may be left out where the API's setting api.tenant_key
(WARREN_API_TENANT_KEY) names the key.

-o json prints the limit as the API returns it.`,
		Example: `  # 100 jobs a minute, all workers together
  warren limit set email.send --limit 100 --per 1m

  # and 10 a minute for each customer (metadata customer=…), 5 more at once after a quiet spell
  warren limit set email.send --limit 100 --per 1m --tenant-key customer --tenant-limit 10 --tenant-per 1m --tenant-burst 5`,
		Args: exactArgs(1, "a job type, such as: warren limit set email.send --limit 100 --per 1m"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Type = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			l, err := c.SetLimit(cmd.Context(), o.Type, o.request())
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, l)
			}
			verb := "set"
			if l.Replaced {
				verb = "replaced"
			}
			_, err = fmt.Fprintf(a.out, "%s the rate limit of %s: %s\n", verb, l.Type, limitText(l))
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Limit, "limit", 0, "jobs of the type that may start per --per, all tenants together")
	f.DurationVar(&o.Per, "per", 0, "the period of --limit, such as 1s, 1m or 1h")
	f.IntVar(&o.Burst, "burst", 0, "jobs beyond the even spacing that may start at once after a quiet spell")
	f.StringVar(&o.TenantKey, "tenant-key", "", "the metadata key whose values are the tenants, such as customer (default: the API's api.tenant_key)")
	f.IntVar(&o.TenantLimit, "tenant-limit", 0, "jobs of each tenant that may start per --tenant-per")
	f.DurationVar(&o.TenantPer, "tenant-per", 0, "the period of --tenant-limit")
	f.IntVar(&o.TenantBur, "tenant-burst", 0, "the burst of each tenant")
	return cmd
}

// limitNoOptions are the inputs of the limit commands that take none.
type limitNoOptions struct{}

func (limitNoOptions) Validate() error { return nil }

func (a *app) limitListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the rate limits: rate, tenant rate, jobs held back now",
		Long: `List the types' rate limits, by type: the type's rate, the tenants' rate, and
LIMITED, how many of its jobs the limit holds back now. -o wide adds when and by
whom each was set; -o json the API's data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, c, err := a.prepare(cmd, limitNoOptions{})
			if err != nil {
				return err
			}
			ls, err := c.Limits(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, ls)
			}
			return writeLimits(a.out, ls, format == formatWide)
		},
	}
}

func (a *app) limitGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get TYPE",
		Short: "Show one type's rate limit",
		Args:  exactArgs(1, "a job type, such as: warren limit get email.send"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, c, err := a.prepare(cmd, limitNoOptions{})
			if err != nil {
				return err
			}
			l, err := c.Limit(cmd.Context(), args[0])
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, l)
			}
			return writeLimits(a.out, []client.Limit{*l}, true)
		},
	}
}

func (a *app) limitRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm TYPE",
		Aliases: []string{"delete"},
		Short:   "Remove a type's rate limit",
		Long: `Remove the rate limit of TYPE. Its jobs start as fast as workers take them;
those it held back start when they next check back, within a quarter of
what was left of their wait (at least 10s).

-o json prints the limit as it was.`,
		Example: "  warren limit rm email.send",
		Args:    exactArgs(1, "a job type, such as: warren limit rm email.send"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, c, err := a.prepare(cmd, limitNoOptions{})
			if err != nil {
				return err
			}
			l, err := c.DeleteLimit(cmd.Context(), args[0])
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, l)
			}
			_, err = fmt.Fprintf(a.out, "removed the rate limit of %s (was %s)\n", l.Type, limitText(l))
			return err
		},
	}
}

// rateText is a rate as people write it: "100/1m", "100/1m +5".
func rateText(r *jobs.Rate) string {
	if r == nil {
		return "-"
	}
	s := fmt.Sprintf("%d/%s", r.Limit, durationText(r.Per.Std()))
	if r.Burst > 0 {
		s += fmt.Sprintf(" +%d", r.Burst)
	}
	return s
}

// tenantText is a tenant rate: "customer: 10/1m".
func tenantText(t *jobs.TenantRate) string {
	if t == nil {
		return "-"
	}
	return oneLine(t.Key) + ": " + rateText(&t.Rate)
}

// limitText says a limit in a line.
func limitText(l *client.Limit) string {
	switch {
	case l.Rate != nil && l.Tenant != nil:
		return rateText(l.Rate) + ", and " + rateText(&l.Tenant.Rate) + " per " + oneLine(l.Tenant.Key)
	case l.Rate != nil:
		return rateText(l.Rate)
	case l.Tenant != nil:
		return rateText(&l.Tenant.Rate) + " per " + oneLine(l.Tenant.Key)
	}
	return "none"
}

// writeLimits prints limits as a table.
func writeLimits(w io.Writer, ls []client.Limit, wide bool) error {
	if len(ls) == 0 {
		_, err := fmt.Fprintln(w, "no rate limits; 'warren limit set' sets one")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "TYPE\tRATE\tPER TENANT\tLIMITED"
	if wide {
		header += "\tSET\tBY"
	}
	fmt.Fprintln(tw, header)
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d", oneLine(l.Type), rateText(l.Rate), tenantText(l.Tenant), l.Limited)
		if wide {
			fmt.Fprintf(tw, "\t%s\t%s", timeText(l.SetAt), orDash(oneLine(l.SetBy)))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
