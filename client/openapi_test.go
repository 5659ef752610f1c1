package client_test

import (
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/warrenhq/warren/internal/apicheck"
)

// openAPI is the API's OpenAPI document, compiled once for every test.
var openAPI = sync.OnceValues(func() (*apicheck.Document, error) {
	b, err := os.ReadFile("../api/openapi.json")
	if err != nil {
		return nil, err
	}
	return apicheck.Load(b)
})

// checkedHTTP returns an http.Client for a client.Config whose every
// exchange is checked against the API's OpenAPI document: a request the
// client sends that the server takes (2xx) must be one the document
// describes, and every answer, the real API's or a test's imitation of it,
// one the document gives for its operation and status. A mismatch fails t.
func checkedHTTP(t *testing.T) *http.Client {
	t.Helper()
	doc, err := openAPI()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &http.Client{Transport: &apicheck.Transport{Doc: doc, Report: func(err error) { t.Error(err) }}}
}

// checkedResponses is checkedHTTP for a test whose requests break the
// document on purpose: only the answers are checked.
func checkedResponses(t *testing.T) *http.Client {
	t.Helper()
	hc := checkedHTTP(t)
	hc.Transport.(*apicheck.Transport).ResponsesOnly = true
	return hc
}
