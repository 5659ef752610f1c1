package queue_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/queue"
)

func TestNewMessageWithoutTraceParent(t *testing.T) {
	t.Parallel()
	m := message(t, newJob("a.b", 1), "")
	if _, ok := m.Headers[queue.HeaderTraceParent]; ok {
		t.Errorf("headers %v carry a traceparent though none was given", m.Headers)
	}
	if m.Headers[queue.HeaderMaxAttempts] != int32(2) || m.Headers[queue.HeaderTimeoutMS] != int64(3000) {
		t.Errorf("headers = %#v, want max attempts int32(2) and timeout int64(3000)", m.Headers)
	}
}

func TestDecodeJob(t *testing.T) {
	t.Parallel()
	j := newJob("a.b", 2)
	m := message(t, j, "")
	got, err := queue.DecodeJob(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(j, got); diff != "" {
		t.Errorf("DecodeJob(NewMessage(j)) (-j +decoded):\n%s", diff)
	}
	for _, body := range []string{
		``,
		`not json`,
		`[]`,
		`{}`,
		`{"id":"01a21480-02c3-71b4-a283-a008d207c224"}`,
		`{"type":"a.b"}`,
		`{"id":"42","type":"a.b"}`,
		`{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":"a.b","max_attempts":"three"}`,
	} {
		if _, err := queue.DecodeJob([]byte(body)); !errors.Is(err, queue.ErrMalformed) {
			t.Errorf("DecodeJob(%q) = %v, want ErrMalformed", body, err)
		}
	}
}
