package apicheck_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/warrenhq/warren/internal/apicheck"
)

// doc is a small document with what the checker reads.
const doc = `{
  "openapi": "3.1.0",
  "paths": {
    "/things": {
      "get": {
        "operationId": "listThings",
        "parameters": [
          {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
          {"name": "meta.KEY", "in": "query", "schema": {"type": "string", "maxLength": 3}}
        ],
        "responses": {
          "200": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/List"}}}},
          "4XX": {"$ref": "#/components/responses/Error"}
        }
      },
      "head": {"operationId": "listThingsHead", "responses": {"200": {"description": ""}}},
      "post": {
        "operationId": "addThing",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 4}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "required": ["name"], "additionalProperties": false,
          "properties": {"name": {"type": "string"}, "n": {"type": ["integer", "null"]}}}}}},
        "responses": {
          "201": {"description": "", "headers": {"Location": {"required": true, "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
          "400": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/things/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
      "get": {
        "operationId": "getThing",
        "responses": {
          "200": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
          "404": {"description": "", "content": {}},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/things/new": {"post": {"operationId": "newThing", "responses": {"204": {"description": ""}}}},
    "/files/{id}": {"get": {"operationId": "getFile", "responses": {"200": {"description": "", "content": {"image/*": {}}}}}}
  },
  "x-other-requests": {
    "pages": ["/", "/ui/*"],
    "responses": {
      "404": {"$ref": "#/components/responses/Error"},
      "405": {"description": "", "headers": {"Allow": {"required": true, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "components": {
    "responses": {
      "Error": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    },
    "schemas": {
      "Thing": {"type": "object", "required": ["id", "name"], "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}}},
      "List": {"type": "object", "required": ["things"], "properties": {"things": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}}},
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code"], "properties": {"code": {"enum": ["bad", "gone"]}}}}}
    }
  }
}`

const id = "0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"

