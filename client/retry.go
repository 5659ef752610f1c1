package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/warrenhq/warren/jobs"
)

// RetryOptions are the optional settings of one Retry.
type RetryOptions struct {
	// IdempotencyKey names the retry: sent again with the same key (its
	// answer lost, say), the API answers the job as it stands and does not
	// run it again. Empty means none: a second retry of a job already
	// queued again gets a 409.
	IdempotencyKey string
}

// Retry runs a failed or canceled job again, from its first attempt, and
// returns it as it stands after, queued. A job that is not failed or
// canceled (one that has not ended, or succeeded) gives an error for which
// IsConflict reports true; an unknown id one for which IsNotFound does.
// opts may be nil.
func (c *Client) Retry(ctx context.Context, id string, opts *RetryOptions) (*jobs.Job, error) {
	if id == "" {
		return nil, errors.New("retry job: job id is empty")
	}
	var header http.Header
	if opts != nil && opts.IdempotencyKey != "" {
		header = http.Header{"Idempotency-Key": {opts.IdempotencyKey}}
	}
	var j jobs.Job
	if _, err := c.doHeader(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/retry", nil, header, nil, &j); err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	return &j, nil
}
