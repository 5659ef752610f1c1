package redact_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/warrenhq/warren/internal/redact"
)

func TestURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"amqp://bob:s3cret@rabbit:5672/":  "amqp://bob:xxxxx@rabbit:5672/",
		"rediss://:s3cret@cache:6380/0":   "rediss://:xxxxx@cache:6380/0",
		"amqp://rabbit:5672/":             "amqp://rabbit:5672/",
		"amqp://bob@rabbit/":              "amqp://bob@rabbit/",
		"amqp://bob:s3cr/et@rabbit:5672/": "amqp://bob:xxxxx@rabbit:5672/",
		"amqp://bob:s3cr et@rabbit:5672/": "amqp://bob:xxxxx@rabbit:5672/",
		"amqp://bob:s3cr@t@rabbit:port/":  "amqp://bob:xxxxx@rabbit:port/",
		"http://[::1:bad/":                "http://[::1:bad/",
	} {
		if got := redact.URL(raw); got != want {
			t.Errorf("URL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestURLs(t *testing.T) {
	t.Parallel()
	raw := "amqp://bob:s3cret@rabbit-1:5672/, amqp://bob:0ther@rabbit-2:5672/,amqp://rabbit-3/"
	want := "amqp://bob:xxxxx@rabbit-1:5672/,amqp://bob:xxxxx@rabbit-2:5672/,amqp://rabbit-3/"
	if got := redact.URLs(raw); got != want {
		t.Errorf("URLs(%q) = %q, want %q", raw, got, want)
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	in := `dial amqps://bob:s3cret@rabbit:5671/: refused; also "redis://:pw2@cache/0" and http://host:8080/path`
	want := `dial amqps://bob:xxxxx@rabbit:5671/: refused; also "redis://:xxxxx@cache/0" and http://host:8080/path`
	if got := redact.Text(in); got != want {
		t.Errorf("Text:\n got %s\nwant %s", got, want)
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"amqp://bob:s3cr/et@rabbit:5672/", "amqp://bob:s3cret@rabbit:port/", "redis://:s3cret@cache/%zz"} {
		_, err := url.Parse(raw)
		if err == nil {
			t.Fatalf("%s parses", raw)
		}
		got := redact.ParseError(raw, err)
		if got == nil || strings.Contains(got.Error(), "s3cr") {
			t.Errorf("ParseError(%q) = %v", raw, got)
		}
	}
	plain := errors.New("redis: invalid URL scheme: http")
	if got := redact.ParseError("http://cache/", plain); got != plain {
		t.Errorf("an error about a URL without credentials changed: %v", got)
	}
	if redact.ParseError("x", nil) != nil {
		t.Error("ParseError(nil) is not nil")
	}
}
