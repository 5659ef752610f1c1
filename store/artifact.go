package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// ErrArtifactTooLarge means output bytes exceed the configured limit.
var ErrArtifactTooLarge = errors.New("artifact over the size limit")

// artifactLua keeps a job's output bytes (KEYS[2]) for the retention
// (ARGV[3] ms) and notes them on the job record (KEYS[1]), only while the
// record exists: a field written to a record that expired or was discarded
// would make a record of its own, which nothing would ever expire. ARGV:
// content type, data, retention ms, artifact info JSON. Returns 1 when it
// kept them.
const artifactLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'content_type', ARGV[1], 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'artifact', ARGV[4])
return 1
`

var artifactScript = redis.NewScript(artifactLua)

// PutArtifact keeps a job's output bytes, with the records' retention, and
// notes their type and size on the job record; the worker calls it just
// before recording the job succeeded, in one round trip. It returns
// ErrNotFound when the job has no record (it expired, or was never
// accepted): the bytes are not kept then.
func (s *Store) PutArtifact(ctx context.Context, id string, a jobs.Artifact) error {
	if len(a.Data) > s.cfg.MaxArtifactBytes {
		return fmt.Errorf("artifact of job %s: %d bytes: %w (%d)", id, len(a.Data), ErrArtifactTooLarge, s.cfg.MaxArtifactBytes)
	}
	info, err := json.Marshal(jobs.ArtifactInfo{ContentType: a.ContentType, Bytes: len(a.Data)})
	if err != nil {
		return fmt.Errorf("artifact of job %s: %w", id, err)
	}
	n, err := artifactScript.Run(ctx, s.rdb, []string{s.ns.JobKey(id), s.ns.ArtifactKey(id)},
		a.ContentType, a.Data, s.cfg.Retention.Milliseconds(), string(info)).Int()
	if err != nil {
		return unavailable("artifact of job "+id, err)
	}
	if n == 0 {
		return fmt.Errorf("artifact of job %s: %w", id, ErrNotFound)
	}
	return nil
}

// Artifact returns a job's output bytes, or ErrNotFound.
func (s *Store) Artifact(ctx context.Context, id string) (jobs.Artifact, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.ArtifactKey(id)).Result()
	if err != nil {
		return jobs.Artifact{}, unavailable("artifact of job "+id, err)
	}
	if len(h) == 0 {
		return jobs.Artifact{}, fmt.Errorf("artifact of job %s: %w", id, ErrNotFound)
	}
	return jobs.Artifact{ContentType: h["content_type"], Data: []byte(h["data"])}, nil
}
