package jobstest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
	"github.com/warrenhq/warren/workers/sys"
)

// Upper is the type of the handler under test.
var Upper = jobs.Type{Name: "text.upper", Pool: "text", Timeout: jobs.Duration(10 * time.Second)}

type upperPayload struct {
	Text string `json:"text"`
}

func upper(ctx context.Context, _ *jobs.Job, p upperPayload) (map[string]string, error) {
	_ = jobs.ReportProgress(ctx, 50, "shouting")
	return map[string]string{"text": strings.ToUpper(p.Text)}, nil
}

// A test runs a handler on a payload and reads the job as the worker
// runtime would record it. In a test, pass its t; with
// jobstest.Options{Servers: true} the same job runs on a real worker
// against RabbitMQ and Redis.
func Example() {
	t := &testing.T{} // the test's own, in a test
	ctx := context.Background()

	res := jobstest.Run(ctx, t, Upper, jobs.Typed(upper), `{"text":"hello"}`, nil)
	fmt.Println(res.Job.Status, string(res.Job.Result), res.Progress)

	// A payload the handler cannot decode fails the job for good.
	res = jobstest.Run(ctx, t, Upper, jobs.Typed(upper), `{"text":42}`, nil)
	fmt.Println(res.Job.Status, res.Job.Error.Code, res.Job.Error.Retryable)
	// Output:
	// succeeded {"text":"HELLO"} [{50 shouting}]
	// failed bad_payload false
}

// A service's Register function registers its types with a Registry, which
// then runs them by name: here warren's sys.fail, whose first attempt fails
// (and is retried) and whose second succeeds.
func ExampleRegistry() {
	t := &testing.T{} // the test's own, in a test
	ctx := context.Background()

	var r jobstest.Registry
	if err := sys.Register(&r); err != nil {
		fmt.Println(err)
		return
	}
	res := r.Run(ctx, t, "sys.fail", `{"fail_times":1}`, nil)
	fmt.Println(res.Job.Status, res.Job.Error.Code, res.Job.Error.Retryable)
	res = r.Run(ctx, t, "sys.fail", `{"fail_times":1}`, &jobstest.Options{Attempt: 2})
	fmt.Println(res.Job.Status, string(res.Job.Result))
	// Output:
	// retrying handler true
	// succeeded {"attempts":2}
}
