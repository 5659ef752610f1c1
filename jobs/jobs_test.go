package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	type want struct{ Terminal, Valid bool }
	tests := map[jobs.Status]want{
		jobs.StatusScheduled: {Terminal: false, Valid: true},
		jobs.StatusQueued:    {Terminal: false, Valid: true},
		jobs.StatusRunning:   {Terminal: false, Valid: true},
		jobs.StatusRetrying:  {Terminal: false, Valid: true},
		jobs.StatusSucceeded: {Terminal: true, Valid: true},
		jobs.StatusFailed:    {Terminal: true, Valid: true},
		jobs.StatusCanceled:  {Terminal: true, Valid: true},
		"":                   {},
		"done":               {},
		"Succeeded":          {},
		"cancelled":          {},
		" queued":            {},
	}
	for s, w := range tests {
		got := want{Terminal: s.Terminal(), Valid: s.Valid()}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("status %q (-want +got):\n%s", s, diff)
		}
	}
}

func TestStatusStrings(t *testing.T) {
	t.Parallel()
	// The strings are part of the wire protocol (Redis records, API).
	got := []jobs.Status{
		jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying,
		jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled,
	}
	want := []jobs.Status{"scheduled", "queued", "running", "retrying", "succeeded", "failed", "canceled"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status strings (-want +got):\n%s", diff)
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: `"30s"`, want: 30 * time.Second},
		{in: `"1m30s"`, want: 90 * time.Second},
		{in: `"250ms"`, want: 250 * time.Millisecond},
		{in: `"0s"`, want: 0},
		{in: `"24h"`, want: 24 * time.Hour},
		{in: `30`, want: 30 * time.Second},
		{in: `0`, want: 0},
		{in: `1.5`, want: 1500 * time.Millisecond},
		{in: `0.001`, want: time.Millisecond},
		{in: `"30"`, wantErr: true},
		{in: `"soon"`, wantErr: true},
		{in: `""`, wantErr: true},
		{in: `true`, wantErr: true},
		{in: `{}`, wantErr: true},
		{in: `[]`, wantErr: true},
	}
	for _, tt := range tests {
		var d jobs.Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.wantErr {
			t.Errorf("unmarshal %s: err = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && d.Std() != tt.want {
			t.Errorf("unmarshal %s = %s, want %s", tt.in, d.Std(), tt.want)
		}
	}
}

// JSON null leaves a Duration as it was, as encoding/json does for its own
// types and asks of every Unmarshaler; so a type declaration written by
// another language with "timeout": null reads as "no timeout given" (then
// WithDefaults fills it) instead of failing to decode.
func TestDurationJSONNull(t *testing.T) {
	t.Parallel()
	d := jobs.Duration(7 * time.Second)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil {
		t.Errorf("unmarshal null: %v", err)
	}
	if d.Std() != 7*time.Second {
		t.Errorf("unmarshal null changed the duration to %s", d.Std())
	}
	var ty jobs.Type
	if err := json.Unmarshal([]byte(`{"name":"a.b","pool":"a","timeout":null}`), &ty); err != nil {
		t.Errorf("unmarshal of a type with \"timeout\": null: %v", err)
	}
}

func TestDurationRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		text string
	}{
		{0, `"0s"`},
		{30 * time.Second, `"30s"`},
		{90 * time.Second, `"1m30s"`},
		{250 * time.Millisecond, `"250ms"`},
		{10 * time.Minute, `"10m0s"`},
		{24 * time.Hour, `"24h0m0s"`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(jobs.Duration(tt.d))
		if err != nil {
			t.Fatalf("marshal %s: %v", tt.d, err)
		}
		if string(b) != tt.text {
			t.Errorf("marshal %s = %s, want %s", tt.d, b, tt.text)
		}
		var back jobs.Duration
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if back.Std() != tt.d {
			t.Errorf("round trip of %s gave %s", tt.d, back.Std())
		}
	}
}

