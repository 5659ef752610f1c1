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

	upper := jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
		var p struct{ Text string }
		if err := j.Decode(&p); err != nil {
			return nil, jobs.Permanent(err) // retrying cannot fix bad input
		}
		_ = jobs.ReportProgress(ctx, 50, "shouting")
		return map[string]string{"text": strings.ToUpper(p.Text)}, nil
	})

	// Register with a worker (workers.New(…).Handle) and Start it.
	// readme:end

	res, err := upper.Run(context.Background(), &jobs.Job{Type: Upper.Name, Payload: json.RawMessage(`{"text":"hello"}`)})
	fmt.Println(res, err)
	// Output: map[text:HELLO] <nil>
}
