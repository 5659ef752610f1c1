package api_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
)

type listing struct {
	Jobs       []jobs.Job `json:"jobs"`
	NextCursor string     `json:"next_cursor"`
}

func (r response) listing(t *testing.T) listing {
	t.Helper()
	var l listing
	if r.status != 200 {
		t.Fatalf("listing: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("decode listing %s: %v", r.body, err)
	}
	return l
}

func TestListJobs(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	var ids []string // oldest first
	for i := range 9 {
		body := fmt.Sprintf(`{"type":"sys.echo","payload":{"i":%d},"metadata":{"batch":"b%d"}}`, i, i%3)
		if i%2 == 1 {
			body = fmt.Sprintf(`{"type":"sys.sleep","payload":{"ms":1},"metadata":{"batch":"b%d"}}`, i%3)
		}
		r := do(t, "POST", f.url+"/v1/jobs", nil, body)
		if r.status != 202 {
			t.Fatalf("submit: %d %s", r.status, r.body)
		}
		ids = append(ids, r.job(t).ID)
	}
	// The first job is canceled.
	if r := do(t, "POST", f.url+"/v1/jobs/"+ids[0]+"/cancel", nil, ""); r.status != 200 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	all := func(query string) []string {
		t.Helper()
		var got []string
		cursor := ""
		for range 100 {
			u := f.url + "/v1/jobs?" + query
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			l := do(t, "GET", u, nil, "").listing(t)
			for _, j := range l.Jobs {
				got = append(got, j.ID)
			}
			if cursor = l.NextCursor; cursor == "" {
				return got
			}
		}
		t.Fatal("the listing does not end")
		return nil
	}
	pick := func(keep func(i int) bool) []string {
		var out []string
		for i := len(ids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	for query, keep := range map[string]func(int) bool{
		"limit=2":                            func(int) bool { return true },
		"type=sys.sleep":                     func(i int) bool { return i%2 == 1 },
		"status=canceled":                    func(i int) bool { return i == 0 },
		"status=queued&limit=3":              func(i int) bool { return i > 0 },
		"status=queued&type=sys.echo":        func(i int) bool { return i > 0 && i%2 == 0 },
		"pool=sys&limit=4":                   func(int) bool { return true },
		"meta.batch=b1":                      func(i int) bool { return i%3 == 1 },
		"meta.batch=b0&status=queued":        func(i int) bool { return i%3 == 0 && i > 0 },
		"since=1h":                           func(int) bool { return true },
		"until=2000-01-01T00:00:00Z":         func(int) bool { return false },
		"status=running":                     func(int) bool { return false },
		"meta.batch=b1&meta.other=x":         func(int) bool { return false },
		"pool=nopool":                        func(int) bool { return false },
		"status=queued&type=sys.nosuch.type": func(int) bool { return false },
	} {
		if got, want := all(query), pick(keep); !slices.Equal(got, want) {
			t.Errorf("GET /v1/jobs?%s:\n got %v\nwant %v", query, got, want)
		}
	}
	first := do(t, "GET", f.url+"/v1/jobs?limit=1", nil, "").listing(t)
	if len(first.Jobs) != 1 || first.Jobs[0].ID != ids[8] || first.Jobs[0].Payload == nil || first.Jobs[0].Metadata["batch"] != "b2" {
		t.Errorf("the first page holds %+v, want the newest job whole", first.Jobs)
	}

	// Bad parameters name the field and list nothing.
	for query, field := range map[string]string{
		"status=bogus":                       "status",
		"type=Not+A+Type":                    "type",
		"pool=a:b":                           "pool",
		"limit=0":                            "limit",
		"limit=1001":                         "limit",
		"limit=ten":                          "limit",
		"cursor=garbage":                     "cursor",
		"cursor=" + ids[0]:                   "cursor",
		"since=yesterday":                    "since",
		"since=1h&until=2h":                  "until",
		"stauts=queued":                      "stauts",
		"meta.=x":                            "meta.",
		"status=queued&status=x":             "status",
		"meta.k=" + strings.Repeat("v", 300): "meta.k",
	} {
		r := do(t, "GET", f.url+"/v1/jobs?"+query, nil, "")
		if e := r.apiError(t); r.status != 400 || e.Field != field {
			t.Errorf("GET /v1/jobs?%.40s: %d %+v, want 400 naming %s", query, r.status, e, field)
		}
	}
}

func TestListJobsWithKeys(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "echo-reader", Scopes: scopes(apikey.Read), Types: []string{"sys.echo"}},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
	)
	for _, body := range []string{`{"type":"sys.echo"}`, `{"type":"sys.sleep","payload":{"ms":1}}`} {
		if r := k.as(t, "ci", "POST", "/v1/jobs", body); r.status != 202 {
			t.Fatalf("submit: %d %s", r.status, r.body)
		}
	}
	if r := k.as(t, "", "GET", "/v1/jobs", ""); r.status != 401 {
		t.Errorf("no key: %d", r.status)
	}
	if r := k.as(t, "ci", "GET", "/v1/jobs", ""); r.status != 403 {
		t.Errorf("a submit key lists: %d", r.status)
	}
	if l := k.as(t, "dash", "GET", "/v1/jobs", "").listing(t); len(l.Jobs) != 2 || l.Jobs[0].SubmittedBy != "ci" {
		t.Errorf("dash lists %+v, want both jobs, submitted by ci", l.Jobs)
	}
	l := k.as(t, "echo-reader", "GET", "/v1/jobs", "").listing(t)
	if len(l.Jobs) != 1 || l.Jobs[0].Type != "sys.echo" {
		t.Errorf("a key limited to sys.echo lists %+v", l.Jobs)
	}
}
