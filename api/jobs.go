package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/schedule"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workflow"
)

// jobRequest is the body of POST /v1/jobs and each entry of a batch.
type jobRequest struct {
	Type           string                     `json:"type"`
	Payload        json.RawMessage            `json:"payload"`
	MaxAttempts    json.RawMessage            `json:"max_attempts"`
	Timeout        json.RawMessage            `json:"timeout"`
	Metadata       map[string]json.RawMessage `json:"metadata"`
	Priority       json.RawMessage            `json:"priority"`
	IdempotencyKey string                     `json:"idempotency_key"`
	Delay          json.RawMessage            `json:"delay"`
	RunAt          json.RawMessage            `json:"run_at"`
	Backoff        json.RawMessage            `json:"backoff"`
	Unique         json.RawMessage            `json:"unique"`
	// OnConflict may stand beside unique as well as in it, as the
	// feature's first description wrote it; it means the same.
	OnConflict *string `json:"on_conflict"`
}

// uniqueRequest is a job request's unique member (docs/unique.md).
type uniqueRequest struct {
	Key        string          `json:"key"`
	For        json.RawMessage `json:"for"`
	While      string          `json:"while"`
	OnConflict string          `json:"on_conflict"`
}

type batchRequest struct {
	Jobs []json.RawMessage `json:"jobs"`
}

// readBody reads a JSON request body: it must say it is JSON, arrive within
// the read timeout (the server's ReadTimeout, which cuts the connection's
// reads; the answer is then 408) and stay within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := jsonContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var (
		tooLarge *http.MaxBytesError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &tooLarge):
		return nil, apiErr("too_large", "", "request body is over the limit of %d bytes", s.cfg.MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return nil, apiErr("request_timeout", "", "the request body did not arrive within %s", s.cfg.ReadTimeout)
	case err != nil:
		return nil, apiErr("invalid_json", "", "cannot read request body: %v", err)
	}
	return b, nil
}

