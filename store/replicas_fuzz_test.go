package store_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/store"
)

// A report and a recorded decision read from Redis decode without a panic,
// and what decodes is written back as the same value: the durations' text
// and the policy's names go both ways.
func FuzzDecodeScaling(f *testing.F) {
	for _, seed := range []string{
		`{"current":5,"desired":5,"reason":"backlog 120","at":"2026-11-25T20:57:43.363Z","interval":"15s","from":2,"recommended":12,"backlog":120,"oldest_age":"4.2s",` +
			`"policy":{"min":1,"max":5,"target_backlog":10,"activation_backlog":0,"target_age":"30s","interval":"15s","scale_up_window":"0s","scale_down_window":"-1s","max_step":2}}`,
		`{"at":"2026-11-25T20:57:43.363Z","current":2,"desired":5,"recommended":12,"backlog":120,"oldest_age":"4.2s","reason":"backlog 120"}`,
		`{"interval":15,"oldest_age":1.5,"policy":null}`,
		`{}`, `null`, `[]`, `{"policy":{"interval":"forever"}}`, `{"at":"yesterday"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var r store.Replicas
		if json.Unmarshal([]byte(text), &r) == nil {
			var again store.Replicas
			if b, err := json.Marshal(r); err != nil {
				t.Logf("a report read cannot be written: %v", err) // a time beyond year 9999, say
			} else if err := json.Unmarshal(b, &again); err != nil || !cmp.Equal(r, again) {
				t.Errorf("report %+v written as %s reads back as %+v (%v)", r, b, again, err)
			}
		}
		var d store.ScaleDecision
		if json.Unmarshal([]byte(text), &d) == nil {
			var again store.ScaleDecision
			if b, err := json.Marshal(d); err != nil {
				t.Logf("a decision read cannot be written: %v", err)
			} else if err := json.Unmarshal(b, &again); err != nil || !cmp.Equal(d, again) {
				t.Errorf("decision %+v written as %s reads back as %+v (%v)", d, b, again, err)
			}
		}
	})
}
