// Package apicheck checks HTTP exchanges with warren's API against its
// OpenAPI 3.1 document (api/openapi.json), so that the tests of the API and
// of its Go client fail when the server, the client or the document drifts
// from the others.
//
// An exchange is matched to an operation by method and path template; its
// response must be one the operation documents for its status, of a
// documented media type, with a body that satisfies the documented schema
// and the documented headers; and, when the server accepted the request
// (2xx), the request's parameters and body must satisfy the operation's.
// Refused requests are not checked: tests send malformed ones on purpose.
//
// Schemas are JSON Schema 2020-12, as OpenAPI 3.1 has them, checked by
// github.com/santhosh-tekuri/jsonschema/v6 with formats asserted (uuid,
// date-time). Two conventions of the document are read too:
//
//   - x-other-requests: what a request that matches no operation gets (a
//     documented path with another method: 405 with an Allow header listing
//     the path's methods; any other path: 404), and the pages outside the
//     API (the dashboard's) that the document does not describe.
//   - A query parameter named PREFIX.KEY stands for every parameter whose
//     name starts with PREFIX. (meta.KEY of GET /v1/jobs).
package apicheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL is where the document's schemas are compiled from; nothing is
// fetched from it.
const docURL = "warren:///openapi.json"

// methods are the HTTP methods a path item may hold, as OpenAPI names them.
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Document is a compiled OpenAPI document.
type Document struct {
	paths []*pathItem // more literal segments first
	other otherRequests
}

type pathItem struct {
	template string
	segs     []string // a parameter as "{name}"
	literals int
	ops      map[string]*operation // by upper-case method
}

type operation struct {
	name      string // operationId, else METHOD template
	method    string
	template  string
	params    []*parameter
	body      *requestBody // nil: the operation takes none
	responses map[string]*response
}

type parameter struct {
	name, in string
	prefix   bool // name PREFIX.KEY: every name starting with PREFIX.
	required bool
	typ      string // the schema's type, to read the text as
	schema   *jsonschema.Schema
}

type requestBody struct {
	required bool
	content  map[string]*jsonschema.Schema // by media type; nil: not JSON
}

type response struct {
	where   string // JSON pointer of the response object, for messages
	content map[string]*jsonschema.Schema
	headers map[string]*parameter // by canonical name
}

type otherRequests struct {
	pages     []string // a path, or a prefix when it ends in *
	responses map[string]*response
}