// jsonContentType accepts application/json and the +json types, in UTF-8
// (JSON's only encoding), and refuses the rest, no Content-Type included.
func jsonContentType(ct string) error {
	if ct == "" {
		return apiErr("unsupported_media", "", "Content-Type is missing; send the body as JSON, with Content-Type: application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return apiErr("unsupported_media", "", "Content-Type %q is not supported; send application/json", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return apiErr("unsupported_media", "", "charset %q is not supported; JSON is UTF-8", cs)
	}
	return nil
}

// decodeBody checks a whole request body (checkJSON: its encoding,
// nesting and keys) and decodes it strictly into v. depth is the nesting
// checkJSON does not count.
func decodeBody(b []byte, v any, maxDepth, depth int) error {
	checked := checkJSON(b, maxDepth, depth)
	if checked != nil && !errors.Is(checked, errSyntax) {
		return checked
	}
	if err := decodeStrict(b, v, ""); err != nil {
		return err
	}
	if checked != nil {
		// The decoder took what checkJSON did not: never accept that.
		return apiErr("invalid_json", "", "request body is not valid JSON")
	}
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data, and names the field at fault. Field names must match
// exactly: encoding/json would take {"Type": …} as type, and {"type": …,
// "TYPE": …} as one field given twice.
func decodeStrict(b []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		return apiErr("invalid_json", "", "request body holds more than one JSON value")
	}
	if err == nil {
		return exactFields(b, v, prefix)
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return apiErr("invalid_json", "", "request body is empty; send a JSON object")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr("invalid_json", "", "request body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		field := join(prefix, typ.Field)
		if typ.Field == "" {
			return apiErr("invalid_json", prefix, "want a JSON object, got %s", typ.Value)
		}
		return apiErr("invalid_field", field, "%s: want %s, got %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := join(prefix, strings.Trim(name, `"`))
		return apiErr("unknown_field", field, "unknown field %s", field)
	}
	return apiErr("invalid_json", "", "request body is not valid JSON: %v", err)
}

// exactFields refuses a member of the JSON object b whose name matches a
// field of the struct v points to only when case is ignored.
func exactFields(b []byte, v any, prefix string) error {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	names := fieldNames(t.Elem())
	for _, name := range objectKeys(b) {
		if names[name] {
			continue
		}
		field := join(prefix, name)
		for known := range names {
			if strings.EqualFold(known, name) {
				return apiErr("unknown_field", field, "unknown field %s; names are case-sensitive: did you mean %s?", field, join(prefix, known))
			}
		}
		return apiErr("unknown_field", field, "unknown field %s", field)
	}
	return nil
}

// fieldNames returns the JSON names of a struct's fields.
func fieldNames(t reflect.Type) map[string]bool {
	if n, ok := fieldNameCache.Load(t); ok {
		return n.(map[string]bool)
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		names[name] = true
	}
	fieldNameCache.Store(t, names)
	return names
}

var fieldNameCache sync.Map // reflect.Type → map[string]bool

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "float64":
		return "a number"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "true or false"
	}
	return goKind
}

// decoder turns the bodies of POST /v1/jobs and /v1/jobs/batch into jobs:
// it checks the JSON, decodes it strictly and validates each job against
// its declared type. It records and publishes nothing.
type decoder struct {
	maxDepth int // JSON nesting of one job
	maxBatch int
	// buildJob checks a request against its type and builds its job
	// (producer.Producer.Build).
	buildJob func(ctx context.Context, r producer.Request) (*jobs.Job, error)
}

// job decodes the body of POST /v1/jobs; headerKey is its Idempotency-Key
// header.
func (d *decoder) job(ctx context.Context, body []byte, headerKey string) (*jobs.Job, error) {
	var req jobRequest
	if err := decodeBody(body, &req, d.maxDepth, 0); err != nil {
		return nil, err
	}
	return d.build(ctx, req, headerKey)
}

// batchItem is one entry of a batch: its job, or why it was refused.
type batchItem struct {
	job *jobs.Job
	err *Error
}

// batch decodes the body of POST /v1/jobs/batch. An entry that is refused
// does not stop the others; the error is for a body that is unusable as a
// whole, or a failure to look types up (Redis away).
func (d *decoder) batch(ctx context.Context, body []byte) ([]batchItem, error) {
	var req batchRequest
	// The object and its jobs array: each job is nested as if sent alone.
	if err := decodeBody(body, &req, d.maxDepth, 2); err != nil {
		return nil, err
	}
	switch {
	case req.Jobs == nil:
		return nil, apiErr("missing_field", "jobs", "jobs is required: an array of job requests")
	case len(req.Jobs) > d.maxBatch:
		return nil, apiErr("invalid_field", "jobs", "a batch holds at most %d jobs, got %d", d.maxBatch, len(req.Jobs))
	}
	items := make([]batchItem, len(req.Jobs))
	for i, raw := range req.Jobs {
		var jr jobRequest
		err := decodeStrict(raw, &jr, "")
		if err == nil {
			if items[i].job, err = d.build(ctx, jr, ""); err == nil {
				continue
			}
		}
		var ae *Error
		if !errors.As(err, &ae) {
			return nil, err
		}
		items[i].err = ae
	}
	return items, nil
}

// build reads a request's JSON into the producer's Request and has the
// producer check it against its type and build the job. What is JSON's
// (types, text formats, the Idempotency-Key header) is checked here, the
// rest by the producer, for every caller alike.
func (d *decoder) build(ctx context.Context, req jobRequest, headerKey string) (*jobs.Job, error) {
	r := producer.Request{Type: req.Type, Payload: req.Payload}
	if len(req.MaxAttempts) > 0 && string(req.MaxAttempts) != "null" {
		n, ok := wholeNumber(req.MaxAttempts) // 3 and 3.0 alike, as JSON Schema counts
		if !ok || n == 0 {
			// Out of every type's range (0 would mean "the type's" to the
			// producer): its refusal names the type's own bounds.
			n = -1
		}
		r.MaxAttempts = n
	}
	if len(req.Timeout) > 0 && string(req.Timeout) != "null" {
		var t jobs.Duration
		if err := json.Unmarshal(req.Timeout, &t); err != nil {
			return nil, apiErr("invalid_field", "timeout", "timeout: %v", err)
		}
		if t <= 0 {
			t = -1 // refused by the producer, with the type's bounds
		}
		r.Timeout = t.Std()
	}
	r.Priority = decodePriority(req.Priority)
	md, err := decodeMetadata(req.Metadata)
	if err != nil {
		return nil, err
	}
	r.Metadata = md
	r.IdempotencyKey = req.IdempotencyKey
	switch {
	case headerKey != "" && r.IdempotencyKey != "" && headerKey != r.IdempotencyKey:
		return nil, apiErr("invalid_field", "idempotency_key", "idempotency_key and the Idempotency-Key header differ; send one, or the same in both")
	case r.IdempotencyKey == "":
		r.IdempotencyKey = headerKey
	}
	if !utf8.ValidString(r.IdempotencyKey) { // the header's: the body was checked
		return nil, apiErr("invalid_encoding", "idempotency_key", "idempotency_key: the Idempotency-Key header is not UTF-8 text")
	}
	for _, p := range []string{schedule.KeyPrefix, workflow.KeyPrefix} {
		if strings.HasPrefix(r.IdempotencyKey, p) {
			return nil, apiErr("invalid_field", "idempotency_key", "idempotency_key: keys beginning with %q are warren's own (the jobs of schedules and workflows); choose another", p)
		}
	}
	if len(req.Backoff) > 0 && string(req.Backoff) != "null" {
		r.Backoff = new(jobs.Backoff)
		if err := decodeStrict(req.Backoff, r.Backoff, "backoff"); err != nil {
			var ae *Error
			if errors.As(err, &ae) && ae.Code == "invalid_json" {
				return nil, apiErr("invalid_field", "backoff", "backoff: want {\"base\":\"1s\",\"factor\":2,\"max\":\"10m\"} (any of them): %s", ae.Message)
			}
			return nil, err
		}
	}
	if err := requestDelay(req, &r); err != nil {
		return nil, err
	}
	if err := requestUnique(req, &r); err != nil {
		return nil, err
	}
	j, err := d.buildJob(ctx, r)
	var pe *producer.Error
	if errors.As(err, &pe) {
		return nil, apiErr(pe.Code, pe.Field, "%s", pe.Message)
	}
	return j, err
}

// requestDelay reads delay or run_at into r; the producer bounds them.
func requestDelay(req jobRequest, r *producer.Request) error {
	hasDelay := len(req.Delay) > 0 && string(req.Delay) != "null"
	hasRunAt := len(req.RunAt) > 0 && string(req.RunAt) != "null"
	switch {
	case hasDelay && hasRunAt:
		return apiErr("invalid_field", "run_at", "send delay or run_at, not both")
	case hasDelay:
		var d jobs.Duration
		if err := json.Unmarshal(req.Delay, &d); err != nil {
			return apiErr("invalid_field", "delay", "delay: %v", err)
		}
		r.Delay = d.Std()
	case hasRunAt:
		var text string
		if err := json.Unmarshal(req.RunAt, &text); err != nil {
			return apiErr("invalid_field", "run_at", "run_at must be RFC 3339 text, such as \"2030-01-02T15:04:05Z\"")
		}
		at, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return apiErr("invalid_field", "run_at", "run_at %q is not RFC 3339 text, such as \"2030-01-02T15:04:05Z\"", text)
		}
		r.RunAt = at
	}
	return nil
}

// requestUnique reads the unique member into r; the producer checks it.
func requestUnique(req jobRequest, r *producer.Request) error {
	if len(req.Unique) == 0 || string(req.Unique) == "null" {
		if req.OnConflict != nil {
			return apiErr("invalid_field", "on_conflict", "on_conflict goes with unique: it says how a submission that finds the unique key held is answered")
		}
		return nil
	}
	var u uniqueRequest
	if err := decodeStrict(req.Unique, &u, "unique"); err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Code == "invalid_json" {
			return apiErr("invalid_field", "unique", "unique: want {\"key\":\"account-42\",\"for\":\"1h\",\"while\":\"running\"}: %s", ae.Message)
		}
		return err
	}
	if top := req.OnConflict; top != nil {
		switch {
		case !jobs.OnConflict(*top).Valid():
			return apiErr("invalid_field", "on_conflict", "on_conflict must be existing or error, got %q", *top)
		case u.OnConflict != "" && u.OnConflict != *top:
			return apiErr("invalid_field", "on_conflict", "on_conflict %q and unique.on_conflict %q disagree: send one", *top, u.OnConflict)
		}
		u.OnConflict = *top
	}
	r.Unique = &jobs.Unique{Key: u.Key, While: jobs.UniqueWhile(u.While), OnConflict: jobs.OnConflict(u.OnConflict)}
	if len(u.For) > 0 && string(u.For) != "null" {
		var d jobs.Duration
		if err := json.Unmarshal(u.For, &d); err != nil {
			return apiErr("invalid_field", "unique.for", "unique.for: %v", err)
		}
		if d <= 0 {
			d = -1 // refused by the producer, with the bounds
		}
		r.Unique.For = d
	}
	return nil
}

// duplicate is how the API answers a submission whose job was not created
// because an earlier one stands for it (res.Existing): with the earlier job,
// or, when the earlier job holds the unique key for another submitter and
// the caller may not read jobs, with 409 unique_conflict naming it only.
// The second value names the reason for the X-Warren-Duplicate header.
func duplicate(c caller, res producer.Result) (*jobs.Job, string, error) {
	if !res.Unique {
		return res.Job, "idempotency", nil
	}
	if !c.open && !c.key.Allows(apikey.Read) && res.Job.SubmittedBy != c.name() {
		return nil, "", &producer.UniqueConflictError{Holder: res.Job}
	}
	return res.Job, "unique", nil
}

// refusal is how the API answers a job the producer did not accept.
func refusal(j *jobs.Job, err error) error {
	if errors.Is(err, producer.ErrNoRoute) {
		return apiErr("no_route", "type", "no queue is bound for type %s: start a worker of its pool", j.Type)
	}
	return err
}

// submit handles POST /v1/jobs.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	key, traceparent, err := s.submitHeaders(r, true)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	job, err := s.decode.job(r.Context(), body, key)
	c := callerOf(r.Context())
	if err == nil && !c.allowsType(job.Type) {
		err = forbidType(c, "type", job.Type)
	}
	if err == nil {
		err = s.admit(r.Context(), c, 1)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	job.SubmittedBy = c.name()
	res, err := s.producer.Accept(r.Context(), []*jobs.Job{job}, traceparent)
	if err == nil {
		err = refusal(job, res[0].Err)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	shown, status := res[0].Job, http.StatusAccepted
	if res[0].Existing {
		var why string
		if shown, why, err = duplicate(c, res[0]); err != nil {
			writeError(w, toAPIError(s.log, err))
			return
		}
		status = http.StatusOK
		w.Header().Set("X-Warren-Duplicate", why)
	} else {
		s.audit(r, "submit", "jobs", 1, "type", job.Type, "job", job.ID)
	}
	w.Header().Set("Location", "/v1/jobs/"+shown.ID)
	writeJSON(w, status, s.store.Present(r.Context(), shown))
}

// submitHeaders reads the headers of a submission: its Idempotency-Key
// (when withKey; the batch has none) and its traceparent. A traceparent
// that is text but not a W3C trace context is left out, as the W3C asks;
// it would otherwise travel with every job's message.
func (s *Server) submitHeaders(r *http.Request, withKey bool) (key, traceparent string, err error) {
	if withKey {
		if keys := r.Header.Values("Idempotency-Key"); len(keys) > 1 {
			return "", "", apiErr("invalid_field", "idempotency_key", "send one Idempotency-Key header, not %d", len(keys))
		}
		key = r.Header.Get("Idempotency-Key")
	}
	tps := r.Header.Values("traceparent")
	for _, tp := range tps {
		if !utf8.ValidString(tp) {
			return "", "", apiErr("invalid_encoding", "traceparent", "traceparent: the header is not UTF-8 text")
		}
	}
	if len(tps) == 1 && validTraceParent(tps[0]) {
		traceparent = tps[0]
	} else if len(tps) > 0 {
		s.log.Debug("ignoring a malformed traceparent header", "traceparent", truncateText(strings.Join(tps, ", "), 128))
	}
	return key, traceparent, nil
}

// validTraceParent reports whether tp is a W3C trace context: version,
// trace id, parent id and flags in lower-case hex, ids not all zero. A
// version after 00 may carry more fields after a dash.
func validTraceParent(tp string) bool {
	const length = 55 // 00-<32>-<16>-<2>
	if len(tp) < length || len(tp) > 512 || (len(tp) > length && (tp[:2] == "00" || tp[length] != '-')) {
		return false
	}
	hex := func(s string) bool {
		for i := range len(s) {
			if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	version, trace, parent, flags := tp[0:2], tp[3:35], tp[36:52], tp[53:55]
	return tp[2] == '-' && tp[35] == '-' && tp[52] == '-' && version != "ff" &&
		hex(version) && hex(trace) && hex(parent) && hex(flags) &&
		trace != strings.Repeat("0", 32) && parent != strings.Repeat("0", 16)
}

type batchEntry struct {
	Job *jobs.Job `json:"job,omitempty"`
	// Duplicate says why Job is an earlier job: "idempotency" or "unique".
	Duplicate string `json:"duplicate,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// submitBatch handles POST /v1/jobs/batch: every entry is validated on its
// own, and the valid ones are recorded and published together.
func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) {
	_, traceparent, err := s.submitHeaders(r, false)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	items, err := s.decode.batch(r.Context(), body)
	c := callerOf(r.Context())
	if err == nil && len(items) > s.maxBatch(c) {
		err = apiErr("invalid_field", "jobs", "key %s may send at most %d jobs a batch, got %d", c.name(), s.maxBatch(c), len(items))
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	entries := make([]batchEntry, len(items))
	var (
		valid []*jobs.Job
		index []int
	)
	for i, it := range items {
		switch {
		case it.err != nil:
			entries[i].Error = it.err
		case !c.allowsType(it.job.Type):
			entries[i].Error = forbidType(c, "type", it.job.Type)
		default:
			it.job.SubmittedBy = c.name()
			valid, index = append(valid, it.job), append(index, i)
		}
	}
	if err := s.admit(r.Context(), c, len(valid)); err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	res, err := s.producer.Accept(r.Context(), valid, traceparent)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	accepted := map[string]int{}
	for k, a := range res {
		i := index[k]
		if a.Err != nil {
			entries[i].Error = toAPIError(s.log, refusal(valid[k], a.Err))
			continue
		}
		if a.Existing {
			job, why, err := duplicate(c, a)
			if err != nil {
				entries[i].Error = toAPIError(s.log, err)
				continue
			}
			entries[i].Job, entries[i].Duplicate = job, why
			continue
		}
		entries[i].Job = a.Job
		accepted[a.Job.Type]++
	}
	if len(accepted) > 0 {
		n := 0
		for _, k := range accepted {
			n += k
		}
		s.audit(r, "submit", "jobs", n, "types", accepted)
	}
	writeJSON(w, http.StatusOK, struct {
		Jobs []batchEntry `json:"jobs"`
	}{entries})
}

// getJob handles GET /v1/jobs/{id}, with ?wait= for a long-poll until the
// job is terminal.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id")) // UUIDs are case-insensitive
	if !jobs.ValidID(id) {
		writeError(w, apiErr("invalid_id", "id", "%q is not a job id (a UUID such as 0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10)", id))
		return
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			if n, nerr := strconv.ParseFloat(v, 64); nerr == nil {
				d, err = time.Duration(n*float64(time.Second)), nil
			}
		}
		if err != nil || d < 0 {
			writeError(w, apiErr("invalid_field", "wait", "wait must be a duration such as \"30s\" (at most %s)", s.cfg.MaxWait))
			return
		}
		wait = min(d, s.cfg.MaxWait)
	}
	if err := s.checkJobType(r.Context(), id); err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	job, err := s.waitJob(r.Context(), id, wait)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	writeJSON(w, http.StatusOK, s.store.Present(r.Context(), job))
}

// cancelJob handles POST /v1/jobs/{id}/cancel.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathJob(w, r)
	if !ok {
		return
	}
	prev, err := s.store.Cancel(r.Context(), id, s.cfg.Now())
	if errors.Is(err, store.ErrTerminal) {
		writeError(w, apiErr("conflict", "", "job %s already %s; only a job that has not ended can be canceled", id, prev))
		return
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	s.audit(r, "cancel", "job", id, "was", prev)
	job, err := s.store.Get(r.Context(), id)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	writeJSON(w, http.StatusOK, job)
}

// pathJob reads the job id of a request's path and checks that the caller
// may touch the job, or answers why not.
func (s *Server) pathJob(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := strings.ToLower(r.PathValue("id"))
	if !jobs.ValidID(id) {
		writeError(w, apiErr("invalid_id", "id", "%q is not a job id", id))
		return "", false
	}
	if err := s.checkJobType(r.Context(), id); err != nil {
		writeError(w, toAPIError(s.log, err))
		return "", false
	}
	return id, true
}

// checkJobType refuses a caller limited to some job types a job of
// another type. Only such callers pay the read it takes.
func (s *Server) checkJobType(ctx context.Context, id string) error {
	c := callerOf(ctx)
	if !c.limited() {
		return nil
	}
	j, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	return checkType(c, j.Type)
}

// waitJob returns the job once it is terminal or wait has passed. It waits
// on the job's done channel, never by polling Redis.
func (s *Server) waitJob(ctx context.Context, id string, wait time.Duration) (*jobs.Job, error) {
	job, err := s.store.Get(ctx, id)
	if err != nil || job.Status.Terminal() || wait <= 0 {
		return job, err
	}
	waitCtx, stop := context.WithTimeout(ctx, wait)
	defer stop()
	changed, unsubscribe, err := s.notifier.Subscribe(waitCtx, id)
	if err != nil {
		// Not subscribed within the wait (Redis away, say): answer with
		// what the record says now.
		if ctx.Err() != nil {
			return job, nil
		}
		return s.store.Get(ctx, id)
	}
	defer unsubscribe()
	for {
		// Subscribed first, then read: an end after the subscription is
		// announced, an end before it is in the record.
		if job, err = s.store.Get(ctx, id); err != nil || job.Status.Terminal() {
			return job, err
		}
		select {
		case <-changed:
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return job, nil // the client went away
			}
			return s.store.Get(ctx, id)
		}
	}
}

// artifact handles GET /v1/jobs/{id}/artifact: the output bytes of a job
// that produced some, with their media type.
func (s *Server) artifact(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathJob(w, r)
	if !ok {
		return
	}
	a, err := s.store.Artifact(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, apiErr("not_found", "", "job %s has no artifact (unknown job, no output bytes, or expired)", id))
		return
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	ct := cmp.Or(a.ContentType, "application/octet-stream")
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.Data)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A worker chooses the content type, and a browser opening the
	// artifact carries the dashboard's session: whatever it is, it runs
	// nothing (a sandbox without scripts) and, unless it is a picture the
	// dashboard previews, is downloaded rather than shown.
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'")
	if !previewable(ct) {
		w.Header().Set("Content-Disposition", `attachment; filename="`+id+`"`)
	}
	_, _ = w.Write(a.Data)
}

// previewable reports whether an artifact's content type is a raster
// image a browser may show inline (SVG is not: it can carry script).
func previewable(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

// decodePriority reads a request's priority: 0 when absent or null, -1
// (which the producer refuses, naming the range) when not a whole number.
func decodePriority(raw json.RawMessage) int {
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	n, ok := wholeNumber(raw)
	if !ok {
		return -1
	}
	return n
}

// decodeMetadata reads a request's metadata, each value a string; nil
// when there is none.
func decodeMetadata(raw map[string]json.RawMessage) (map[string]string, error) {
	var out map[string]string
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, apiErr("invalid_field", "metadata."+k, "metadata.%s: want a string", k)
		}
		if out == nil {
			out = make(map[string]string, len(raw))
		}
		out[k] = s
	}
	return out, nil
}
