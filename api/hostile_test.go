package api_test

// Attacks on the API's input, each against a real server over RabbitMQ and
// Redis: text that is not UTF-8, deep nesting, duplicate keys, missing
// media types, bodies that never finish and more connections than the API
// holds. A refusal is a 4xx JSON error naming the field, and leaves nothing
// recorded or published.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// send sends a request with exactly the headers given.
func send(t *testing.T, method, url string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	resp, b, err := exchange(t, http.DefaultClient, req)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// nest returns n objects, each the value of "a" in the one around it.
func nest(n int, inner string) string {
	return strings.Repeat(`{"a":`, n) + inner + strings.Repeat("}", n)
}

func TestHostileInputIsRefusedAndLeavesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	asJSON := http.Header{"Content-Type": {"application/json"}}
	with := func(kv ...string) http.Header {
		h := asJSON.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	const id = "0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"
	deepPath := "payload" + strings.Repeat(".a", 63) // the 65th level
	tests := []struct {
		name, method, path string
		header             http.Header // nil: Content-Type: application/json
		body               string
		status             int
		code, field        string
	}{
		// Text that is not UTF-8, wherever it is.
		{name: "payload value", body: "{\"type\":\"sys.echo\",\"payload\":{\"name\":\"caf\xe9\"}}", status: 400, code: "invalid_encoding", field: "payload.name"},
		{name: "payload key", body: "{\"type\":\"sys.echo\",\"payload\":{\"k\xff\":1}}", status: 400, code: "invalid_encoding", field: "payload.k\uFFFD"},
		{name: "nested in an array", body: "{\"type\":\"sys.echo\",\"payload\":{\"l\":[\"ok\",{\"x\":\"\xc3\"}]}}", status: 400, code: "invalid_encoding", field: "payload.l[1].x"},
		{name: "idempotency_key", body: "{\"type\":\"sys.echo\",\"idempotency_key\":\"k\xfe\"}", status: 400, code: "invalid_encoding", field: "idempotency_key"},
		{name: "Idempotency-Key header", body: `{"type":"sys.echo"}`, header: with("Idempotency-Key", "k\xff"), status: 400, code: "invalid_encoding", field: "idempotency_key"},
		{name: "metadata value", body: "{\"type\":\"sys.echo\",\"metadata\":{\"team\":\"\xed\xa0\x80\"}}", status: 400, code: "invalid_encoding", field: "metadata.team"},
		{name: "type", body: "{\"type\":\"sys.ech\xf0\"}", status: 400, code: "invalid_encoding", field: "type"},
		{name: "overlong slash", body: "{\"type\":\"sys.echo\",\"payload\":{\"p\":\"..\xc0\xaf..\"}}", status: 400, code: "invalid_encoding", field: "payload.p"},
		{name: "cut short", body: "{\"type\":\"sys.echo\",\"payload\":{\"s\":\"\xe2\x82\"}}", status: 400, code: "invalid_encoding", field: "payload.s"},
		{name: "outside strings", body: "{\"type\":\"sys.echo\",\xff}", status: 400, code: "invalid_encoding"},
		{name: "after the body", body: "{\"type\":\"sys.echo\"}\xff", status: 400, code: "invalid_encoding"},
		{name: "lone high surrogate", body: `{"type":"sys.echo","payload":{"s":"\ud800"}}`, status: 400, code: "invalid_encoding", field: "payload.s"},
		{name: "lone low surrogate", body: `{"type":"sys.echo","payload":{"s":"\udc00"}}`, status: 400, code: "invalid_encoding", field: "payload.s"},
		{name: "surrogate then letter", body: `{"type":"sys.echo","idempotency_key":"\ud800\u0041"}`, status: 400, code: "invalid_encoding", field: "idempotency_key"},
		{name: "traceparent", body: `{"type":"sys.echo"}`, header: with("traceparent", "00-\xff"), status: 400, code: "invalid_encoding", field: "traceparent"},
		{name: "batch entry", path: "/v1/jobs/batch", body: "{\"jobs\":[{\"type\":\"sys.echo\"},{\"type\":\"sys.echo\",\"payload\":{\"s\":\"\xff\"}}]}", status: 400, code: "invalid_encoding", field: "jobs[1].payload.s"},
		{name: "replay", path: "/v1/dead/replay", body: "{\"pool\":\"sys\xff\",\"all\":true}", status: 400, code: "invalid_encoding", field: "pool"},
		{name: "query", method: "GET", path: "/v1/jobs/" + id + "?wait=%ff", status: 400, code: "invalid_encoding", field: "wait"},
		{name: "path", method: "GET", path: "/v1/jobs/%ff%fe", status: 400, code: "invalid_encoding", field: "path"},

		// Nesting.
		{name: "65 deep", body: `{"type":"sys.echo","payload":` + nest(64, "1") + `}`, status: 400, code: "invalid_json", field: deepPath},
		{name: "65 deep in a batch", path: "/v1/jobs/batch", body: `{"jobs":[{"type":"sys.echo"},{"type":"sys.echo","payload":` + nest(64, "1") + `}]}`, status: 400, code: "invalid_json", field: "jobs[1]." + deepPath},
		{name: "100000 brackets", body: strings.Repeat("[", 100000), status: 400, code: "invalid_json", field: strings.Repeat("[0]", 64)},

		// The same key twice, at any depth, however written.
		{name: "type twice", body: `{"type":"sys.echo","type":"sys.sleep"}`, status: 400, code: "invalid_json", field: "type"},
		{name: "escaped twin", body: `{"type":"sys.echo","\u0074ype":"sys.echo"}`, status: 400, code: "invalid_json", field: "type"},
		{name: "case twin", body: `{"type":"sys.echo","TYPE":"sys.sleep"}`, status: 400, code: "unknown_field", field: "TYPE"},
		{name: "case only", body: `{"Type":"sys.echo"}`, status: 400, code: "unknown_field", field: "Type"},
		{name: "in the payload", body: `{"type":"sys.echo","payload":{"amount":1,"to":"a","amount":1000}}`, status: 400, code: "invalid_json", field: "payload.amount"},
		{name: "in metadata", body: `{"type":"sys.echo","metadata":{"team":"a","team":"b"}}`, status: 400, code: "invalid_json", field: "metadata.team"},
		{name: "in backoff", body: `{"type":"sys.echo","backoff":{"base":"1s","base":"1h"}}`, status: 400, code: "invalid_json", field: "backoff.base"},
		{name: "jobs twice", path: "/v1/jobs/batch", body: `{"jobs":[],"jobs":[{"type":"sys.echo"}]}`, status: 400, code: "invalid_json", field: "jobs"},
		{name: "in a batch entry", path: "/v1/jobs/batch", body: `{"jobs":[{"type":"sys.echo","payload":{"x":{"y":1,"y":2}}}]}`, status: 400, code: "invalid_json", field: "jobs[0].payload.x.y"},
		{name: "replay pool twice", path: "/v1/dead/replay", body: `{"pool":"sys","pool":"image","all":true}`, status: 400, code: "invalid_json", field: "pool"},

		// Media types.
		{name: "no Content-Type", header: http.Header{}, body: `{"type":"sys.echo"}`, status: 415, code: "unsupported_media"},
		{name: "no Content-Type, batch", path: "/v1/jobs/batch", header: http.Header{}, body: `{"jobs":[{"type":"sys.echo"}]}`, status: 415, code: "unsupported_media"},
		{name: "no Content-Type, replay", path: "/v1/dead/replay", header: http.Header{}, body: `{"pool":"sys","all":true}`, status: 415, code: "unsupported_media"},
		{name: "form", header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: `{"type":"sys.echo"}`, status: 415, code: "unsupported_media"},
		{name: "latin-1", header: http.Header{"Content-Type": {"application/json; charset=iso-8859-1"}}, body: `{"type":"sys.echo"}`, status: 415, code: "unsupported_media"},
		{name: "garbled", header: http.Header{"Content-Type": {"application/json; charset"}}, body: `{"type":"sys.echo"}`, status: 415, code: "unsupported_media"},

		// Headers given twice.
		{name: "two idempotency keys", body: `{"type":"sys.echo"}`, header: with("Idempotency-Key", "a", "Idempotency-Key", "b"), status: 400, code: "invalid_field", field: "idempotency_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, header := tt.method, tt.path, tt.header
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/v1/jobs"
			}
			if header == nil && method == "POST" {
				header = asJSON
			}
			r := send(t, method, f.url+path, header, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			e := r.apiError(t)
			if e.Code != tt.code || e.Field != tt.field {
				t.Errorf("error code %q field %q, want %q %q (message %q)", e.Code, e.Field, tt.code, tt.field, e.Message)
			}
			if e.Message == "" {
				t.Error("no message")
			}
		})
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("refused requests wrote records: %v", keys)
	}
	if n := f.env.Messages(t, sys.Pool); n != 0 {
		t.Errorf("refused requests published %d messages", n)
	}
}