// Load compiles an OpenAPI 3.1 document given as JSON.
func Load(raw []byte) (*Document, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no files, no network
	if err := c.AddResource(docURL, inst); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	l := &loader{doc: doc, c: c}
	d := &Document{}
	paths, _ := doc["paths"].(map[string]any)
	for template, v := range paths {
		item, _ := v.(map[string]any)
		p := &pathItem{template: template, segs: strings.Split(strings.TrimPrefix(template, "/"), "/"), ops: map[string]*operation{}}
		for _, s := range p.segs {
			if !isParam(s) {
				p.literals++
			}
		}
		for _, m := range methods {
			raw, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			ptr := "/paths/" + escape(template) + "/" + m
			op, err := l.operation(ptr, strings.ToUpper(m), template, item, raw)
			if err != nil {
				return nil, err
			}
			p.ops[op.method] = op
		}
		d.paths = append(d.paths, p)
	}
	sort.Slice(d.paths, func(i, j int) bool {
		if a, b := d.paths[i], d.paths[j]; a.literals != b.literals {
			return a.literals > b.literals
		}
		return d.paths[i].template < d.paths[j].template
	})
	if o, ok := doc["x-other-requests"].(map[string]any); ok {
		for _, p := range o["pages"].([]any) {
			d.other.pages = append(d.other.pages, p.(string))
		}
		rs, _ := o["responses"].(map[string]any)
		if d.other.responses, err = l.responses("/x-other-requests/responses", rs); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// loader compiles the parts of one document.
type loader struct {
	doc map[string]any
	c   *jsonschema.Compiler
}

// resolve follows a local $ref, returning the object and its pointer.
func (l *loader) resolve(ptr string, v any) (map[string]any, string, error) {
	for range 10 {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, ptr, fmt.Errorf("openapi: %s is not an object", ptr)
		}
		ref, ok := obj["$ref"].(string)
		if !ok {
			return obj, ptr, nil
		}
		target, ok := strings.CutPrefix(ref, "#")
		if !ok {
			return nil, ptr, fmt.Errorf("openapi: %s: $ref %q is not local", ptr, ref)
		}
		ptr, v = target, lookup(l.doc, target)
		if v == nil {
			return nil, ptr, fmt.Errorf("openapi: $ref %q leads nowhere", ref)
		}
	}
	return nil, ptr, fmt.Errorf("openapi: %s: $ref chain too long", ptr)
}

func (l *loader) schema(ptr string) (*jsonschema.Schema, error) {
	s, err := l.c.Compile(docURL + "#" + ptr)
	if err != nil {
		return nil, fmt.Errorf("openapi: compile the schema at %s: %w", ptr, err)
	}
	return s, nil
}

func (l *loader) operation(ptr, method, template string, item, raw map[string]any) (*operation, error) {
	op := &operation{method: method, template: template, responses: map[string]*response{}}
	op.name, _ = raw["operationId"].(string)
	if op.name == "" {
		op.name = method + " " + template
	}
	// Path-level parameters first; the operation's replace those of the
	// same name and location.
	byKey := map[string]*parameter{}
	var order []string
	for _, src := range []struct {
		ptr string
		v   any
	}{{"/paths/" + escape(template) + "/parameters", item["parameters"]}, {ptr + "/parameters", raw["parameters"]}} {
		list, _ := src.v.([]any)
		for i, pv := range list {
			p, err := l.parameter(fmt.Sprintf("%s/%d", src.ptr, i), pv)
			if err != nil {
				return nil, err
			}
			k := p.in + " " + p.name
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = p
		}
	}
	for _, k := range order {
		op.params = append(op.params, byKey[k])
	}
	if rb, ok := raw["requestBody"]; ok {
		obj, rptr, err := l.resolve(ptr+"/requestBody", rb)
		if err != nil {
			return nil, err
		}
		op.body = &requestBody{}
		op.body.required, _ = obj["required"].(bool)
		if op.body.content, err = l.content(rptr+"/content", obj["content"]); err != nil {
			return nil, err
		}
	}
	rs, _ := raw["responses"].(map[string]any)
	var err error
	op.responses, err = l.responses(ptr+"/responses", rs)
	return op, err
}

func (l *loader) responses(ptr string, rs map[string]any) (map[string]*response, error) {
	out := map[string]*response{}
	for status, rv := range rs {
		obj, rptr, err := l.resolve(ptr+"/"+escape(status), rv)
		if err != nil {
			return nil, err
		}
		r := &response{where: rptr, headers: map[string]*parameter{}}
		if r.content, err = l.content(rptr+"/content", obj["content"]); err != nil {
			return nil, err
		}
		hs, _ := obj["headers"].(map[string]any)
		for name, hv := range hs {
			h, err := l.parameter(rptr+"/headers/"+escape(name), hv)
			if err != nil {
				return nil, err
			}
			h.name, h.in = name, "header"
			r.headers[http.CanonicalHeaderKey(name)] = h
		}
		out[strings.ToUpper(status)] = r
	}
	return out, nil
}

// content compiles the schemas of a content map: those of JSON media types.
func (l *loader) content(ptr string, v any) (map[string]*jsonschema.Schema, error) {
	m, _ := v.(map[string]any)
	out := make(map[string]*jsonschema.Schema, len(m))
	for mt, mv := range m {
		out[mt] = nil
		media, _ := mv.(map[string]any)
		if _, ok := media["schema"]; !ok || !isJSON(mt) {
			continue
		}
		s, err := l.schema(ptr + "/" + escape(mt) + "/schema")
		if err != nil {
			return nil, err
		}
		out[mt] = s
	}
	return out, nil
}

func (l *loader) parameter(ptr string, v any) (*parameter, error) {
	obj, pptr, err := l.resolve(ptr, v)
	if err != nil {
		return nil, err
	}
	p := &parameter{}
	p.name, _ = obj["name"].(string)
	p.in, _ = obj["in"].(string)
	p.required, _ = obj["required"].(bool)
	if before, ok := strings.CutSuffix(p.name, ".KEY"); ok && p.in == "query" {
		p.name, p.prefix = before+".", true
	}
	if sv, ok := obj["schema"]; ok {
		sobj, _, err := l.resolve(pptr+"/schema", sv)
		if err != nil {
			return nil, err
		}
		p.typ, _ = sobj["type"].(string)
		if p.schema, err = l.schema(pptr + "/schema"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Exchange is one request and the response it got.
type Exchange struct {
	Method         string
	URL            *url.URL // the path and query are used
	RequestHeader  http.Header
	RequestBody    []byte
	Status         int
	ResponseHeader http.Header
	ResponseBody   []byte
	// ResponseOnly leaves the request unchecked: it breaks the document on
	// purpose, and the server takes it all the same (a batch whose bad
	// entries are refused one by one, in a 200).
	ResponseOnly bool
}

// Check reports how an exchange departs from the document: an error naming
// the operation, the status and each mismatch, or nil.
func (d *Document) Check(x Exchange) error {
	method := strings.ToUpper(x.Method)
	op, params, allowed, matched := d.find(method, x.URL.EscapedPath())
	what := fmt.Sprintf("%s %s answered %d", method, x.URL.Path, x.Status)
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case op != nil:
		what = fmt.Sprintf("%s %s (operation %s, %s %s) answered %d", method, x.URL.Path, op.name, op.method, op.template, x.Status)
		r := pick(op.responses, x.Status)
		if r == nil {
			add("status %d is not documented for this operation", x.Status)
		} else {
			errs = append(errs, checkResponse(r, method, x)...)
		}
		if x.Status >= 200 && x.Status < 300 && !x.ResponseOnly {
			errs = append(errs, checkRequest(op, params, x)...)
		}
	case !matched && d.isPage(x.URL.Path):
		return nil // the dashboard's pages: not API
	default:
		r := pick(d.other.responses, x.Status)
		switch {
		case r == nil && matched:
			add("%s is not documented for this path (it has %s), and x-other-requests documents no %d", method, strings.Join(allowed, ", "), x.Status)
		case r == nil:
			add("no documented path matches, and x-other-requests documents no %d", x.Status)
		default:
			errs = append(errs, checkResponse(r, method, x)...)
		}
		switch {
		case x.Status == http.StatusMethodNotAllowed && !matched:
			add("405 for a path the document does not have; want 404")
		case x.Status == http.StatusNotFound && matched:
			add("404 for a documented path (it has %s); want 405", strings.Join(allowed, ", "))
		case x.Status == http.StatusMethodNotAllowed:
			got := splitList(x.ResponseHeader.Get("Allow"))
			slices.Sort(got)
			if want := slices.Sorted(slices.Values(allowed)); !slices.Equal(got, want) {
				add("Allow header %q, want the documented methods of the path: %s", x.ResponseHeader.Get("Allow"), strings.Join(allowed, ", "))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("openapi: %s: %w", what, errors.Join(errs...))
}

// CheckRequest reports how a request departs from the document, as Check
// does for a request the server accepted: an error naming the operation and
// each mismatch, or nil. A request no operation takes is an error.
func (d *Document) CheckRequest(method string, u *url.URL, header http.Header, body []byte) error {
	method = strings.ToUpper(method)
	op, params, _, _ := d.find(method, u.EscapedPath())
	if op == nil {
		return fmt.Errorf("openapi: %s %s: no operation of the document takes it", method, u.Path)
	}
	errs := checkRequest(op, params, Exchange{Method: method, URL: u, RequestHeader: header, RequestBody: body})
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("openapi: %s %s (operation %s): %w", method, u.Path, op.name, errors.Join(errs...))
}

// find returns the operation for a method and an escaped path, with the
// path's parameters. Of the templates that match the path, the one with
// the most literal segments that has the method wins, as in net/http's
// ServeMux. Without one, allowed lists the methods of every matching
// template, and matched says whether any matched.
func (d *Document) find(method, escaped string) (op *operation, params map[string]string, allowed []string, matched bool) {
	segs := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	seen := map[string]bool{}
	for _, p := range d.paths {
		ps, ok := p.match(segs)
		if !ok {
			continue
		}
		matched = true
		if o := p.ops[method]; o != nil {
			return o, ps, nil, true
		}
		for m := range p.ops {
			if !seen[m] {
				seen[m] = true
				allowed = append(allowed, m)
			}
		}
	}
	slices.Sort(allowed)
	return nil, nil, allowed, matched
}

func (p *pathItem) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(p.segs) {
		return nil, false
	}
	var params map[string]string
	for i, s := range p.segs {
		if !isParam(s) {
			if segs[i] != s {
				return nil, false
			}
			continue
		}
		v, err := url.PathUnescape(segs[i])
		if err != nil || v == "" {
			return nil, false
		}
		if params == nil {
			params = map[string]string{}
		}
		params[s[1:len(s)-1]] = v
	}
	return params, true
}

func (d *Document) isPage(path string) bool {
	for _, p := range d.other.pages {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(path, prefix) || path == p {
			return true
		}
	}
	return false
}

// pick returns the response documented for a status: its own, its range's
// (4XX) or the default.
func pick(rs map[string]*response, status int) *response {
	s := strconv.Itoa(status)
	for _, k := range []string{s, s[:1] + "XX", "DEFAULT"} {
		if r, ok := rs[k]; ok {
			return r
		}
	}
	return nil
}

func checkResponse(r *response, method string, x Exchange) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	ct := x.ResponseHeader.Get("Content-Type")
	head := method == http.MethodHead
	switch {
	case len(r.content) == 0:
		if len(x.ResponseBody) > 0 || (ct != "" && !head) {
			add("%s documents no body, got %d bytes of %q", r.where, len(x.ResponseBody), ct)
		}
	case ct == "":
		add("no Content-Type; %s documents %s", r.where, strings.Join(slices.Sorted(maps.Keys(r.content)), ", "))
	default:
		key, ok := matchMedia(r.content, ct)
		if !ok {
			add("Content-Type %q; %s documents %s", ct, r.where, strings.Join(slices.Sorted(maps.Keys(r.content)), ", "))
			break
		}
		if s := r.content[key]; s != nil && !head {
			if err := validateJSON(s, x.ResponseBody); err != nil {
				add("response body does not match %s (%s): %w", r.where, key, err)
			}
		}
	}
	for name, h := range r.headers {
		if name == "Content-Type" {
			continue
		}
		vs := x.ResponseHeader.Values(name)
		switch {
		case len(vs) == 0 && h.required:
			add("header %s is required by %s and missing", name, r.where)
		case len(vs) > 0:
			if err := h.check(vs[0]); err != nil {
				add("header %s: %w", name, err)
			}
		}
	}
	return errs
}

func checkRequest(op *operation, params map[string]string, x Exchange) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	query := x.URL.Query()
	known := map[string]bool{}
	for _, p := range op.params {
		var (
			vs      []string
			present bool
		)
		switch p.in {
		case "path":
			v, ok := params[p.name]
			vs, present = []string{v}, ok
		case "header":
			vs = x.RequestHeader.Values(p.name)
			present = len(vs) > 0
		case "query":
			if p.prefix {
				for k, v := range query {
					if strings.HasPrefix(k, p.name) {
						known[k] = true
						if err := p.check(v[0]); err != nil {
							add("query parameter %s: %w", k, err)
						}
					}
				}
				continue
			}
			known[p.name] = true
			vs, present = query[p.name], query.Has(p.name)
		default:
			continue
		}
		switch {
		case !present && p.required:
			add("the request lacks the required %s parameter %s", p.in, p.name)
		case present:
			for _, v := range vs {
				if err := p.check(v); err != nil {
					add("%s parameter %s: %w", p.in, p.name, err)
				}
			}
		}
	}
	for k := range query {
		if !known[k] {
			add("query parameter %s is not documented", k)
		}
	}
	ct := x.RequestHeader.Get("Content-Type")
	switch {
	case op.body == nil:
		if len(x.RequestBody) > 0 {
			add("the operation documents no request body, and %d bytes of %q were sent", len(x.RequestBody), ct)
		}
	case len(x.RequestBody) == 0:
		if op.body.required {
			add("the request body is required, and none was sent")
		}
	default:
		key, ok := matchMedia(op.body.content, ct)
		if !ok {
			add("request Content-Type %q; the operation documents %s", ct, strings.Join(slices.Sorted(maps.Keys(op.body.content)), ", "))
			break
		}
		if s := op.body.content[key]; s != nil {
			if err := validateJSON(s, x.RequestBody); err != nil {
				add("request body does not match the operation's (%s): %w", key, err)
			}
		}
	}
	return errs
}

// check validates a parameter's or header's text, read as its schema's type.
func (p *parameter) check(text string) error {
	if p.schema == nil {
		return nil
	}
	var v any = text
	switch p.typ {
	case "integer", "number":
		n := json.Number(text)
		if _, err := n.Float64(); err == nil && json.Valid([]byte(text)) {
			v = n
		}
	case "boolean":
		if b, err := strconv.ParseBool(text); err == nil && (text == "true" || text == "false") {
			v = b
		}
	}
	if err := p.schema.Validate(v); err != nil {
		return fmt.Errorf("%q: %w", text, trim(err))
	}
	return nil
}

func validateJSON(s *jsonschema.Schema, body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return trim(err)
	}
	return nil
}

// trim shortens a validation error's first line, which names the schema by
// its long URL.
func trim(err error) error {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "\n"); ok && strings.HasPrefix(msg, "jsonschema validation failed") {
		return errors.New(strings.ReplaceAll(rest, docURL, ""))
	}
	return errors.New(strings.ReplaceAll(msg, docURL, ""))
}

// matchMedia finds the content key a Content-Type matches: the same media
// type, a range such as */* or image/*, or application/json for a +json
// type (the API takes those as JSON).
func matchMedia(content map[string]*jsonschema.Schema, ct string) (string, bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", false
	}
	if _, ok := content[mt]; ok {
		return mt, true
	}
	if strings.HasSuffix(mt, "+json") {
		if _, ok := content["application/json"]; ok {
			return "application/json", true
		}
	}
	major, _, _ := strings.Cut(mt, "/")
	for _, k := range []string{major + "/*", "*/*"} {
		if _, ok := content[k]; ok {
			return k, true
		}
	}
	return "", false
}

func isJSON(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

func isParam(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// escape escapes a JSON pointer token.
func escape(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1") }

func lookup(doc any, ptr string) any {
	v := doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = m[tok]; !ok {
			return nil
		}
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Transport is an http.RoundTripper that checks every exchange it carries
// and passes each mismatch to Report. It reads each response body whole
// before returning it.
type Transport struct {
	Doc *Document
	// Base carries the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Report receives the error of each exchange that departs from Doc.
	Report func(error)
	// ResponsesOnly leaves requests unchecked (Exchange.ResponseOnly).
	ResponsesOnly bool
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		// Hand over what arrived and the error; a body cut short is not
		// the document's concern.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.Doc.Check(Exchange{
		Method: req.Method, URL: req.URL, RequestHeader: req.Header, RequestBody: reqBody,
		Status: resp.StatusCode, ResponseHeader: resp.Header, ResponseBody: body, ResponseOnly: t.ResponsesOnly,
	}); err != nil && t.Report != nil {
		t.Report(err)
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