func TestDurationInStruct(t *testing.T) {
	t.Parallel()
	// A Job's timeout reads from a number of seconds as from text.
	var j jobs.Job
	if err := json.Unmarshal([]byte(`{"id":"x","timeout":45}`), &j); err != nil {
		t.Fatal(err)
	}
	if j.Timeout.Std() != 45*time.Second {
		t.Errorf("timeout = %s, want 45s", j.Timeout.Std())
	}
	if err := json.Unmarshal([]byte(`{"id":"x","timeout":"forever"}`), &j); err == nil {
		t.Error("unmarshal of a bad timeout: no error")
	}
}

func TestValidTypeName(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"image.thumbnail":  true,
		"webhook.deliver":  true,
		"sys.echo":         true,
		"a.b":              true,
		"a.b.c":            true,
		"image-v2.re_size": true,
		"a1.b2":            true,
		"":                 false,
		"image":            false,
		"Image.thumbnail":  false,
		"image.Thumbnail":  false,
		"image..thumbnail": false,
		".image":           false,
		"image.":           false,
		"1image.thumbnail": false,
		"image.1thumbnail": false,
		"image thumbnail":  false,
		"image.thumb nail": false,
		"image/thumbnail":  false,
		"image.*":          false,
		"image.#":          false,
		"a." + strings.Repeat("b", jobs.MaxTypeName-2): true,  // the longest allowed
		"a." + strings.Repeat("b", jobs.MaxTypeName-1): false, // one byte over
		"im\u00e4ge.thumbnail":                         false,
		"image.thumbnail\n":                            false,
		"-image.thumbnail":                             false,
		"_image.thumbnail":                             false,
		"image._thumbnail":                             false,
		"image.thumbnail-":                             true,
		"image.thumbnail_":                             true,
		"image.thumb-nail.v2":                          true,
		"image.thumbnail.":                             false,
		"image.thumbnail..":                            false,
		"image.thumbnail.x.y.z.w":                      true,
	}
	for name, want := range tests {
		if got := jobs.ValidTypeName(name); got != want {
			t.Errorf("ValidTypeName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidPoolName(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"sys":                         true,
		"image":                       true,
		"a":                           true,
		"web-hooks":                   true,
		"web_hooks2":                  true,
		"a" + strings.Repeat("b", 62): true,  // 63
		"a" + strings.Repeat("b", 63): false, // 64
		"":                            false,
		"Image":                       false,
		"1image":                      false,
		"-image":                      false,
		"_image":                      false,
		"image.big":                   false,
		"image big":                   false,
		"image*":                      false,
		"image\n":                     false,
	}
	for name, want := range tests {
		if got := jobs.ValidPoolName(name); got != want {
			t.Errorf("ValidPoolName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestTypeWithDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   jobs.Type
		want jobs.Type
	}{
		{
			name: "zero fields filled",
			in:   jobs.Type{Name: "a.b", Pool: "p"},
			want: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(jobs.DefaultTimeout), MaxAttempts: jobs.DefaultMaxAttempts,
				MaxTimeout: jobs.Duration(jobs.DefaultTimeout), MaxAttemptsLimit: jobs.DefaultMaxAttempts},
		},
		{
			name: "set fields kept",
			in: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Second), MaxAttempts: 7,
				Schema: json.RawMessage(`{"type":"object"}`), Description: "d"},
			want: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Second), MaxAttempts: 7,
				MaxTimeout: jobs.Duration(time.Second), MaxAttemptsLimit: 7,
				Schema: json.RawMessage(`{"type":"object"}`), Description: "d"},
		},
		{
			name: "only timeout set",
			in:   jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Minute)},
			want: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Minute), MaxAttempts: jobs.DefaultMaxAttempts,
				MaxTimeout: jobs.Duration(time.Minute), MaxAttemptsLimit: jobs.DefaultMaxAttempts},
		},
		{
			name: "only max attempts set",
			in:   jobs.Type{Name: "a.b", Pool: "p", MaxAttempts: 1},
			want: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(jobs.DefaultTimeout), MaxAttempts: 1,
				MaxTimeout: jobs.Duration(jobs.DefaultTimeout), MaxAttemptsLimit: 1},
		},
		{
			name: "maxima kept",
			in: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Minute), MaxTimeout: jobs.Duration(time.Hour),
				MaxAttemptsLimit: 20},
			want: jobs.Type{Name: "a.b", Pool: "p", Timeout: jobs.Duration(time.Minute), MaxTimeout: jobs.Duration(time.Hour),
				MaxAttempts: jobs.DefaultMaxAttempts, MaxAttemptsLimit: 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			got := in.WithDefaults()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("WithDefaults (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.in, in); diff != "" {
				t.Errorf("WithDefaults changed its receiver (-before +after):\n%s", diff)
			}
		})
	}
	if jobs.DefaultTimeout != 5*time.Minute || jobs.DefaultMaxAttempts != 3 {
		t.Errorf("defaults = %s, %d; docs say 5m and 3", jobs.DefaultTimeout, jobs.DefaultMaxAttempts)
	}
}

