package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

func (a *app) workflowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workflow",
		Aliases: []string{"workflows"},
		Short:   "Submit, inspect, list and cancel workflows: jobs in chains, groups and chords",
		Long: `A workflow runs jobs in an order: a chain (each step gets the previous step's
result), a group (steps in parallel) and a chord (a group, then a callback that
gets every member's outcome), nested. Its members are ordinary jobs, labelled
workflow=ID: 'warren jobs --meta workflow=ID' lists them.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080). Submitting needs the submit scope where the
API has keys, reading read, canceling admin. docs/workflows.md says more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.workflowSubmitCmd(), a.workflowGetCmd(), a.workflowListCmd(), a.workflowCancelCmd())
	return cmd
}

// workflowSubmitOptions are the inputs of `warren workflow submit`.
type workflowSubmitOptions struct {
	File string
}

// Validate reports what is wrong with the options, if anything; the API
// checks the workflow.
func (o *workflowSubmitOptions) Validate() error {
	if o.File == "" {
		return errors.New("-f is required: a file holding the workflow as JSON, or - for standard input")
	}
	return nil
}

func (a *app) workflowSubmitCmd() *cobra.Command {
	var o workflowSubmitOptions
	cmd := &cobra.Command{
		Use:   "submit -f FILE",
		Short: "Submit a workflow written as JSON",
		Long: `Submit the workflow in FILE (- for standard input), written as the body of
POST /v1/workflows:

  {"name": "thumbnails", "on_failure": "stop",
   "steps": {"chain": [
     {"job": {"type": "sys.echo", "payload": {"n": 1}}},
     {"chord": {"group": [{"job": {"type": "sys.echo"}}, {"job": {"type": "sys.echo"}}],
                "then": {"job": {"type": "sys.echo"}}}}]}}

Every member is checked against its type now; a refusal names the member's
field by its path, such as steps.chain[1].chord.group[0].job.type. Prints the
workflow's id; -o json or yaml prints the workflow as the API returns it.`,
		Example: `  warren workflow submit -f thumbnails.json
  id=$(warren workflow submit -f wf.json) && warren workflow get "$id"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			var body []byte
			if o.File == "-" {
				body, err = io.ReadAll(a.in)
			} else {
				body, err = os.ReadFile(o.File)
			}
			if err != nil {
				return fmt.Errorf("read the workflow: %w", err)
			}
			body = bytes.TrimSpace(body)
			if len(body) == 0 {
				return fmt.Errorf("%s is empty: want a workflow as JSON, such as {\"steps\":{\"job\":{\"type\":\"sys.echo\"}}}", workflowSource(o.File))
			}
			w, err := c.SubmitWorkflowJSON(cmd.Context(), body)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, w)
			}
			_, err = fmt.Fprintln(a.out, w.ID)
			return err
		},
	}
	cmd.Flags().StringVarP(&o.File, "file", "f", "", "the workflow as JSON: a file, or - for standard input")
	return cmd
}

func workflowSource(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

// workflowIDOptions are the inputs of the commands that take a workflow id.
type workflowIDOptions struct{ ID string }

// Validate reports what is wrong with the options, if anything.
func (o *workflowIDOptions) Validate() error {
	if !jobs.ValidID(o.ID) {
		return fmt.Errorf("%q is not a workflow id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d", o.ID)
	}
	return nil
}

func (a *app) workflowGetCmd() *cobra.Command {
	var o workflowIDOptions
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a workflow: its status, and each step with its job's status",
		Long: `Show a workflow: its status, counts of its members by status, and its steps
as a tree, each job step with its job's id and status (waiting before its
turn, skipped when the workflow ended without reaching it). -o json or yaml
prints the workflow as the API returns it.`,
		Example: "  warren workflow get 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d",
		Args:    exactArgs(1, "a workflow id, such as: warren workflow get 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			w, err := c.Workflow(cmd.Context(), o.ID)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, w)
			}
			return writeWorkflowView(a.out, w)
		},
	}
}

func (a *app) workflowCancelCmd() *cobra.Command {
	var o workflowIDOptions
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running workflow",
		Long: `Cancel a running workflow: no step starts after it, and its members that have
not started are canceled; running ones finish. A workflow that has ended
cannot be canceled. -o json or yaml prints the workflow as the API returns it.`,
		Example: "  warren workflow cancel 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d",
		Args:    exactArgs(1, "a workflow id, such as: warren workflow cancel 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			w, err := c.CancelWorkflow(cmd.Context(), o.ID)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, w)
			}
			_, err = fmt.Fprintf(a.out, "canceled workflow %s (%s)\n", w.ID, countsText(w.Counts))
			return err
		},
	}
}

// workflowListOptions are the inputs of `warren workflow list`.
type workflowListOptions struct {
	Limit  int
	Before string
	before time.Time
}

// Validate reports what is wrong with the options, if anything.
func (o *workflowListOptions) Validate() error {
	if o.Limit < 1 || o.Limit > 1000 {
		return fmt.Errorf("--limit %d: want 1 to 1000", o.Limit)
	}
	if o.Before != "" {
		t, err := time.Parse(time.RFC3339Nano, o.Before)
		if err != nil {
			return fmt.Errorf("--before %q: want an RFC 3339 time, such as the one the previous page ends with", o.Before)
		}
		o.before = t
	}
	return nil
}

func (a *app) workflowListCmd() *cobra.Command {
	var o workflowListOptions
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List workflows, newest first",
		Long: `List workflows newest first: id, name, status, jobs, failure rule, created and
