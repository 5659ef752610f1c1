// Package image is warren's image pool: image.thumbnail shrinks a picture
// to fit (or fill) a box, image.resize scales it to a given size. Both read a
// JPEG, PNG, GIF (first frame) or WebP from a URL or from base64 in the
// payload and return a JPEG or PNG as the job's artifact.
//
// Untrusted input is read within limits: at most MaxInputBytes, and the
// dimensions a header declares are checked before anything is decoded, so a
// small file that claims to be enormous (a decompression bomb) is refused
// without allocating its pixels. Concurrent jobs share a memory budget
// (MaxMemoryBytes): each takes the share its header says decoding and
// scaling will need before it decodes, waiting while the others hold too
// much.
package image

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// Pool is the name of the pool that runs the image types.
const Pool = "image"

// DefaultConcurrency is runtime.NumCPU(): image work is CPU-bound, so more
// jobs at once than cores only adds memory.
func DefaultConcurrency() int { return runtime.NumCPU() }

// Defaults of Config.
const (
	DefaultMaxInputBytes  = 20 << 20
	DefaultMaxPixels      = 40_000_000
	DefaultMaxOutputBytes = 10 << 20
	DefaultMaxMemoryBytes = 1 << 30
)

// Error codes recorded with failed image jobs. All but CodeFetch are
// permanent.
const (
	// CodeBadPayload: the payload breaks the schema (or its base64 is bad).
	CodeBadPayload = jobs.CodeBadPayload
	// CodeTooLarge: the input is over MaxInputBytes.
	CodeTooLarge = "too_large"
	// CodeTooManyPixels: the input's declared dimensions, or the output's,
	// are over MaxPixels.
	CodeTooManyPixels = "too_many_pixels"
	// CodeBadImage: the input is corrupt or not a supported format.
	CodeBadImage = "bad_image"
	// CodeRefusedTarget: the URL's target is refused (Config.Refused), or
	// URL payloads are off (no Config.Client).
	CodeRefusedTarget = "refused_target"
	// CodeFetch: fetching the URL failed. Retryable for network errors,
	// 5xx, 408 and 429; permanent for other 4xx and non-2xx answers.
	CodeFetch = "fetch_failed"
	// CodeOutputTooLarge: the encoded output is over MaxOutputBytes.
	CodeOutputTooLarge = "output_too_large"
	// CodeTooLargeForMemory: decoding and scaling the input would need
	// more than the whole of MaxMemoryBytes.
	CodeTooLargeForMemory = "image_too_large_for_memory"
)

// Config configures the image handlers.
type Config struct {
	// Client fetches url payloads; the caller passes a client that refuses
	// private and internal targets. Nil means URL payloads are refused.
	Client *http.Client
	// Refused reports whether an error from Client is a refused target
	// (permanent) rather than a passing failure (retried). Nil means none
	// are.
	Refused func(error) bool
	// MaxInputBytes bounds the input read from url or data; zero means
	// DefaultMaxInputBytes (20 MiB).
	MaxInputBytes int64
	// MaxPixels bounds width×height of the input, checked from its header
	// before it is decoded, and of the output; zero means DefaultMaxPixels
	// (40 megapixels).
	MaxPixels int64
	// MaxOutputBytes bounds the encoded output; zero means
	// DefaultMaxOutputBytes (10 MiB).
	MaxOutputBytes int
	// MaxMemoryBytes is the memory budget the jobs of the handlers one
	// Register call makes share (in warren: per process). Before it
	// decodes, a job takes the share its input's header says decoding,
	// scaling and encoding will allocate (the decoded image and the
	// decoder's working copies, the scaler's copies, the output), and gives
	// it back when it ends; a job that does not fit beside the others waits
	// for them, within its timeout; a job that needs more than the whole
	// budget fails with CodeTooLargeForMemory. Zero means
	// DefaultMaxMemoryBytes (1 GiB); negative means no budget.
	MaxMemoryBytes int64
}

