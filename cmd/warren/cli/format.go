package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/goccy/go-yaml"

	"github.com/warrenhq/warren/jobs"
)

// isData reports whether format prints the API's data (json or yaml)
// rather than a view for people (table or wide).
func isData(format string) bool { return format == formatJSON || format == formatYAML }

// writeData writes v as format asks: indented JSON, or YAML with the same
// fields in the same order. YAML is made from the JSON, so that both show
// exactly what the API sends (durations as "30s", times in RFC 3339,
// payloads as objects) and a field is named the same in both.
func writeData(w io.Writer, format string, v any) error {
	if format != formatYAML {
		return writeJSON(w, v)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return fmt.Errorf("encode output as YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// writeJobTableWide writes jobs as writeJobTable does, with more columns:
// when each was created and finished, the worker of its last attempt, and
// its labels.
func writeJobTableWide(w io.Writer, js []*jobs.Job) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPT\tDURATION\tCREATED\tFINISHED\tWORKER\tMETADATA\tERROR")
	for _, j := range js {
		finished := "-"
		if j.FinishedAt != nil {
			finished = timeText(*j.FinishedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			j.ID, j.Type, j.Status, attemptText(j), orDash(jobDuration(j)),
			timeText(j.CreatedAt), finished, orDash(oneLine(j.Worker)), orDash(metadataText(j.Metadata)),
			orDash(errorText(j.Error)))
	}
	return tw.Flush()
}