finished. When there are more, the last line says how to ask for the next
page (--before). -o json or yaml prints the API's page.`,
		Example: "  warren workflow list\n  warren workflow list --limit 100 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			p, err := c.Workflows(cmd.Context(), o.Limit, o.before)
			if err != nil {
				return apiError(err)
			}
			if isData(format) {
				return writeData(a.out, format, p)
			}
			return writeWorkflowTable(a.out, p, format == formatWide)
		},
	}
	cmd.Flags().IntVar(&o.Limit, "limit", 20, "most workflows to list (1 to 1000)")
	cmd.Flags().StringVar(&o.Before, "before", "", "only workflows created before this time (RFC 3339): the next page")
	return cmd
}

// writeWorkflowTable writes a page of workflows, one a row.
func writeWorkflowTable(w io.Writer, p *client.WorkflowPage, wide bool) error {
	if len(p.Workflows) == 0 {
		_, err := fmt.Fprintln(w, "no workflows; 'warren workflow submit -f FILE' submits one")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "ID\tNAME\tSTATUS\tJOBS\tCREATED\tFINISHED"
	if wide {
		header += "\tON FAILURE\tSUBMITTED BY\tERROR"
	}
	fmt.Fprintln(tw, header)
	for _, wf := range p.Workflows {
		finished := "-"
		if wf.FinishedAt != nil {
			finished = wf.FinishedAt.Format(time.RFC3339)
		}
		row := []string{wf.ID, valueOr(wf.Name, "-"), wf.Status, strconv.Itoa(wf.Jobs), wf.CreatedAt.Format(time.RFC3339), finished}
		if wide {
			row = append(row, wf.OnFailure, valueOr(wf.SubmittedBy, "-"), orDash(errorText(wf.Error)))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !p.Before.IsZero() {
		_, err := fmt.Fprintf(w, "more: warren workflow list --before %s\n", p.Before.Format(time.RFC3339Nano))
		return err
	}
	return nil
}

// countsText writes member counts as "3 succeeded, 1 running", in the
// order a workflow goes through them.
func countsText(counts map[string]int) string {
	order := []string{"succeeded", "failed", "canceled", "running", "retrying", "queued", "scheduled", "waiting", "skipped"}
	var parts []string
	for _, s := range order {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	for s, n := range counts { // a status this CLI does not know yet
		if !slices.Contains(order, s) && n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, oneLine(s)))
		}
	}
	if len(parts) == 0 {
		return "no members"
	}
	return strings.Join(parts, ", ")
}

// writeWorkflowView writes one workflow: key/value lines, then its steps
// as a tree with each job step's status and job.
func writeWorkflowView(w io.Writer, wf *client.Workflow) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	row := func(key, value string) { fmt.Fprintf(tw, "%s:\t%s\n", key, value) }
	row("id", wf.ID)
	if wf.Name != "" {
		row("name", oneLine(wf.Name))
	}
	row("status", wf.Status)
	row("on failure", wf.OnFailure)
	row("jobs", fmt.Sprintf("%d: %s", wf.Jobs, countsText(wf.Counts)))
	row("created", timeText(wf.CreatedAt))
	if wf.FinishedAt != nil {
		row("finished", timeText(*wf.FinishedAt))
	}
	if wf.Error != nil {
		row("error", errorText(wf.Error))
	}
	if wf.SubmittedBy != "" {
		row("submitted by", oneLine(wf.SubmittedBy))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if wf.Steps == nil {
		return nil
	}
	members := map[string]client.WorkflowMember{}
	for _, m := range wf.Members {
		members[m.Step] = m
	}
	var lines [][2]string // the tree's text, and the member's columns
	var walk func(s client.WorkflowStep, path, label, indent string, last bool)
	walk = func(s client.WorkflowStep, path, label, indent string, last bool) {
		branch, next := "├─ ", indent+"│  "
		if last {
			branch, next = "└─ ", indent+"   "
		}
		if path == "steps" {
			branch, next = "", ""
		}
		child := func(steps []client.WorkflowStep, prefix string, more bool) {
			for i, c := range steps {
				walk(c, fmt.Sprintf("%s[%d]", prefix, i), fmt.Sprintf("[%d] ", i), next, i == len(steps)-1 && !more)
			}
		}
		switch {
		case s.Job != nil:
			m := members[path]
			cols := m.Status + "\t" + m.JobID + "\t"
			if m.Error != nil && m.Status != "succeeded" {
				cols += errorText(m.Error)
			}
			lines = append(lines, [2]string{indent + branch + label + "job " + oneLine(s.Job.Type), cols})
		case s.Chain != nil:
			lines = append(lines, [2]string{indent + branch + label + "chain", "\t\t"})
			child(s.Chain, path+".chain", false)
		case s.Group != nil:
			lines = append(lines, [2]string{indent + branch + label + "group", "\t\t"})
			child(s.Group, path+".group", false)
		case s.Chord != nil:
			lines = append(lines, [2]string{indent + branch + label + "chord", "\t\t"})
			child(s.Chord.Group, path+".chord.group", true)
			walk(s.Chord.Then, path+".chord.then", "then ", next, true)
		}
	}
	walk(*wf.Steps, "steps", "", "", true)
	// Every line has the same columns (tabwriter aligns a column over the
	// lines that have it, one after another); the padding of those left
	// empty is trimmed.
	var buf bytes.Buffer
	buf.WriteString("steps:\n")
	tw = tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "  %s\t%s\n", l[0], l[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}