func (c Config) withDefaults() Config {
	c.MaxInputBytes = cmp.Or(c.MaxInputBytes, DefaultMaxInputBytes)
	c.MaxPixels = cmp.Or(c.MaxPixels, DefaultMaxPixels)
	c.MaxOutputBytes = cmp.Or(c.MaxOutputBytes, DefaultMaxOutputBytes)
	c.MaxMemoryBytes = cmp.Or(c.MaxMemoryBytes, DefaultMaxMemoryBytes)
	if c.Refused == nil {
		c.Refused = func(error) bool { return false }
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.MaxInputBytes < 0:
		return fmt.Errorf("max input bytes %d is negative", c.MaxInputBytes)
	case c.MaxPixels < 0:
		return fmt.Errorf("max pixels %d is negative", c.MaxPixels)
	case c.MaxOutputBytes < 0:
		return fmt.Errorf("max output bytes %d is negative", c.MaxOutputBytes)
	}
	return nil
}

// payloadSchema is the payload of both types; resize leaves out fit.
const payloadSchema = `{
  "type": "object",
  "properties": {
    "url": {"type": "string", "pattern": "^[hH][tT][tT][pP][sS]?://[^/?#]", "maxLength": 8192,
      "description": "http or https URL of the input image"},
    "data": {"type": "string", "contentEncoding": "base64", "description": "the input image, base64 (standard alphabet, padded)"},
    "width": {"type": "integer", "minimum": 1, "maximum": 10000},
    "height": {"type": "integer", "minimum": 1, "maximum": 10000},%s
    "format": {"enum": ["jpeg", "png"], "default": "jpeg"},
    "quality": {"type": "integer", "minimum": 1, "maximum": 100, "default": 85,
      "description": "JPEG quality; ignored for png"}
  },
  "oneOf": [{"required": ["url"]}, {"required": ["data"]}],
  "anyOf": [{"required": ["width"]}, {"required": ["height"]}],
  "additionalProperties": false
}`

const fitProperty = `
    "fit": {"enum": ["inside", "cover"], "default": "inside",
      "description": "inside: fit within the box keeping the aspect ratio; cover: fill the box and crop centred"},`

// Types of the image pool.
var (
	Thumbnail = jobs.Type{
		Name: "image.thumbnail", Pool: Pool, Timeout: jobs.Duration(2 * time.Minute),
		Description: "Makes a thumbnail no larger than width×height (one may be left out: unbounded). " +
			"fit inside (default) scales to fit within the box keeping the aspect ratio; " +
			"fit cover scales to fill the box and crops the overflow, centred. " +
			"Never enlarges: a smaller image keeps its size. Input JPEG, PNG, GIF or WebP from url or base64 data; " +
			"output jpeg (default, quality 1-100, default 85) or png, served as the job's artifact.",
		Schema: []byte(fmt.Sprintf(payloadSchema, fitProperty)),
	}
	Resize = jobs.Type{
		Name: "image.resize", Pool: Pool, Timeout: jobs.Duration(2 * time.Minute),
		Description: "Resizes to exactly width×height when both are given, stretching if the aspect ratio differs " +
			"(no cropping, no padding); with only one given, the other follows the aspect ratio. " +
			"Enlarges as well as shrinks (the output is bounded by the pool's pixel limit). " +
			"Input JPEG, PNG, GIF or WebP from url or base64 data; " +
			"output jpeg (default, quality 1-100, default 85) or png, served as the job's artifact.",
		Schema: []byte(fmt.Sprintf(payloadSchema, "")),
	}
)

// Register registers the image types with r.
func Register(r jobs.Registrar, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cfg = cfg.withDefaults()
	mem := newBudget(cfg.MaxMemoryBytes)
	for _, h := range []struct {
		t    jobs.Type
		mode mode
	}{{Thumbnail, modeThumbnail}, {Resize, modeResize}} {
		hd := &handler{cfg: cfg, mode: h.mode, mem: mem}
		if err := r.Handle(h.t, jobs.Typed(hd.run)); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	return nil
}

// Result is the result of an image job; the image itself is the artifact.
type Result struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int    `json:"bytes"`
	Format string `json:"format"`
	SHA256 string `json:"sha256"`
}

// coded returns err with code, permanent unless retry.
func coded(code string, retry bool, err error) error {
	err = &jobs.CodedError{Code: code, Err: err}
	if !retry {
		err = jobs.Permanent(err)
	}
	return err
}

func permanent(code, format string, args ...any) error {
	return coded(code, false, fmt.Errorf(format, args...))
}

var errNoClient = errors.New("URL payloads are not enabled on this worker")
