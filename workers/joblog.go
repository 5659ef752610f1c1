package workers

import (
	"context"
	"log/slog"

	"github.com/warrenhq/warren/jobs"
)

// jobLogger returns log with the job's id and type on every record. Unlike
// log.With, it formats them only when a record is written: slog's JSON
// handler encodes With's attributes at once, which for a logger made per
// job and mostly never used was a measurable share of a worker's
// allocations (docs/performance.md).
func jobLogger(log *slog.Logger, j *jobs.Job) *slog.Logger {
	return slog.New(jobHandler{inner: log.Handler(), id: j.ID, typ: j.Type})
}

type jobHandler struct {
	inner   slog.Handler
	id, typ string
}

func (h jobHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h jobHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("job", h.id), slog.String("type", h.typ))
	return h.inner.Handle(ctx, r)
}

func (h jobHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return jobHandler{inner: h.inner.WithAttrs(attrs), id: h.id, typ: h.typ}
}

// WithGroup puts the job's attributes outside the group, where log.With
// would have put them.
func (h jobHandler) WithGroup(name string) slog.Handler {
	return slog.New(h.inner).With("job", h.id, "type", h.typ).WithGroup(name).Handler()
}
