package telemetry_test

import (
	"context"
	"testing"

	"github.com/warrenhq/warren/telemetry"
)

// A message's traceparent header is whatever its publisher wrote: Extract
// takes any text without panicking, and what it accepts comes back as the
// same W3C trace context.
func FuzzExtract(f *testing.F) {
	for _, seed := range []string{
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"\x00\xff-garbage",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tp string) {
		ctx := telemetry.Extract(context.Background(), tp)
		out := telemetry.TraceParent(ctx)
		if out == "" {
			return
		}
		if again := telemetry.TraceParent(telemetry.Extract(context.Background(), out)); again != out {
			t.Errorf("Extract(%q) gave %q, which reads back as %q", tp, out, again)
		}
	})
}
