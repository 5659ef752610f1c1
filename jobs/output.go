package jobs

// Output is what a handler returns when it produces bytes beside its
// result, such as an image: the runtime stores Result as the job's result
// and Artifact beside it (with the job's retention), and the API serves the
// bytes at GET /v1/jobs/{id}/artifact.
type Output struct {
	// Result is the job's result, marshalled to JSON like any result.
	Result any
	// Artifact is the bytes to keep; nil for none.
	Artifact *Artifact
}

// Artifact is output bytes and their media type.
type Artifact struct {
	// ContentType is the media type served with the bytes, such as
	// "image/jpeg".
	ContentType string
	// Data is the bytes.
	Data []byte
}

// ArtifactInfo describes a job's artifact in the job record; the bytes are
// served at GET /v1/jobs/{id}/artifact.
type ArtifactInfo struct {
	ContentType string `json:"content_type"`
	Bytes       int    `json:"bytes"`
}
