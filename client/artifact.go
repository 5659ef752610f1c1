package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Artifact is a job's output bytes as the API serves them: read Body, then
// close it.
type Artifact struct {
	// ContentType is the bytes' media type, such as "image/png".
	ContentType string
	// Size is how many bytes Body holds; -1 when the API did not say.
	Size int64
	// Body is the bytes.
	Body io.ReadCloser
}

// Artifact opens the output bytes of a job that produced some (its
// Artifact field says so). A job without them, an unknown job, and one
// whose record expired give an error for which IsNotFound reports true.
func (c *Client) Artifact(ctx context.Context, id string) (*Artifact, error) {
	if id == "" {
		return nil, errors.New("artifact: job id is empty")
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/artifact", nil, http.Header{"Accept": {"*/*"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("artifact of job %s: %w", id, err)
	}
	return &Artifact{ContentType: resp.Header.Get("Content-Type"), Size: resp.ContentLength, Body: resp.Body}, nil
}
