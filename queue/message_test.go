package queue_test

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

func TestNewMessageWithoutTraceParent(t *testing.T) {
	t.Parallel()
	m := message(t, newJob("a.b", 1), "")
	if _, ok := queue.WireHeaders(m)["traceparent"]; ok {
		t.Errorf("headers %v carry a traceparent though none was given", queue.WireHeaders(m))
	}
	if queue.WireHeaders(m)["x-warren-max-attempts"] != int32(2) || queue.WireHeaders(m)["x-warren-timeout-ms"] != int64(3000) {
		t.Errorf("headers = %#v, want max attempts int32(2) and timeout int64(3000)", queue.WireHeaders(m))
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

// A body with bytes that are not UTF-8 is malformed, not decoded with
// replacement characters: the job would run on input nobody sent.
func TestDecodeJobRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":"a.b","payload":{"s":"caf` + "\xe9" + `"}}`)
	if _, err := queue.DecodeJob(body); !errors.Is(err, queue.ErrMalformed) {
		t.Errorf("DecodeJob of invalid UTF-8 = %v, want ErrMalformed", err)
	}
}

// FuzzDecodeJob: whatever a foreign producer sends, decoding never panics,
// and what it accepts is a job a worker can run and publish again.
func FuzzDecodeJob(f *testing.F) {
	for _, seed := range []string{
		`{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":"sys.echo","payload":{"a":1},"max_attempts":3,"timeout_ms":1000,"created_at":"2026-11-25T20:57:43.363Z"}`,
		`{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":"a.b","metadata":{"k":"v"},"backoff":{"base":"1s"}}`,
		`{"id":"not-an-id","type":"a.b"}`,
		`{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":["a.b"]}`,
		`[[[[[[[[[[[[[[[[[[[[`,
		"{\"id\":\"01a21480-02c3-71b4-a283-a008d207c224\",\"type\":\"a.b\",\"payload\":\"\xff\"}",
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		j, err := queue.DecodeJob(body)
		if err != nil {
			if !errors.Is(err, queue.ErrMalformed) {
				t.Fatalf("DecodeJob error %v is not ErrMalformed", err)
			}
			return
		}
		if !utf8.Valid(body) || !jobs.ValidID(j.ID) || j.Type == "" {
			t.Fatalf("DecodeJob accepted %q as %+v", body, j)
		}
		m, err := queue.NewMessage(j, "")
		if err != nil {
			return // a payload JSON cannot re-encode is for the worker to fail
		}
		again, err := queue.DecodeJob(m.Body)
		if err != nil || again.ID != j.ID || again.Type != j.Type {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", j, again, err)
		}
	})
}