// What is well formed is accepted as it was sent: text beyond ASCII,
// escaped pairs, U+FFFD itself, nesting up to the limit, JSON media types
// with parameters.
func TestWellFormedInputIsAccepted(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	payloads := []string{
		`{"name":"café 日本 😀","escaped":"\u00e9\ud83d\ude00","replacement":"` + "\uFFFD" + `\ufffd","nul":"a\u0000b"}`,
		`{"same":{"k":1},"other":{"k":1},"K":2,"k":3}`, // one key per object; case matters
		nest(62, `[1]`), // 64 levels with the request's object
	}
	types := []string{"application/json", "application/json; charset=UTF-8", "application/vnd.example+json"}
	for i, p := range payloads {
		h := http.Header{"Content-Type": {types[i%len(types)]}, "Idempotency-Key": {fmt.Sprintf("clé-%d", i)}}
		r := send(t, "POST", f.url+"/v1/jobs", h, `{"type":"sys.echo","payload":`+p+`}`)
		if r.status != http.StatusAccepted {
			t.Fatalf("payload %d: status %d %s, want 202", i, r.status, r.body)
		}
		got := send(t, "GET", f.url+"/v1/jobs/"+r.job(t).ID, nil, "").job(t)
		var want, stored any
		if err := json.Unmarshal([]byte(p), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got.Payload, &stored); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, stored); d != "" || got.IdempotencyKey != fmt.Sprintf("clé-%d", i) {
			t.Errorf("payload %d stored (-sent +stored):\n%s; key %q", i, d, got.IdempotencyKey)
		}
	}
	r := send(t, "POST", f.url+"/v1/jobs/batch", http.Header{"Content-Type": {"application/json"}},
		`{"jobs":[{"type":"sys.echo","payload":`+nest(62, "[1]")+`}]}`)
	var batch struct{ Jobs []struct{ Job *jobs.Job } }
	if err := json.Unmarshal(r.body, &batch); err != nil || r.status != 200 || len(batch.Jobs) != 1 || batch.Jobs[0].Job == nil {
		t.Fatalf("batch of a job 64 deep: %d %s", r.status, r.body)
	}
	// A traceparent that is text but not a trace context is left out, not
	// refused.
	if r := send(t, "POST", f.url+"/v1/jobs", http.Header{"Content-Type": {"application/json"}, "Traceparent": {"not-a-trace"}},
		`{"type":"sys.echo"}`); r.status != http.StatusAccepted {
		t.Errorf("malformed traceparent: %d %s, want 202", r.status, r.body)
	}
	if n := f.env.Messages(t, sys.Pool); n != len(payloads)+2 {
		t.Errorf("%d messages published, want %d", n, len(payloads)+2)
	}
}

