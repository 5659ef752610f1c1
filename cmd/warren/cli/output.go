package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// Output formats of the client commands (the -o flag). formatHuman and
// formatWide are views for people; formatJSON and formatYAML print the
// API's data (isData), the same fields in either.
const (
	formatHuman = "table" // a table or key/value view, for people
	formatWide  = "wide"  // the table with more columns, where there are more to show
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFormats are the values -o takes, the default first, with what
// each prints (for help and shell completion).
var outputFormats = [][2]string{
	{formatHuman, "the readable view (the default)"},
	{formatWide, "the readable view with more columns"},
	{formatJSON, "the API's data as JSON"},
	{formatYAML, "the API's data as YAML"},
}

// format returns the output format -o asks for: formatHuman when it is
// not given, on a terminal or not.
func (a *app) format() (string, error) {
	switch a.output {
	case "":
		return formatHuman, nil
	case formatHuman, formatWide, formatJSON, formatYAML:
		return a.output, nil
	}
	return "", fmt.Errorf("-o %q: want table (the default), wide, json or yaml", a.output)
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// writeRawJSON writes a JSON value (a job's result) indented, and a newline.
// An absent value is written as null.
func writeRawJSON(w io.Writer, raw json.RawMessage) error {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("result is not valid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJobView writes one job as aligned "key: value" lines. Fields that do
// not apply yet (worker, times, result, ...) are left out.
func writeJobView(w io.Writer, j *jobs.Job) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	row := func(key, value string) { fmt.Fprintf(tw, "%s:\t%s\n", key, value) }
	row("id", j.ID)
	row("type", j.Type)
	row("status", string(j.Status))
	row("attempt", attemptText(j))
	row("timeout", durationText(j.Timeout.Std()))
	if j.Priority != 0 { // 0, the default, is not shown
		lane := ""
		if jobs.Lane(j.Priority) {
			lane = " (high lane)"
		}
		row("priority", fmt.Sprintf("%d%s", j.Priority, lane))
	}
	if j.Worker != "" {
		row("worker", oneLine(j.Worker))
	}
	row("created", timeText(j.CreatedAt))
	if j.ScheduledAt != nil {
		row("scheduled", timeText(*j.ScheduledAt))
	}
	if j.LimitedUntil != nil {
		row("held back", "until "+timeText(*j.LimitedUntil)+" by its type's rate limit")
	}
	if j.StartedAt != nil {
		row("started", timeText(*j.StartedAt))
	}
	if j.FinishedAt != nil {
		row("finished", timeText(*j.FinishedAt))
	}
	if d := jobDuration(j); d != "" {
		row("duration", d)
	}
	if p := j.Progress; p != nil {
		row("progress", strings.TrimSpace(fmt.Sprintf("%d%% %s", p.Percent, oneLine(p.Message))))
	}
	if j.Error != nil {
		e := errorText(j.Error)
		if j.Error.Retryable {
			e += " (will retry)"
		}
		row("error", e)
	}
	// The timeline: one row an attempt, the running one last.
	for i, a := range j.Attempts {
		key := ""
		if i == 0 {
			key = "attempts:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", key, attemptLine(a))
	}
	if len(j.Metadata) > 0 {
		row("metadata", metadataText(j.Metadata))
	}
	if j.SubmittedBy != "" {
		row("submitted by", oneLine(j.SubmittedBy))
	}
	if j.IdempotencyKey != "" {
		row("idempotency key", oneLine(j.IdempotencyKey))
	}
	if u := j.Unique; u != nil {
		row("unique", fmt.Sprintf("%s (while: %s, for: %s)", oneLine(u.Key), u.While, durationText(u.For.Std())))
	}
	row("payload", shortJSON(j.Payload))
	if len(j.Result) > 0 {
		row("result", shortJSON(j.Result))
	}
	if j.Artifact != nil {
		row("artifact", artifactText(j))
	}
	return tw.Flush()
}

// writeJobTable writes jobs as a table with one row per job.
func writeJobTable(w io.Writer, js []*jobs.Job) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPT\tDURATION\tERROR")
	for _, j := range js {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			j.ID, j.Type, j.Status, attemptText(j),
			orDash(jobDuration(j)), orDash(errorText(j.Error)))
	}
	return tw.Flush()
}

// attemptText is "attempt/max_attempts", such as "1/3".
func attemptText(j *jobs.Job) string { return fmt.Sprintf("%d/%d", j.Attempt, j.MaxAttempts) }

// errorText is "code: message", or "" for no error.
func errorText(e *jobs.Error) string {
	switch {
	case e == nil:
		return ""
	case e.Code == "":
		return oneLine(e.Message)
	case e.Message == "":
		return e.Code
	}
	return e.Code + ": " + oneLine(e.Message)
}

// jobDuration is how long the last attempt ran, or "" if it has not
// finished.
func jobDuration(j *jobs.Job) string {
	if j.StartedAt == nil || j.FinishedAt == nil {
		return ""
	}
	d := j.FinishedAt.Sub(*j.StartedAt)
	if d == 0 {
		// The store keeps times to the millisecond.
		return "<1ms"
	}
	return durationText(d)
}

// durationText writes d with a precision that suits its size ("1.235ms",
// "2.35s", "5m", "1h30m").
func durationText(d time.Duration) string {
	switch {
	case d < time.Second:
		d = d.Round(time.Microsecond)
	case d < time.Minute:
		d = d.Round(10 * time.Millisecond)
	default:
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// timeText writes t to the millisecond, in the zone the API gave it.
func timeText(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }

// metadataText writes labels as "k=v" pairs sorted by key.
func metadataText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = oneLine(k + "=" + m[k])
	}
	return strings.Join(pairs, ", ")
}

// compactJSON writes a JSON value on one line; text that is not valid JSON
// is shown as it is, on one line.
func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "-"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return oneLine(string(raw))
	}
	return buf.String()
}

// oneLine replaces line breaks and tabs, which would break a table row, with
// spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '\t':
			return ' '
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// attemptLine is one attempt of a job's timeline: number, outcome, when and
// how long, where, and why it failed.
func attemptLine(a jobs.Attempt) string {
	if a.Attempt == 0 && a.EndedAt != nil { // a mark: run again from the first attempt
		return a.Outcome + " " + timeText(*a.EndedAt)
	}
	line := fmt.Sprintf("#%d %s", a.Attempt, a.Outcome)
	if a.StartedAt != nil {
		line += " " + timeText(*a.StartedAt)
		if a.EndedAt != nil {
			line += " (" + durationText(a.EndedAt.Sub(*a.StartedAt)) + ")"
		}
	}
	if a.Worker != "" {
		line += " on " + oneLine(a.Worker)
	}
	if a.Error != nil {
		line += ": " + errorText(a.Error)
	}
	return line
}