func load(t *testing.T) *apicheck.Document {
	t.Helper()
	d, err := apicheck.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheck(t *testing.T) {
	t.Parallel()
	d := load(t)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	thing := `{"id":"` + id + `","name":"a"}`
	tests := []struct {
		name     string
		x        apicheck.Exchange
		url      string
		reqCT    string
		wantErrs []string // parts of the error, none for no error
	}{
		{name: "a documented answer", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(`{"things":[` + thing + `]}`)}, url: "/things?limit=2&meta.k=v"},
		{name: "an undocumented status", x: apicheck.Exchange{Method: "GET", Status: 500, ResponseHeader: jsonCT, ResponseBody: []byte(`{}`)}, url: "/things",
			wantErrs: []string{"GET /things (operation listThings, GET /things) answered 500", "status 500 is not documented"}},
		{name: "a range", x: apicheck.Exchange{Method: "GET", Status: 418, ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/things"},
		{name: "a body off its schema", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(`{"things":[{"id":"x"}]}`)}, url: "/things",
			wantErrs: []string{"answered 200", "response body does not match", "/things/0", "'name'", "uuid"}},
		{name: "not JSON", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(`<html>`)}, url: "/things",
			wantErrs: []string{"not JSON"}},
		{name: "another media type", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: http.Header{"Content-Type": {"text/plain"}}, ResponseBody: []byte(`x`)}, url: "/things",
			wantErrs: []string{`Content-Type "text/plain"`}},
		{name: "a body where none is documented", x: apicheck.Exchange{Method: "GET", Status: 404, ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"gone"}}`)}, url: "/things/" + id,
			wantErrs: []string{"documents no body"}},
		{name: "a header off its schema", x: apicheck.Exchange{Method: "GET", Status: 503, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"soon"}}, ResponseBody: []byte(`{"error":{"code":"gone"}}`)}, url: "/things/" + id,
			wantErrs: []string{"header Retry-After", `"soon"`}},
		{name: "a required header missing", x: apicheck.Exchange{Method: "POST", Status: 201, RequestBody: []byte(`{"name":"a"}`), ResponseHeader: jsonCT, ResponseBody: []byte(thing)}, url: "/things", reqCT: "application/json",
			wantErrs: []string{"header Location is required"}},
		{name: "a range of media types", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: http.Header{"Content-Type": {"image/png"}}, ResponseBody: []byte("\x89PNG")}, url: "/files/1"},
		{name: "HEAD: headers, no body", x: apicheck.Exchange{Method: "HEAD", Status: 200, ResponseHeader: jsonCT}, url: "/things"},

		// Requests are checked when the server took them.
		{name: "an accepted request", x: apicheck.Exchange{Method: "POST", Status: 201, RequestBody: []byte(`{"name":"a","n":3.0}`), ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Location": {"/things/" + id}}, ResponseBody: []byte(thing)}, url: "/things", reqCT: "application/vnd.thing+json"},
		{name: "an accepted request off the schema", x: apicheck.Exchange{Method: "POST", Status: 201, RequestBody: []byte(`{"name":"a","n":1.5,"x":1}`), ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Location": {"/"}}, ResponseBody: []byte(thing)}, url: "/things", reqCT: "application/json",
			wantErrs: []string{"request body does not match", "'x' not allowed", "/n"}},
		{name: "a refused request is not checked", x: apicheck.Exchange{Method: "POST", Status: 400, RequestBody: []byte(`{"x":1}`), ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/things", reqCT: "application/json"},
		{name: "ResponseOnly", x: apicheck.Exchange{Method: "POST", Status: 201, RequestBody: []byte(`{"x":1}`), ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Location": {"/"}}, ResponseBody: []byte(thing), ResponseOnly: true}, url: "/things", reqCT: "application/json"},
		{name: "a missing body", x: apicheck.Exchange{Method: "POST", Status: 201, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Location": {"/"}}, ResponseBody: []byte(thing)}, url: "/things",
			wantErrs: []string{"request body is required"}},
		{name: "a body where none is taken", x: apicheck.Exchange{Method: "POST", Status: 204, RequestBody: []byte(`{}`)}, url: "/things/new", reqCT: "application/json",
			wantErrs: []string{"documents no request body"}},
		{name: "parameters off their schemas", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(`{"things":[]}`)}, url: "/things?limit=0&meta.team=long&x=1",
			wantErrs: []string{"query parameter limit", "query parameter meta.team", "query parameter x is not documented"}},
		{name: "a path parameter off its schema", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(thing)}, url: "/things/nope",
			wantErrs: []string{"path parameter id"}},
		{name: "a header parameter off its schema", x: apicheck.Exchange{Method: "POST", Status: 201, RequestHeader: http.Header{"Idempotency-Key": {"toolong"}}, RequestBody: []byte(`{"name":"a"}`), ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Location": {"/"}}, ResponseBody: []byte(thing)}, url: "/things", reqCT: "application/json",
			wantErrs: []string{"header parameter Idempotency-Key"}},

		// A literal path wins over a template, for the methods it has.
		{name: "literal over template", x: apicheck.Exchange{Method: "POST", Status: 204}, url: "/things/new"},
		{name: "template for another method", x: apicheck.Exchange{Method: "GET", Status: 404}, url: "/things/new"},

		// Requests no operation takes.
		{name: "405 naming the path's methods", x: apicheck.Exchange{Method: "DELETE", Status: 405, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Allow": {"GET, HEAD, POST"}}, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/things"},
		{name: "405 with a wrong Allow", x: apicheck.Exchange{Method: "DELETE", Status: 405, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Allow": {"GET, POST"}}, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/things",
			wantErrs: []string{`Allow header "GET, POST"`, "GET, HEAD, POST"}},
		{name: "405 without Allow", x: apicheck.Exchange{Method: "PUT", Status: 405, ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/things/" + id,
			wantErrs: []string{"header Allow is required"}},
		{name: "404 for a documented path", x: apicheck.Exchange{Method: "DELETE", Status: 404, ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"gone"}}`)}, url: "/things",
			wantErrs: []string{"want 405"}},
		{name: "404 elsewhere", x: apicheck.Exchange{Method: "GET", Status: 404, ResponseHeader: jsonCT, ResponseBody: []byte(`{"error":{"code":"gone"}}`)}, url: "/nothing"},
		{name: "405 elsewhere", x: apicheck.Exchange{Method: "GET", Status: 405, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Allow": {"GET"}}, ResponseBody: []byte(`{"error":{"code":"bad"}}`)}, url: "/nothing",
			wantErrs: []string{"want 404"}},
		{name: "an undocumented answer elsewhere", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: jsonCT, ResponseBody: []byte(`{}`)}, url: "/nothing",
			wantErrs: []string{"no documented path matches"}},
		{name: "a page", x: apicheck.Exchange{Method: "GET", Status: 200, ResponseHeader: http.Header{"Content-Type": {"text/html"}}, ResponseBody: []byte(`<html>`)}, url: "/ui/jobs/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tt.x
			x.URL, _ = url.Parse(tt.url)
			if x.RequestHeader == nil {
				x.RequestHeader = http.Header{}
			}
			if tt.reqCT != "" {
				x.RequestHeader.Set("Content-Type", tt.reqCT)
			}
			if x.ResponseHeader == nil {
				x.ResponseHeader = http.Header{}
			}
			err := d.Check(x)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check: nil, want an error saying %q", tt.wantErrs)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check: %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	d := load(t)
	ct := http.Header{"Content-Type": {"application/json"}}
	u, _ := url.Parse("/things")
	if err := d.CheckRequest("POST", u, ct, []byte(`{"name":"a","n":null}`)); err != nil {
		t.Errorf("a good body: %v", err)
	}
	if err := d.CheckRequest("POST", u, ct, []byte(`{"n":2}`)); err == nil || !strings.Contains(err.Error(), "operation addThing") {
		t.Errorf("a body without name: %v, want an error naming the operation", err)
	}
	if err := d.CheckRequest("PATCH", u, ct, nil); err == nil {
		t.Error("a method no operation takes: no error")
	}
}

// The Transport checks what it carries and hands both bodies on whole.
func TestTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/things/"+id)
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"`+id+`","name":`+string(b[len(`{"name":`):len(b)-1])+`}`)
	}))
	defer srv.Close()
	var reported []error
	hc := &http.Client{Transport: &apicheck.Transport{Doc: load(t), Report: func(err error) { reported = append(reported, err) }}}
	for _, body := range []string{`{"name":"a"}`, `{"name":7}`} {
		resp, err := hc.Post(srv.URL+"/things", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), id) {
			t.Errorf("body %q", b)
		}
	}
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "at '/name'") {
		t.Errorf("reported %v, want one error about the second exchange's name", reported)
	}
}

// The API's own document compiles, every schema of it.
func TestLoadTheAPIsDocument(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apicheck.Load(b); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefusesABrokenDocument(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"not JSON":        `{`,
		"a dangling $ref": `{"paths":{"/a":{"get":{"responses":{"200":{"$ref":"#/components/responses/Nope"}}}}}}`,
		"a broken schema": `{"paths":{"/a":{"get":{"responses":{"200":{"description":"","content":{"application/json":{"schema":{"type":7}}}}}}}}}`,
	} {
		if _, err := apicheck.Load([]byte(text)); err == nil {
			t.Errorf("%s: Load = nil error", name)
		}
	}
}
