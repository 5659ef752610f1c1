package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

func (a *app) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedule",
		Aliases: []string{"schedules"},
		Short:   "Add, list, pause, resume and delete schedules: jobs submitted at every tick of a cron expression or interval",
		Long: `A schedule submits a job of one type and payload at every tick of a cron
expression (minute hour day-of-month month day-of-week, or @hourly, @daily…)
or of a fixed interval (--every 1m). Each tick fires once, however many warren
processes run: one at a time holds the scheduler's lease in Redis, and a tick's
job carries the idempotency key schedule:NAME:TICK. Its jobs are labelled
schedule=NAME: 'warren jobs --meta schedule=NAME' lists them.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080). Listing needs the read scope where the API
has keys; adding, pausing, resuming and deleting need admin. docs/schedules.md
says more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.scheduleAddCmd(), a.scheduleListCmd(), a.scheduleGetCmd(),
		a.scheduleActionCmd("pause", "Pause a schedule: no tick fires until it is resumed",
			"Pause NAME: none of its ticks fires until 'warren schedule resume NAME'. Pausing a\npaused schedule changes nothing."),
		a.scheduleActionCmd("resume", "Resume a paused schedule",
			"Resume NAME from now: the ticks that passed while it was paused are not fired,\nwhatever its catch-up says."),
		a.scheduleActionCmd("rm", "Delete a schedule", "Delete NAME. The jobs it fired are not touched."),
	)
	return cmd
}

// scheduleAddOptions are the inputs of `warren schedule add`.
type scheduleAddOptions struct {
	Name, Cron, Every, Type, Payload, Timezone, Jitter, Overlap string
	CatchUp                                                     bool
	Labels                                                      []string
	payloadSet                                                  bool
}

// Validate reports what is wrong with the options, if anything; the API
// checks the rest.
func (o *scheduleAddOptions) Validate() error {
	switch {
	case o.Cron == "" && o.Every == "":
		return errors.New("give --cron (such as '0 3 * * *') or --every (such as 1m)")
	case o.Cron != "" && o.Every != "":
		return errors.New("give --cron or --every, not both")
	case o.Type == "":
		return errors.New("--type is required, such as --type sys.echo")
	case o.Overlap != "" && o.Overlap != "allow" && o.Overlap != "skip":
		return errors.New("--overlap is allow or skip")
	}
	for _, l := range o.Labels {
		if k, _, ok := strings.Cut(l, "="); !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
	}
	return checkPayloadArg(o.Payload)
}

func (a *app) scheduleAddCmd() *cobra.Command {
	var o scheduleAddOptions
	cmd := &cobra.Command{
		Use:   "add NAME --type TYPE (--cron EXPR | --every DURATION) [--payload JSON]",
		Short: "Add a schedule",
		Long: `Add a schedule named NAME (letters, digits, '.', '_', '-'; at most 128).
Its first tick is the first after now. --payload is JSON text, @FILE or - for
standard input, checked against the type's schema now as a job's would be.

-o json prints the schedule as the API returns it.`,
		Example: `  warren schedule add nightly-report --type report.build --cron '0 3 * * *' --timezone Europe/Paris --catch-up
  warren schedule add heartbeat --type sys.echo --every 30s --payload '{"ping":true}' --overlap skip`,
		Args: exactArgs(1, "the schedule's name, such as: warren schedule add nightly --type sys.echo --cron '0 3 * * *'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			o.payloadSet = cmd.Flags().Changed("payload")
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			req := client.ScheduleRequest{Name: o.Name, Cron: o.Cron, Every: o.Every, Type: o.Type, Timezone: o.Timezone,
				Jitter: o.Jitter, Overlap: o.Overlap, CatchUp: o.CatchUp}
			if o.payloadSet {
				if req.Payload, err = readPayload(o.Payload, false, a.in); err != nil {
					return err
				}
			}
			for _, l := range o.Labels {
				k, v, _ := strings.Cut(l, "=")
				if req.Metadata == nil {
					req.Metadata = map[string]string{}
				}
				req.Metadata[k] = v
			}
			s, err := c.AddSchedule(cmd.Context(), req)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, s)
			}
			_, err = fmt.Fprintf(a.out, "added schedule %s: next tick %s\n", s.Name, nextText(s))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Type, "type", "", "the job type to submit at each tick")
	f.StringVar(&o.Cron, "cron", "", "a 5-field cron expression or a descriptor (@hourly, @daily, @weekly, @monthly, @yearly)")
	f.StringVar(&o.Every, "every", "", "a fixed interval instead of --cron, at least 1s (ticks fall on its multiples since the Unix epoch)")
	f.StringVar(&o.Payload, "payload", "", "each job's payload: JSON text, @FILE or - (default {})")
	f.StringVar(&o.Timezone, "timezone", "", "the IANA zone --cron is read in, such as Europe/Paris (default UTC)")
	f.StringVar(&o.Jitter, "jitter", "", "delay each tick's job by up to this much, such as 30s")
	f.StringVar(&o.Overlap, "overlap", "", "allow (default): fire every tick; skip: not while the previous tick's job has not ended")
	f.BoolVar(&o.CatchUp, "catch-up", false, "fire a tick missed while nothing ran once, on return (default: skip it)")
	f.StringArrayVar(&o.Labels, "label", nil, "a label KEY=VALUE for each job (repeatable)")
	return cmd
}

type noOptions struct{}

func (noOptions) Validate() error { return nil }

func (a *app) scheduleListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the schedules: next tick, last job, paused",
		Long: `List the schedules, by name: how often, the job type, the next tick (none
while paused), the last tick fired and its job, and the last tick skipped and
why. -o wide adds the zone, jitter, overlap and catch-up; -o json the API's
data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, c, err := a.prepare(cmd, noOptions{})
			if err != nil {
				return err
			}
			ss, err := c.Schedules(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, ss)
			}
			return writeSchedules(a.out, ss, format == formatWide)
		},
	}
}

