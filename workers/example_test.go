package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/warrenhq/warren/jobs"
)

// A handler is a type declaration and a function. The README shows the lines
// between the markers; a test checks they stay the same.
func Example_handler() {
	// readme:begin
	var Upper = jobs.Type{
		Name: "text.upper", Pool: "text",
		Schema: json.RawMessage(`{"type":"object","required":["text"],
			"properties":{"text":{"type":"string"}}}`),
	}

	type upperJob struct{ Text string }

	// Typed decodes the payload once; one it cannot decode fails the job for
	// good (code bad_payload), since retrying cannot fix bad input.
	upper := jobs.Typed(func(ctx context.Context, j *jobs.Job, p upperJob) (map[string]string, error) {
		_ = jobs.ReportProgress(ctx, 50, "shouting")
		return map[string]string{"text": strings.ToUpper(p.Text)}, nil
	})

	// Register with a worker (workers.New(…).Handle) and Start it.
	// readme:end

	res, err := upper.Run(context.Background(), &jobs.Job{Type: Upper.Name, Payload: json.RawMessage(`{"text":"hello"}`)})
	fmt.Println(res, err)
	// Output: map[text:HELLO] <nil>
}
