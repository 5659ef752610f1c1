package main

import (
	"context"
	"testing"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
)

func TestUpper(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		payload string
		status  jobs.Status
		result  string
		code    string
	}{
		{"shouts", `{"text":"hello"}`, jobs.StatusSucceeded, `{"text":"HELLO"}`, ""},
		{"empty", `{"text":""}`, jobs.StatusSucceeded, `{"text":""}`, ""},
		{"not text", `{"text":42}`, jobs.StatusFailed, "", jobs.CodeBadPayload},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := jobstest.Run(context.Background(), t, Upper, jobs.Typed(upper), tt.payload, nil)
			if res.Job.Status != tt.status || string(res.Job.Result) != tt.result {
				t.Errorf("got %s %s %+v", res.Job.Status, res.Job.Result, res.Job.Error)
			}
			if e := res.Job.Error; tt.code != "" && (e == nil || e.Code != tt.code || e.Retryable) {
				t.Errorf("error %+v, want %s for good", e, tt.code)
			}
			if tt.status == jobs.StatusSucceeded && (len(res.Progress) != 1 || res.Progress[0].Percent != 50) {
				t.Errorf("progress %v", res.Progress)
			}
		})
	}
}
