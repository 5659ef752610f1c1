package workers

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/warrenhq/warren/jobs"
)

func TestJobLoggerAddsTheJob(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("pool", "p")
	log := jobLogger(base, &jobs.Job{ID: "j1", Type: "t.x"})
	log.Debug("not written")
	log.With("attempt", 2).Info("written", "code", "c")
	log.WithGroup("g").Info("grouped", "k", "v")
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines written, want 2 (debug is off): %s", len(lines), buf.String())
	}
	first := lines[0]
	for k, want := range map[string]any{"msg": "written", "pool": "p", "attempt": 2.0, "code": "c", "job": "j1", "type": "t.x"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v (line %v)", k, first[k], want, first)
		}
	}
	second := lines[1]
	if second["job"] != "j1" || second["type"] != "t.x" {
		t.Errorf("grouped line lacks the job at the top level: %v", second)
	}
	if g, ok := second["g"].(map[string]any); !ok || g["k"] != "v" {
		t.Errorf("grouped line: %v", second)
	}
}