// slowBody opens a connection that submits a job whose body never
// finishes: it sends the headers, waits for the server to start reading
// the body (its 100 Continue), and sends the first byte of 64. It returns
// the connection and a reader of what the server sends back.
func slowBody(addr string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	// Bounds every read and write of the attack.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(conn, "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"Content-Length: 64\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	var status string
	if err == nil {
		status, err = br.ReadString('\n')
	}
	if err == nil && !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		err = fmt.Errorf("answered %q, want 100 Continue", status)
	}
	if err == nil {
		_, err = br.ReadString('\n') // the blank line after it
	}
	if err == nil {
		_, err = io.WriteString(conn, "{")
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, br, nil
}

// The attack: 200 connections sending a body a byte every 5 seconds.
// Each is answered 408 and closed once the read timeout passes, before its
// second byte would be due, and the API answers others meanwhile.
func TestSlowBodiesAreCutOff(t *testing.T) {
	t.Parallel()
	const (
		attackers   = 200
		slowHeaders = 20 // connections that never finish their headers
		readTimeout = 2 * time.Second
		byteEvery   = 5 * time.Second
	)
	f := setup(t, api.Config{ReadTimeout: readTimeout})
	addr := strings.TrimPrefix(f.url, "http://")

	type outcome struct {
		status int
		code   string
		closed bool
		held   time.Duration
		err    error
	}
	ready := make(chan error, attackers)
	outcomes := make(chan outcome, attackers+slowHeaders)
	for range attackers {
		go func() {
			conn, br, err := slowBody(addr)
			ready <- err
			if err != nil {
				outcomes <- outcome{err: err}
				return
			}
			defer conn.Close()
			sent := time.Now()
			// The next byte would be due byteEvery after this one.
			_ = conn.SetReadDeadline(sent.Add(byteEvery))
			o := outcome{}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				outcomes <- outcome{err: fmt.Errorf("no answer within %s: %w", byteEvery, err)}
				return
			}
			var e struct{ Error struct{ Code string } }
			b, _ := io.ReadAll(resp.Body)
			_ = json.Unmarshal(b, &e)
			o.status, o.code = resp.StatusCode, e.Error.Code
			// Then the server closes the connection.
			_, err = br.ReadByte()
			o.closed, o.held = errors.Is(err, io.EOF), time.Since(sent)
			outcomes <- o
		}()
	}
	for range slowHeaders {
		go func() {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				outcomes <- outcome{err: err}
				return
			}
			defer conn.Close()
			sent := time.Now()
			_ = conn.SetDeadline(sent.Add(byteEvery))
			_, err = io.WriteString(conn, "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\n")
			if err == nil {
				_, err = conn.Read(make([]byte, 1))
			}
			outcomes <- outcome{closed: errors.Is(err, io.EOF), held: time.Since(sent), err: func() error {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("slow headers: %v", err)
			}()}
		}()
	}
	// Every attacker's body is being read...
	for range attackers {
		if err := <-ready; err != nil {
			t.Fatalf("attacker: %v", err)
		}
	}
	// ... and the API answers others meanwhile.
	const others = 5
	for i := range others {
		r := send(t, "POST", f.url+"/v1/jobs", http.Header{"Content-Type": {"application/json"}}, fmt.Sprintf(`{"type":"sys.echo","payload":{"i":%d}}`, i))
		if r.status != http.StatusAccepted {
			t.Fatalf("submission during the attack: %d %s", r.status, r.body)
		}
	}
	if n := len(outcomes); n > 0 {
		t.Logf("%d attackers were cut off before the other submissions were answered", n)
	}
	var longest time.Duration
	for range attackers + slowHeaders {
		o := <-outcomes // each attacker's reads are bounded, so this ends
		switch {
		case o.err != nil:
			t.Errorf("attacker: %v", o.err)
		case !o.closed:
			t.Errorf("connection answered %d %q but left open", o.status, o.code)
		case o.status != 0 && (o.status != http.StatusRequestTimeout || o.code != "request_timeout"):
			t.Errorf("slow body answered %d %q, want 408 request_timeout", o.status, o.code)
		}
		longest = max(longest, o.held)
	}
	testenv.Summary(t, "attackers=%d slow_headers=%d read_timeout=%s longest_held=%s", attackers, slowHeaders, readTimeout, longest.Round(time.Millisecond))
	if keys := f.env.JobKeys(t); len(keys) != others {
		t.Errorf("%d records, want the %d other submissions'", len(keys), others)
	}
	if n := f.env.Messages(t, sys.Pool); n != others {
		t.Errorf("%d messages, want the %d other submissions'", n, others)
	}
}

