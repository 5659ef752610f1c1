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

// PutArtifact keeps a job's output bytes, with the records' retention, and
// notes their type and size on the job record; the worker calls it just
// before recording the job succeeded, in one round trip.
func (s *Store) PutArtifact(ctx context.Context, id string, a jobs.Artifact) error {
	if len(a.Data) > s.cfg.MaxArtifactBytes {
		return fmt.Errorf("artifact of job %s: %d bytes: %w (%d)", id, len(a.Data), ErrArtifactTooLarge, s.cfg.MaxArtifactBytes)
	}
	info, err := json.Marshal(jobs.ArtifactInfo{ContentType: a.ContentType, Bytes: len(a.Data)})
	if err != nil {
		return fmt.Errorf("artifact of job %s: %w", id, err)
	}
	key := s.ns.ArtifactKey(id)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "content_type", a.ContentType, "data", a.Data)
		p.PExpire(ctx, key, s.cfg.Retention)
		p.HSet(ctx, s.ns.JobKey(id), fArtifact, info)
		return nil
	})
	if err != nil {
		return unavailable("artifact of job "+id, err)
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
