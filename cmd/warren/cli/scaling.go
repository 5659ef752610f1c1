package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

// scalingOptions are the inputs of `warren scaling`.
type scalingOptions struct {
	watchOptions
	// Pool, if set, shows that pool alone.
	Pool string
}

// Validate reports what is wrong with the options, if anything.
func (o *scalingOptions) Validate() error {
	if o.Pool != "" {
		if err := checkPool(o.Pool); err != nil {
			return err
		}
	}
	return o.watchOptions.Validate()
}

// scalingOutput is what `warren scaling -o json` prints: the API's answer.
type scalingOutput struct {
	Pools []client.PoolScaling `json:"pools"`
}

// scalingCmd is a command of its own, not a subcommand of `warren
// autoscale`: that one takes pool names as arguments, and a subcommand
// would hide a pool of the same name.
func (a *app) scalingCmd() *cobra.Command {
	var o scalingOptions
	cmd := &cobra.Command{
		Use:   "scaling [POOL]",
		Short: "Show each pool's scaling policy and its autoscaler's recent decisions",
		Long: `Show how each pool is scaled (GET /v1/autoscale): the policy its autoscaler
reports (warren autoscale, or warren dev), its latest decision and what it
was made from, and its recent decisions, newest first: those that changed
the size or gave another reason than the one before (the newest 50, kept 7
days). A pool no autoscaler reports on (a fixed size, or KEDA on Kubernetes,
which reports nothing here) says so. With POOL, that pool alone.

-o json and -o yaml print the pools as the API returns them. --watch shows
them again every --interval (2s) until Ctrl-C.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		Example: `  warren scaling
  warren scaling sys
  warren scaling -o json | jq '.pools[] | {pool, desired, reason}'`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Pool = args[0]
			}
			o.resolve(cmd)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), o.watchOptions, format, "warren scaling", func(ctx context.Context, w io.Writer) error {
				ps, err := c.Autoscale(ctx, o.Pool)
				if err != nil {
					return apiError(err)
				}
				if isData(format) {
					return writeData(w, format, scalingOutput{Pools: ps})
				}
				return writeScaling(w, ps, time.Now())
			})
		},
	}
	o.bind(cmd)
	return cmd
}

// writeScaling writes each pool's scaling as a block: its autoscaler's
// latest word and policy, then its decisions as a table.
func writeScaling(w io.Writer, ps []client.PoolScaling, now time.Time) error {
	if len(ps) == 0 {
		_, err := fmt.Fprintln(w, "no pools")
		return err
	}
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if p.Autoscaler == "" {
			fmt.Fprintf(w, "%s: %s\n", oneLine(p.Pool), orDash(oneLine(p.Note)))
		} else {
			fmt.Fprintf(w, "%s: scaled by %s\n", oneLine(p.Pool), oneLine(p.Autoscaler))
			tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
			fmt.Fprintf(tw, "  replicas:\t%d running, %d desired, %d recommended (%s)\n",
				p.Current, p.Desired, p.Recommended, sinceText(now, p.At, " ago"))
			fmt.Fprintf(tw, "  measured:\tbacklog %d, oldest waiting %s\n",
				p.Backlog, durationText(time.Duration(p.OldestAgeSeconds*float64(time.Second))))
			fmt.Fprintf(tw, "  reason:\t%s\n", orDash(oneLine(p.Reason)))
			if p.Policy != nil {
				fmt.Fprintf(tw, "  policy:\t%s\n", policyText(*p.Policy))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(p.Decisions) == 0 {
			continue
		}
		fmt.Fprintln(w, "  decisions, newest first:")
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "    AT\tFROM\tTO\tRECOMMENDED\tBACKLOG\tOLDEST\tREASON")
		for _, d := range p.Decisions {
			fmt.Fprintf(tw, "    %s\t%d\t%d\t%d\t%d\t%s\t%s\n", timeText(d.At), d.Current, d.Desired, d.Recommended,
				d.Backlog, durationText(time.Duration(d.OldestAgeSeconds*float64(time.Second))), orDash(oneLine(d.Reason)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// policyText is a policy on one line, "none" for what is not set.
func policyText(p client.ScalingPolicy) string {
	orNone := func(d time.Duration) string {
		if d <= 0 {
			return "none"
		}
		return durationText(d)
	}
	step := "none"
	if p.MaxStep > 0 {
		step = fmt.Sprint(p.MaxStep)
	}
	return strings.Join([]string{
		fmt.Sprintf("%d to %d replicas", p.Min, p.Max),
		fmt.Sprintf("target backlog %d", p.TargetBacklog),
		fmt.Sprintf("activation backlog %d", p.ActivationBacklog),
		"target age " + orNone(p.TargetAge.Std()),
		"interval " + durationText(p.Interval.Std()),
		"scale-up window " + durationText(p.ScaleUpWindow.Std()),
		"scale-down window " + orNone(p.ScaleDownWindow.Std()),
		"max step " + step,
	}, ", ")
}