// With max_connections held, one more connection waits unanswered; once
// one of them closes, it is served.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	const limit = 8
	// A read timeout far beyond the test: only the cap acts.
	f := setup(t, api.Config{MaxConnections: limit, ReadTimeout: 5 * time.Minute})
	addr := strings.TrimPrefix(f.url, "http://")
	held := make([]net.Conn, 0, limit)
	defer func() { // before the server stops, which waits for them
		for _, c := range held {
			c.Close()
		}
	}()
	for range limit {
		conn, _, err := slowBody(addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	probe := func(timeout time.Duration) (*http.Response, error) {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", f.url+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := exchange(t, c, req)
		return resp, err
	}
	if resp, err := probe(500 * time.Millisecond); err == nil {
		t.Fatalf("a connection over the cap of %d was served: %d", limit, resp.StatusCode)
	}
	held[0].Close()
	resp, err := probe(10 * time.Second)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after one held connection closed: %v", err)
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("unfinished bodies wrote records: %v", keys)
	}
}

func TestNewRefusesBadLimits(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	for _, cfg := range []api.Config{
		{MaxConnections: -1},
		{ReadTimeout: -time.Second},
		{MaxJSONDepth: -1},
		{MaxJSONDepth: api.MaxJSONDepth + 1},
	} {
		if _, err := api.New(cfg, env.Broker, env.Store); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}
