package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
)

type scheduleView struct {
	Name     string `json:"name"`
	Every    string `json:"every"`
	Cron     string `json:"cron"`
	Type     string `json:"type"`
	Paused   bool   `json:"paused"`
	PausedBy string `json:"paused_by"`
	Changed  bool   `json:"changed"`
	NextTick string `json:"next_tick"`
	Overlap  string `json:"overlap"`
	CatchUp  bool   `json:"catch_up"`
}

func (r response) schedule(t *testing.T) scheduleView {
	t.Helper()
	var v scheduleView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode schedule from %s: %v", r.body, err)
	}
	return v
}

// What POST /v1/schedules refuses, each with the field at fault, and
// nothing recorded.
func TestScheduleAPIRefusesHostileInput(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{MaxBodyBytes: 64 << 10})
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		field      string
	}{
		{"bad cron", `{"name":"sched-a","cron":"every day","type":"sys.echo"}`, 400, "invalid_field", "cron"},
		{"cron with seconds", `{"name":"sched-a","cron":"* * * * * *","type":"sys.echo"}`, 400, "invalid_field", "cron"},
		{"TZ= alone (panics robfig/cron)", `{"name":"sched-a","cron":"TZ=UTC","type":"sys.echo"}`, 400, "invalid_field", "cron"},
		{"unknown timezone", `{"name":"sched-a","cron":"0 3 * * *","timezone":"Atlantis/Capital","type":"sys.echo"}`, 400, "invalid_field", "timezone"},
		{"every under 1s", `{"name":"sched-a","every":"500ms","type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"every 0", `{"name":"sched-a","every":0,"type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"every negative", `{"name":"sched-a","every":-5,"type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"every not a duration", `{"name":"sched-a","every":"soon","type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"every as an object", `{"name":"sched-a","every":{},"type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"cron and every", `{"name":"sched-a","every":"1m","cron":"0 3 * * *","type":"sys.echo"}`, 400, "invalid_field", "every"},
		{"neither", `{"name":"sched-a","type":"sys.echo"}`, 400, "missing_field", "cron"},
		{"no name", `{"every":"1m","type":"sys.echo"}`, 400, "missing_field", "name"},
		{"name too long", fmt.Sprintf(`{"name":%q,"every":"1m","type":"sys.echo"}`, strings.Repeat("n", 129)), 400, "invalid_field", "name"},
		{"name with a colon", `{"name":"a:b","every":"1m","type":"sys.echo"}`, 400, "invalid_field", "name"},
		{"name with a slash", `{"name":"../x","every":"1m","type":"sys.echo"}`, 400, "invalid_field", "name"},
		{"name with unicode", `{"name":"nächtlich","every":"1m","type":"sys.echo"}`, 400, "invalid_field", "name"},
		{"name not a string", `{"name":7,"every":"1m","type":"sys.echo"}`, 400, "invalid_field", "name"},
		{"unknown type", `{"name":"sched-a","every":"1m","type":"video.transcode"}`, 400, "unknown_type", "type"},
		{"payload against the schema", `{"name":"sched-a","every":"1m","type":"sys.sleep","payload":{"ms":"long"}}`, 400, "invalid_payload", ""},
		{"payload not an object", `{"name":"sched-a","every":"1m","type":"sys.echo","payload":[1]}`, 400, "invalid_field", "payload"},
		{"jitter too long", `{"name":"sched-a","cron":"0 3 * * *","jitter":"2h","type":"sys.echo"}`, 400, "invalid_field", "jitter"},
		{"jitter over every", `{"name":"sched-a","every":"1s","jitter":"1s","type":"sys.echo"}`, 400, "invalid_field", "jitter"},
		{"bad overlap", `{"name":"sched-a","every":"1m","overlap":"queue","type":"sys.echo"}`, 400, "invalid_field", "overlap"},
		{"priority out of range", `{"name":"sched-a","every":"1m","priority":10,"type":"sys.echo"}`, 400, "invalid_field", "priority"},
		{"reserved metadata", `{"name":"sched-a","every":"1m","metadata":{"schedule":"x"},"type":"sys.echo"}`, 400, "invalid_field", "metadata.schedule"},
		{"metadata not strings", `{"name":"sched-a","every":"1m","metadata":{"a":1},"type":"sys.echo"}`, 400, "invalid_field", "metadata.a"},
		{"unknown field", `{"name":"sched-a","every":"1m","type":"sys.echo","interval":"1m"}`, 400, "unknown_field", "interval"},
		{"duplicate member", `{"name":"sched-a","name":"sched-b","every":"1m","type":"sys.echo"}`, 400, "invalid_json", ""},
		{"huge payload", `{"name":"sched-a","every":"1m","type":"sys.echo","payload":{"x":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, "too_large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := doInvalid(t, "POST", f.url+"/v1/schedules", nil, tc.body)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			e := r.apiError(t)
			if e.Code != tc.code || (tc.field != "" && e.Field != tc.field) {
				t.Errorf("error %+v, want code %s field %q", e, tc.code, tc.field)
			}
		})
	}
	if r := do(t, "GET", f.url+"/v1/schedules", nil, ""); r.status != 200 || string(r.body) != "{\"schedules\":[]}\n" {
		t.Errorf("after the refusals: %d %s", r.status, r.body)
	}
}

// Add, list, get, pause, resume, delete; a duplicate name is a conflict.
func TestScheduleAPILifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	body := `{"name":"sched-life","cron":"0 3 * * *","timezone":"Europe/Paris","type":"sys.echo","payload":{"n":1},"catch_up":true}`
	r := do(t, "POST", f.url+"/v1/schedules", nil, body)
	if r.status != 201 || r.header.Get("Location") != "/v1/schedules/sched-life" {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	if v := r.schedule(t); v.Cron != "0 3 * * *" || v.NextTick == "" || v.Overlap != "allow" || !v.CatchUp || v.Paused {
		t.Errorf("added %+v", v)
	}
	if r := do(t, "POST", f.url+"/v1/schedules", nil, body); r.status != 409 || r.apiError(t).Field != "name" {
		t.Errorf("the same name again: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", f.url+"/v1/schedules", nil, `{"name":"sched-every","every":30,"type":"sys.echo","overlap":"skip"}`); r.status != 201 || r.schedule(t).Every != "30s" {
		t.Errorf("every as seconds: %d %s", r.status, r.body)
	}
	var list struct{ Schedules []scheduleView }
	r = do(t, "GET", f.url+"/v1/schedules", nil, "")
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Schedules) != 2 || list.Schedules[0].Name != "sched-every" {
		t.Errorf("list: %s", r.body)
	}
	if r := do(t, "POST", f.url+"/v1/schedules/sched-life/pause", nil, ""); r.status != 200 || !r.schedule(t).Paused || !r.schedule(t).Changed || r.schedule(t).NextTick != "" {
		t.Errorf("pause: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", f.url+"/v1/schedules/sched-life/pause", nil, ""); r.status != 200 || r.schedule(t).Changed {
		t.Errorf("pause again: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", f.url+"/v1/schedules/sched-life/resume", nil, ""); r.status != 200 || r.schedule(t).Paused || !r.schedule(t).Changed {
		t.Errorf("resume: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", f.url+"/v1/schedules/sched-life", nil, ""); r.status != 200 || r.schedule(t).Name != "sched-life" {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/v1/schedules/sched-life", "/v1/schedules/no%3Asuch"} {
		if r := do(t, "GET", f.url+p, nil, ""); r.status != 404 || r.apiError(t).Code != "not_found" {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	if r := do(t, "POST", f.url+"/v1/schedules/sched-life/resume", nil, ""); r.status != 404 {
		t.Errorf("resume of a deleted schedule: %d %s", r.status, r.body)
	}
}

// Reading schedules needs read, changing them admin; a key limited to some
// types sees and touches only theirs.
func TestScheduleAPIScopes(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
		apikey.Key{Name: "sleepy", Scopes: scopes(apikey.Admin), Types: []string{"sys.sleep"}},
	)
	add := `{"name":"sched-keys","every":"1h","type":"sys.echo"}`
	for _, key := range []string{"", "ci", "dash"} {
		want := 403
		if key == "" {
			want = 401
		}
		if r := k.as(t, key, "POST", "/v1/schedules", add); r.status != want {
			t.Errorf("key %q adds: %d, want %d", key, r.status, want)
		}
	}
	if r := k.as(t, "ops", "POST", "/v1/schedules", add); r.status != 201 {
		t.Fatalf("ops adds: %d %s", r.status, r.body)
	}
	if r := k.as(t, "sleepy", "POST", "/v1/schedules", `{"name":"sched-other","every":"1h","type":"sys.echo"}`); r.status != 403 || r.apiError(t).Field != "type" {
		t.Errorf("a key limited to sys.sleep adds sys.echo: %d %s", r.status, r.body)
	}
	if r := k.as(t, "dash", "GET", "/v1/schedules/sched-keys", ""); r.status != 200 {
		t.Errorf("dash reads: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/v1/schedules/sched-keys/pause", "/v1/schedules/sched-keys/resume"} {
		if r := k.as(t, "dash", "POST", p, ""); r.status != 403 {
			t.Errorf("dash POST %s: %d", p, r.status)
		}
	}
	if r := k.as(t, "dash", "DELETE", "/v1/schedules/sched-keys", ""); r.status != 403 {
		t.Errorf("dash deletes: %d", r.status)
	}
	if r := k.as(t, "sleepy", "GET", "/v1/schedules", ""); r.status != 200 || strings.Contains(string(r.body), "sched-keys") {
		t.Errorf("sleepy lists another type's schedule: %d %s", r.status, r.body)
	}
	if r := k.as(t, "sleepy", "DELETE", "/v1/schedules/sched-keys", ""); r.status != 403 {
		t.Errorf("sleepy deletes another type's schedule: %d %s", r.status, r.body)
	}
	r := k.as(t, "ops", "POST", "/v1/schedules/sched-keys/pause", "")
	if r.status != 200 || r.schedule(t).PausedBy != "ops" {
		t.Errorf("ops pauses: %d %s", r.status, r.body)
	}
	if lines := logLines(t, k.logs, "audit"); !strings.Contains(fmt.Sprint(lines), "schedule_pause") || !strings.Contains(fmt.Sprint(lines), "schedule_add") {
		t.Errorf("audit log: %v", lines)
	}
}