func (a *app) scheduleGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show one schedule",
		Args:  exactArgs(1, "a schedule's name, such as: warren schedule get nightly"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, c, err := a.prepare(cmd, noOptions{})
			if err != nil {
				return err
			}
			s, err := c.Schedule(cmd.Context(), args[0])
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, s)
			}
			return writeSchedules(a.out, []client.Schedule{*s}, true)
		},
	}
}

func (a *app) scheduleActionCmd(action, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " NAME",
		Short:   short,
		Long:    long + "\n\n-o json prints the schedule as the API returns it.",
		Example: "  warren schedule " + action + " nightly",
		Args:    exactArgs(1, "a schedule's name, such as: warren schedule "+action+" nightly"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, c, err := a.prepare(cmd, noOptions{})
			if err != nil {
				return err
			}
			var s *client.Schedule
			switch action {
			case "pause":
				s, err = c.PauseSchedule(cmd.Context(), args[0])
			case "resume":
				s, err = c.ResumeSchedule(cmd.Context(), args[0])
			default:
				s, err = c.DeleteSchedule(cmd.Context(), args[0])
			}
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, s)
			}
			var msg string
			switch {
			case action == "rm":
				msg = "deleted schedule " + s.Name
			case action == "pause" && s.Changed:
				msg = fmt.Sprintf("paused schedule %s; 'warren schedule resume %s' resumes it", s.Name, s.Name)
			case action == "pause":
				msg = "schedule " + s.Name + " was already paused"
			case s.Changed:
				msg = fmt.Sprintf("resumed schedule %s: next tick %s", s.Name, nextText(s))
			default:
				msg = "schedule " + s.Name + " was not paused"
			}
			_, err = fmt.Fprintln(a.out, msg)
			return err
		},
	}
}

func nextText(s *client.Schedule) string {
	switch {
	case s.Paused:
		return "none (paused)"
	case s.NextTick.IsZero():
		return "none"
	}
	return timeText(s.NextTick)
}

// writeSchedules prints the schedules as a table.
func writeSchedules(w io.Writer, ss []client.Schedule, wide bool) error {
	if len(ss) == 0 {
		_, err := fmt.Fprintln(w, "no schedules; 'warren schedule add' adds one")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "NAME\tWHEN\tTYPE\tNEXT TICK\tLAST TICK\tLAST JOB\tLAST SKIPPED"
	if wide {
		header += "\tZONE\tJITTER\tOVERLAP\tCATCH-UP"
	}
	fmt.Fprintln(tw, header)
	for _, s := range ss {
		when := "cron " + s.Cron
		if s.Every != "" {
			when = "every " + s.Every
		}
		next := "-"
		if s.Paused {
			next = "paused"
		} else if !s.NextTick.IsZero() {
			next = s.NextTick.Format(time.RFC3339)
		}
		last, job, skipped := "-", "-", "-"
		if !s.LastTick.IsZero() {
			last, job = s.LastTick.Format(time.RFC3339), s.LastJob
		}
		if k := s.LastSkipped; k != nil {
			skipped = k.Tick.Format(time.RFC3339) + " (" + k.Reason + ")"
		}
		row := []string{oneLine(s.Name), oneLine(when), s.Type, next, last, job, skipped}
		if wide {
			row = append(row, valueOr(s.Timezone, "UTC"), valueOr(s.Jitter, "-"), s.Overlap, fmt.Sprint(s.CatchUp))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func valueOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return oneLine(s)
}