func TestTypeValidate(t *testing.T) {
	t.Parallel()
	ok := jobs.Type{Name: "image.resize", Pool: "image"}
	tests := []struct {
		name    string
		edit    func(*jobs.Type)
		wantErr string // substring; "" means valid
	}{
		{name: "minimal", edit: func(*jobs.Type) {}},
		{name: "full", edit: func(ty *jobs.Type) {
			ty.Schema = json.RawMessage(`{"type":"object"}`)
			ty.Timeout = jobs.Duration(jobs.MaxTimeout)
			ty.MaxAttempts = jobs.MaxMaxAttempts
			ty.Description = "resizes"
		}},
		{name: "bad name", edit: func(ty *jobs.Type) { ty.Name = "Image" }, wantErr: "type name"},
		{name: "empty name", edit: func(ty *jobs.Type) { ty.Name = "" }, wantErr: "type name"},
		{name: "bad pool", edit: func(ty *jobs.Type) { ty.Pool = "Image" }, wantErr: "pool name"},
		{name: "empty pool", edit: func(ty *jobs.Type) { ty.Pool = "" }, wantErr: "pool name"},
		{name: "negative timeout", edit: func(ty *jobs.Type) { ty.Timeout = -1 }, wantErr: "timeout"},
		{name: "timeout too long", edit: func(ty *jobs.Type) { ty.Timeout = jobs.Duration(jobs.MaxTimeout + time.Millisecond) }, wantErr: "timeout"},
		{name: "negative attempts", edit: func(ty *jobs.Type) { ty.MaxAttempts = -1 }, wantErr: "max_attempts"},
		{name: "too many attempts", edit: func(ty *jobs.Type) { ty.MaxAttempts = jobs.MaxMaxAttempts + 1 }, wantErr: "max_attempts"},
		{name: "maxima", edit: func(ty *jobs.Type) {
			ty.MaxTimeout = jobs.Duration(jobs.MaxTimeout)
			ty.MaxAttemptsLimit = jobs.MaxMaxAttempts
		}},
		{name: "max timeout too long", edit: func(ty *jobs.Type) { ty.MaxTimeout = jobs.Duration(jobs.MaxTimeout + time.Millisecond) }, wantErr: "max_timeout"},
		{name: "negative max timeout", edit: func(ty *jobs.Type) { ty.MaxTimeout = -1 }, wantErr: "max_timeout"},
		// Against the default timeout when the type sets none.
		{name: "max timeout under default", edit: func(ty *jobs.Type) { ty.MaxTimeout = jobs.Duration(time.Minute) }, wantErr: "max_timeout 1m0s is under its timeout 5m0s"},
		{name: "max timeout under timeout", edit: func(ty *jobs.Type) {
			ty.Timeout, ty.MaxTimeout = jobs.Duration(time.Hour), jobs.Duration(time.Minute)
		}, wantErr: "max_timeout"},
		{name: "attempts limit too high", edit: func(ty *jobs.Type) { ty.MaxAttemptsLimit = jobs.MaxMaxAttempts + 1 }, wantErr: "max_attempts_limit"},
		{name: "negative attempts limit", edit: func(ty *jobs.Type) { ty.MaxAttemptsLimit = -1 }, wantErr: "max_attempts_limit"},
		{name: "attempts limit under default", edit: func(ty *jobs.Type) { ty.MaxAttemptsLimit = 2 }, wantErr: "max_attempts_limit 2 is under its max_attempts 3"},
		{name: "schema not JSON", edit: func(ty *jobs.Type) { ty.Schema = json.RawMessage(`{"type":`) }, wantErr: "schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ty := ok
			tt.edit(&ty)
			err := ty.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error about %s", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("bad payload")
	perm := jobs.Permanent(base)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"permanent", perm, true},
		{"wrapped once", fmt.Errorf("run: %w", perm), true},
		{"wrapped twice", fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", perm)), true},
		{"joined", errors.Join(io.EOF, perm), true},
		{"coded around permanent", &jobs.CodedError{Code: "x", Err: perm}, true},
		{"retry-after around permanent", jobs.RetryAfter(perm, time.Second), true},
		{"formatted without %w", fmt.Errorf("run: %v", perm), false},
	}
	for _, tt := range tests {
		if got := jobs.IsPermanent(tt.err); got != tt.want {
			t.Errorf("%s: IsPermanent = %v, want %v", tt.name, got, tt.want)
		}
	}
	if jobs.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	if !errors.Is(perm, base) {
		t.Error("Permanent(err) does not unwrap to err")
	}
	if perm.Error() != base.Error() {
		t.Errorf("Permanent(err).Error() = %q, want %q", perm.Error(), base.Error())
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	if jobs.RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil) is not nil")
	}
	base := errors.New("429 too many requests")
	err := fmt.Errorf("deliver: %w", jobs.RetryAfter(base, 42*time.Second))
	var ra *jobs.RetryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("errors.As(%v, *RetryAfterError) = false", err)
	}
	if ra.After != 42*time.Second {
		t.Errorf("After = %s, want 42s", ra.After)
	}
	if !errors.Is(err, base) {
		t.Error("RetryAfter does not unwrap to its error")
	}
	if ra.Error() != base.Error() {
		t.Errorf("Error() = %q, want %q", ra.Error(), base.Error())
	}
	if jobs.IsPermanent(err) {
		t.Error("a RetryAfter error is permanent")
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("boom"), "handler"},
		{"nil", nil, "handler"},
		{"coded", &jobs.CodedError{Code: "bad_gateway", Err: errors.New("502")}, "bad_gateway"},
		{"wrapped coded", fmt.Errorf("deliver: %w", &jobs.CodedError{Code: "refused", Err: errors.New("x")}), "refused"},
		{"coded with empty code", &jobs.CodedError{Err: errors.New("x")}, "handler"},
		{"coded wins over deadline", &jobs.CodedError{Code: "slow_target", Err: context.DeadlineExceeded}, "slow_target"},
		{"empty code falls through to deadline", &jobs.CodedError{Err: context.DeadlineExceeded}, "timeout"},
		{"deadline", context.DeadlineExceeded, "timeout"},
		{"wrapped deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout"},
		{"canceled", context.Canceled, "canceled"},
		{"wrapped canceled", fmt.Errorf("get: %w", context.Canceled), "canceled"},
		{"permanent canceled", jobs.Permanent(context.Canceled), "canceled"},
		{"permanent plain", jobs.Permanent(errors.New("x")), "handler"},
	}
	for _, tt := range tests {
		if got := jobs.ErrorCode(tt.err); got != tt.want {
			t.Errorf("%s: ErrorCode(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
	// A real expired context gives "timeout".
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if got := jobs.ErrorCode(ctx.Err()); got != "timeout" {
		t.Errorf("ErrorCode(expired ctx) = %q, want timeout", got)
	}
	if e := (&jobs.CodedError{Code: "c", Err: io.EOF}); e.Error() != io.EOF.Error() || !errors.Is(e, io.EOF) {
		t.Errorf("CodedError does not show or unwrap its error: %q", e.Error())
	}
}

func TestReportProgress(t *testing.T) {
	t.Parallel()
	type call struct {
		Percent int
		Message string
	}
	var got []call
	ctx := jobs.WithProgress(context.Background(), func(_ context.Context, p int, m string) error {
		got = append(got, call{p, m})
		return nil
	})
	for _, p := range []int{-50, -1, 0, 1, 50, 99, 100, 101, 1000} {
		if err := jobs.ReportProgress(ctx, p, fmt.Sprint("at ", p)); err != nil {
			t.Fatal(err)
		}
	}
	want := []call{
		{0, "at -50"}, {0, "at -1"}, {0, "at 0"}, {1, "at 1"}, {50, "at 50"},
		{99, "at 99"}, {100, "at 100"}, {100, "at 101"}, {100, "at 1000"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("progress calls (-want +got):\n%s", diff)
	}

	// The recorder's error reaches the handler.
	boom := errors.New("store down")
	ctx = jobs.WithProgress(context.Background(), func(context.Context, int, string) error { return boom })
	if err := jobs.ReportProgress(ctx, 5, ""); !errors.Is(err, boom) {
		t.Errorf("ReportProgress = %v, want %v", err, boom)
	}

	// Outside a worker it does nothing.
	if err := jobs.ReportProgress(context.Background(), 50, "x"); err != nil {
		t.Errorf("ReportProgress outside a worker = %v, want nil", err)
	}
}

func TestNamespaceValidate(t *testing.T) {
	t.Parallel()
	tests := map[jobs.Namespace]bool{
		jobs.DefaultNamespace:                   true,
		"W":                                     true,
		"9":                                     true,
		"t-my-test_1":                           true,
		"Prod2":                                 true,
		jobs.Namespace(strings.Repeat("a", 63)): true,
		jobs.Namespace(strings.Repeat("a", 64)): false,
		"":                                      false,
		"-warren":                               false,
		"_warren":                               false,
		"war ren":                               false,
		"war.ren":                               false,
		"war:ren":                               false,
		"war*":                                  false,
		"war/ren":                               false,
		"warren\n":                              false,
	}
	for ns, want := range tests {
		if err := ns.Validate(); (err == nil) != want {
			t.Errorf("Namespace(%q).Validate() = %v, want valid %v", ns, err, want)
		}
	}
}

func TestNamespaceNames(t *testing.T) {
	t.Parallel()
	// These strings are the wire protocol (docs/protocol.md, section 1).
	tests := []struct {
		ns   jobs.Namespace
		want map[string]string
	}{
		{
			ns: jobs.DefaultNamespace,
			want: map[string]string{
				"Exchange":              "warren.jobs",
				"Queue":                 "warren.pool.sys",
				"RoutingKey":            "sys.echo",
				"KeyPrefix":             "warren:",
				"JobKey":                "warren:job:01a21480-02c3-71b4-a283-a008d207c224",
				"TypesKey":              "warren:types",
				"IdempotencyKey":        "warren:idem:shop:order-42",
				"WaitingKey":            "warren:waiting:sys",
				"AutoscaleKey":          "warren:autoscale",
				"AutoscaleDecisionsKey": "warren:autoscale:decisions:sys",
				"EventsChannel":         "warren:events",
				"DoneChannel":           "warren:done:01a21480-02c3-71b4-a283-a008d207c224",
			},
		},
		{
			ns: "t-x_1",
			want: map[string]string{
				"Exchange":              "t-x_1.jobs",
				"Queue":                 "t-x_1.pool.sys",
				"RoutingKey":            "sys.echo",
				"KeyPrefix":             "t-x_1:",
				"JobKey":                "t-x_1:job:01a21480-02c3-71b4-a283-a008d207c224",
				"TypesKey":              "t-x_1:types",
				"IdempotencyKey":        "t-x_1:idem:shop:order-42",
				"WaitingKey":            "t-x_1:waiting:sys",
				"AutoscaleKey":          "t-x_1:autoscale",
				"AutoscaleDecisionsKey": "t-x_1:autoscale:decisions:sys",
				"EventsChannel":         "t-x_1:events",
				"DoneChannel":           "t-x_1:done:01a21480-02c3-71b4-a283-a008d207c224",
			},
		},
	}
	for _, tt := range tests {
		got := map[string]string{
			"Exchange":              tt.ns.Exchange(),
			"Queue":                 tt.ns.Queue("sys"),
			"RoutingKey":            tt.ns.RoutingKey("sys.echo", 0),
			"KeyPrefix":             tt.ns.KeyPrefix(),
			"JobKey":                tt.ns.JobKey("01a21480-02c3-71b4-a283-a008d207c224"),
			"TypesKey":              tt.ns.TypesKey(),
			"IdempotencyKey":        tt.ns.IdempotencyKey("shop", "order-42"),
			"WaitingKey":            tt.ns.WaitingKey("sys"),
			"AutoscaleKey":          tt.ns.AutoscaleKey(),
			"AutoscaleDecisionsKey": tt.ns.AutoscaleDecisionsKey("sys"),
			"EventsChannel":         tt.ns.EventsChannel(),
			"DoneChannel":           tt.ns.DoneChannel("01a21480-02c3-71b4-a283-a008d207c224"),
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("names of namespace %q (-want +got):\n%s", tt.ns, diff)
		}
		// Every Redis key starts with the prefix DeleteNamespace scans for.
		for _, k := range []string{got["JobKey"], got["TypesKey"], got["IdempotencyKey"], got["WaitingKey"], got["AutoscaleKey"], got["AutoscaleDecisionsKey"], got["EventsChannel"], got["DoneChannel"]} {
			if !strings.HasPrefix(k, tt.ns.KeyPrefix()) {
				t.Errorf("%q does not start with the key prefix %q", k, tt.ns.KeyPrefix())
			}
		}
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	const n = 2000
	seen := make(map[string]bool, n)
	prev := ""
	before := time.Now().Add(-time.Millisecond)
	for i := range n {
		id := jobs.NewID()
		if !jobs.ValidID(id) {
			t.Fatalf("NewID() = %q, not a valid id", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q after %d ids", id, i)
		}
		seen[id] = true
		// Version 7, RFC 9562 variant, lower-case canonical text.
		if id[14] != '7' {
			t.Fatalf("NewID() = %q: version nibble %q, want 7", id, id[14])
		}
		if v := id[19]; v != '8' && v != '9' && v != 'a' && v != 'b' {
			t.Fatalf("NewID() = %q: variant nibble %q, want 8, 9, a or b", id, v)
		}
		if id != strings.ToLower(id) {
			t.Fatalf("NewID() = %q is not lower-case", id)
		}
		// Made later, sorts later (as text, which is how Redis and people see it).
		if prev != "" && id <= prev {
			t.Fatalf("NewID() = %q does not sort after the previous id %q", id, prev)
		}
		prev = id
	}
	after := time.Now().Add(time.Millisecond)
	// The leading 48 bits are the creation time in milliseconds.
	var msec int64
	for _, c := range strings.ReplaceAll(prev[:13], "-", "") {
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		default:
			d = int64(c-'a') + 10
		}
		msec = msec<<4 | d
	}
	if ts := time.UnixMilli(msec); ts.Before(before) || ts.After(after) {
		t.Errorf("id %q carries time %s, want between %s and %s", prev, ts, before, after)
	}
}

func TestNewIDSortsAcrossMilliseconds(t *testing.T) {
	t.Parallel()
	// Make ids until the millisecond in the leading bits moves on; every id
	// sorts after the one before, across the change too.
	first := jobs.NewID()
	prev := first
	for i := 0; prev[:13] == first[:13]; i++ {
		if i > 10_000_000 {
			t.Fatal("the time part of ids never changed")
		}
		id := jobs.NewID()
		if id <= prev {
			t.Fatalf("id made later %q does not sort after %q", id, prev)
		}
		prev = id
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"01a21480-02c3-71b4-a283-a008d207c224":          true,
		"00000000-0000-0000-0000-000000000000":          true,
		"":                                              false,
		"01a21480-02c3-71b4-a283-a008d207c22":           false, // 35
		"01a21480-02c3-71b4-a283-a008d207c2245":         false, // 37
		"01a2148002c371b4a283a008d207c224":              false, // no dashes
		"urn:uuid:01a21480-02c3-71b4-a283-a008d207c224": false,
		"{01a21480-02c3-71b4-a283-a008d207c224}":        false,
		"01a21480-02c3-71b4-a283-a008d207c22g":          false,
		"01a21480_02c3_71b4_a283_a008d207c224":          false,
		"../../../../../../../../../etc/passwd":         false,
		"01a21480-02c3-71b4-a283-a008d207c2 4":          false,
	}
	for s, want := range tests {
		if got := jobs.ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestJobDecode(t *testing.T) {
	t.Parallel()
	j := &jobs.Job{ID: "id1", Type: "a.b", Payload: json.RawMessage(`{"n":3}`)}
	var v struct{ N int }
	if err := j.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.N != 3 {
		t.Errorf("decoded n = %d, want 3", v.N)
	}
	j.Payload = json.RawMessage(`{"n":"three"}`)
	err := j.Decode(&v)
	if err == nil || !strings.Contains(err.Error(), "id1") {
		t.Errorf("Decode of a bad payload = %v, want an error naming the job", err)
	}
}

func TestJobJSON(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 25, 20, 57, 43, 363_000_000, time.UTC)
	j := jobs.Job{
		ID: "01a21480-02c3-71b4-a283-a008d207c224", Type: "sys.sleep", Status: jobs.StatusQueued,
		Payload: json.RawMessage(`{"ms":1500}`), MaxAttempts: 3, Timeout: jobs.Duration(10 * time.Minute),
		Metadata: map[string]string{"team": "docs"}, CreatedAt: created,
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"01a21480-02c3-71b4-a283-a008d207c224","type":"sys.sleep","status":"queued","payload":{"ms":1500},"attempt":0,"max_attempts":3,"timeout":"10m0s","metadata":{"team":"docs"},"created_at":"2026-11-25T20:57:43.363Z"}`
	if string(b) != want {
		t.Errorf("job JSON\n got %s\nwant %s", b, want)
	}
	var back jobs.Job
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(j, back); diff != "" {
		t.Errorf("job JSON round trip (-want +got):\n%s", diff)
	}
}

func TestHandlerFunc(t *testing.T) {
	t.Parallel()
	var h jobs.Handler = jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) {
		return "ran " + j.ID, nil
	})
	res, err := h.Run(context.Background(), &jobs.Job{ID: "x"})
	if err != nil || res != "ran x" {
		t.Errorf("Run = %v, %v; want ran x, nil", res, err)
	}
}

// Two processes of one container (the same host, both PID 1 in turn) never
// share an id: a worker that took its dead predecessor's id would keep that
// predecessor's lease alive.
func TestNewProcessIDIsUnique(t *testing.T) {
	t.Parallel()
	a, b := jobs.NewProcessID(), jobs.NewProcessID()
	if a == b {
		t.Errorf("NewProcessID twice = %q", a)
	}
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s-%d-", host, os.Getpid()); !strings.HasPrefix(a, want) || len(a) != len(want)+8 {
		t.Errorf("NewProcessID() = %q, want %s and 8 hex digits", a, want)
	}
}

// A delayed message enters the levels at the highest level whose bit of
// its delay is set: every level above would only pass it down.
func TestDelayEntry(t *testing.T) {
	t.Parallel()
	ns := jobs.Namespace("w")
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "w.delay.0"},
		{40 * time.Millisecond, "w.delay.0"},
		{100 * time.Millisecond, "w.delay.0"},  // 1 unit
		{1300 * time.Millisecond, "w.delay.3"}, // 13 units: 1101
		{1600 * time.Millisecond, "w.delay.4"}, // 16 units: 10000
		{jobs.MaxDelay, "w.delay.31"},
		{jobs.MaxDelay * 2, "w.delay.31"},
	} {
		if got := ns.DelayEntry(tt.d); got != tt.want {
			t.Errorf("DelayEntry(%s) = %s, want %s", tt.d, got, tt.want)
		}
		// The key's bits above the entry level are all 0: nothing above
		// it would have held the message.
		key := ns.DelayRoutingKey(tt.d, "a.b")
		level, _ := strconv.Atoi(strings.TrimPrefix(tt.want, "w.delay."))
		if above := key[:2*(jobs.DelayLevels-1-level)]; strings.Contains(above, "1") {
			t.Errorf("DelayRoutingKey(%s) = %s has a bit set above its entry level %d", tt.d, key, level)
		}
	}
}
