package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	stdimage "image"
	"image/color"
	"image/gif"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/workers/image"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func setup(t *testing.T, cfg image.Config) *jobstest.Registry {
	t.Helper()
	r := &jobstest.Registry{}
	if err := image.Register(r, cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs one job and returns its result and artifact, or the error its
// handler returned, having checked that the job is recorded as they say.
func run(t *testing.T, r *jobstest.Registry, typ string, payload map[string]any) (image.Result, *jobs.Artifact, error) {
	t.Helper()
	res := r.Run(context.Background(), t, typ, payload, nil)
	if err := res.Err; err != nil {
		// Attempt 1 of 3: what is not permanent is retried.
		if e := res.Job.Error; e == nil || e.Code != jobs.ErrorCode(err) || e.Retryable == jobs.IsPermanent(err) {
			t.Errorf("%s failed with %v, recorded as %s %+v", typ, err, res.Job.Status, e)
		}
		return image.Result{}, nil, err
	}
	if res.Job.Status != jobs.StatusSucceeded {
		t.Fatalf("%s: %s %+v", typ, res.Job.Status, res.Job.Error)
	}
	var out image.Result
	if err := json.Unmarshal(res.Job.Result, &out); err != nil {
		t.Fatalf("%s result %s: %v", typ, res.Job.Result, err)
	}
	if res.Artifact == nil {
		t.Fatalf("%s returned no artifact", typ)
	}
	if a := res.Job.Artifact; a == nil || a.ContentType != res.Artifact.ContentType || a.Bytes != len(res.Artifact.Data) {
		t.Errorf("%s artifact recorded as %+v", typ, a)
	}
	return out, res.Artifact, nil
}

func data(t *testing.T, name string) string {
	return base64.StdEncoding.EncodeToString(readTestdata(t, name))
}

// checkOutput checks that the artifact agrees with the result, and returns
// the decoded artifact.
func checkOutput(t *testing.T, res image.Result, art *jobs.Artifact) stdimage.Image {
	t.Helper()
	if want := "image/" + res.Format; art.ContentType != want {
		t.Errorf("content type %q, want %q", art.ContentType, want)
	}
	if res.Bytes != len(art.Data) {
		t.Errorf("result says %d bytes, artifact has %d", res.Bytes, len(art.Data))
	}
	if sum := sha256.Sum256(art.Data); res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 %s does not match the artifact", res.SHA256)
	}
	img, format, err := stdimage.Decode(bytes.NewReader(art.Data))
	if err != nil {
		t.Fatalf("decode artifact: %v", err)
	}
	if format != res.Format {
		t.Errorf("artifact is %s, result says %s", format, res.Format)
	}
	if b := img.Bounds(); b.Dx() != res.Width || b.Dy() != res.Height {
		t.Errorf("artifact is %d×%d, result says %d×%d", b.Dx(), b.Dy(), res.Width, res.Height)
	}
	return img
}

// wantCode checks that err is permanent (or not) with the code.
func wantCode(t *testing.T, err error, code string, permanent bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := jobs.ErrorCode(err); got != code {
		t.Errorf("code %q (%v), want %q", got, err, code)
	}
	if jobs.IsPermanent(err) != permanent {
		t.Errorf("permanent = %v (%v), want %v", jobs.IsPermanent(err), err, permanent)
	}
}

func TestDimensions(t *testing.T) {
	t.Parallel()
	r := setup(t, image.Config{})
	for _, tt := range []struct {
		typ  string
		args map[string]any
		w, h int
	}{
		{"image.thumbnail", map[string]any{"width": 32, "height": 32}, 32, 24},
		{"image.thumbnail", map[string]any{"width": 32, "height": 32, "fit": "inside"}, 32, 24},
		{"image.thumbnail", map[string]any{"width": 16}, 16, 12},
		{"image.thumbnail", map[string]any{"height": 12}, 16, 12},
		{"image.thumbnail", map[string]any{"width": 32, "height": 32, "fit": "cover"}, 32, 32},
		{"image.thumbnail", map[string]any{"width": 40, "height": 10, "fit": "cover"}, 40, 10},
		{"image.thumbnail", map[string]any{"width": 16, "fit": "cover"}, 16, 12},
		// Thumbnails never enlarge.
		{"image.thumbnail", map[string]any{"width": 200, "height": 200}, 64, 48},
		{"image.thumbnail", map[string]any{"width": 200, "height": 30, "fit": "cover"}, 64, 30},
		// Resize makes exactly the size asked for.
		{"image.resize", map[string]any{"width": 100, "height": 30}, 100, 30},
		{"image.resize", map[string]any{"width": 128}, 128, 96},
		{"image.resize", map[string]any{"height": 24}, 32, 24},
		{"image.resize", map[string]any{"width": 1, "height": 1}, 1, 1},
	} {
		t.Run(fmt.Sprintf("%s %v", tt.typ, tt.args), func(t *testing.T) {
			t.Parallel()
			tt.args["data"] = data(t, "sample.jpg")
			res, art, err := run(t, r, tt.typ, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if res.Width != tt.w || res.Height != tt.h || res.Format != "jpeg" {
				t.Errorf("got %s %d×%d, want jpeg %d×%d", res.Format, res.Width, res.Height, tt.w, tt.h)
			}
			checkOutput(t, res, art)
		})
	}
}

func TestInputAndOutputFormats(t *testing.T) {
	t.Parallel()
	r := setup(t, image.Config{})
	for _, in := range []string{"sample.jpg", "sample.png", "sample.gif", "sample.webp"} {
		for _, format := range []string{"jpeg", "png"} {
			t.Run(in+" to "+format, func(t *testing.T) {
				t.Parallel()
				res, art, err := run(t, r, "image.thumbnail", map[string]any{"data": data(t, in), "width": 32, "format": format})
				if err != nil {
					t.Fatal(err)
				}
				if res.Format != format || res.Width != 32 || res.Height != 24 {
					t.Errorf("got %s %d×%d, want %s 32×24", res.Format, res.Width, res.Height, format)
				}
				checkOutput(t, res, art)
			})
		}
	}
}

func near(c color.Color, r, g, b uint8) bool {
	cr, cg, cb, _ := c.RGBA()
	d := func(x uint32, y uint8) bool { return max(x>>8, uint32(y))-min(x>>8, uint32(y)) <= 24 }
	return d(cr, r) && d(cg, g) && d(cb, b)
}

// The pixels come from the right place: the WebP's quadrants, the GIF's
// first frame, and a transparent PNG band composited on white for JPEG.
func TestPixels(t *testing.T) {
	t.Parallel()
	r := setup(t, image.Config{})
	get := func(name string, args map[string]any) stdimage.Image {
		args["data"] = data(t, name)
		res, art, err := run(t, r, "image.resize", args)
		if err != nil {
			t.Fatal(err)
		}
		return checkOutput(t, res, art)
	}

	webp := get("sample.webp", map[string]any{"width": 64, "format": "png"})
	for _, p := range []struct {
		x, y    int
		r, g, b uint8
	}{{5, 5, 30, 40, 120}, {60, 5, 220, 40, 120}, {5, 44, 30, 200, 120}, {60, 44, 220, 200, 120}} {
		if c := webp.At(p.x, p.y); !near(c, p.r, p.g, p.b) {
			t.Errorf("webp pixel (%d,%d) = %v, want about %d,%d,%d", p.x, p.y, c, p.r, p.g, p.b)
		}
	}

	// The second frame of the GIF is black; the first has the yellow disc
	// (238,238,0 in the Plan 9 palette).
	if c := get("sample.gif", map[string]any{"width": 64, "format": "png"}).At(40, 24); !near(c, 238, 238, 0) {
		t.Errorf("gif disc pixel = %v, want the first frame's yellow", c)
	}

	// The PNG's top-left corner is fully transparent: white in a JPEG,
	// transparent in a PNG.
	if c := get("sample.png", map[string]any{"width": 64}).At(0, 0); !near(c, 255, 255, 255) {
		t.Errorf("transparent pixel in jpeg = %v, want white", c)
	}
	if _, _, _, a := get("sample.png", map[string]any{"width": 64, "format": "png"}).At(0, 0).RGBA(); a != 0 {
		t.Errorf("transparent pixel in png has alpha %d", a)
	}
}

// A GIF's first frame may cover part of its logical screen: the output is
// the screen, transparent (white in a JPEG) where the frame is not, as a
// browser shows it.
func TestGIFFrameOnItsScreen(t *testing.T) {
	t.Parallel()
	frame := stdimage.NewPaletted(stdimage.Rect(16, 12, 48, 36), color.Palette{color.RGBA{200, 20, 20, 255}})
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, &gif.GIF{
		Image: []*stdimage.Paletted{frame}, Delay: []int{0},
		Config: stdimage.Config{ColorModel: frame.Palette, Width: 64, Height: 48},
	}); err != nil {
		t.Fatal(err)
	}
	r := setup(t, image.Config{})
	for _, format := range []string{"png", "jpeg"} {
		res, art, err := run(t, r, "image.thumbnail", map[string]any{
			"data": base64.StdEncoding.EncodeToString(b.Bytes()), "width": 64, "format": format})
		if err != nil {
			t.Fatal(err)
		}
		img := checkOutput(t, res, art)
		if res.Width != 64 || res.Height != 48 {
			t.Errorf("%s: %d×%d, want the screen's 64×48", format, res.Width, res.Height)
		}
		if c := img.At(32, 24); !near(c, 200, 20, 20) {
			t.Errorf("%s: pixel in the frame = %v, want red", format, c)
		}
		_, _, _, a := img.At(2, 2).RGBA()
		if format == "png" && a != 0 || format == "jpeg" && !near(img.At(2, 2), 255, 255, 255) {
			t.Errorf("%s: pixel outside the frame = %v, want transparent (png) or white (jpeg)", format, img.At(2, 2))
		}
	}
}

func TestQuality(t *testing.T) {
	t.Parallel()
	r := setup(t, image.Config{})
	size := func(q int) int {
		res, _, err := run(t, r, "image.resize", map[string]any{"data": data(t, "sample.png"), "width": 256, "quality": q})
		if err != nil {
			t.Fatal(err)
		}
		return res.Bytes
	}
	low, def, high := size(10), size(85), size(100)
	if low >= def || def >= high {
		t.Errorf("bytes at quality 10, 85, 100: %d, %d, %d; want increasing", low, def, high)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	jpg := readTestdata(t, "sample.jpg")
	tests := []struct {
		name string
		cfg  image.Config
		args map[string]any
		code string
	}{
		{"input over MaxInputBytes", image.Config{MaxInputBytes: int64(len(jpg) - 1)},
			map[string]any{"data": data(t, "sample.jpg"), "width": 10}, image.CodeTooLarge},
		{"input far over MaxInputBytes", image.Config{MaxInputBytes: 10},
			map[string]any{"data": data(t, "sample.jpg"), "width": 10}, image.CodeTooLarge},
		{"input over MaxPixels", image.Config{MaxPixels: 64*48 - 1},
			map[string]any{"data": data(t, "sample.jpg"), "width": 10}, image.CodeTooManyPixels},
		{"output over MaxPixels", image.Config{},
			map[string]any{"data": data(t, "sample.jpg"), "width": 10000, "height": 10000}, image.CodeTooManyPixels},
		// Every job needs a megabyte or two whatever its size; one byte fits
		// none, so the job fails at once rather than wait.
		{"over MaxMemoryBytes", image.Config{MaxMemoryBytes: 1},
			map[string]any{"data": data(t, "sample.jpg"), "width": 10}, image.CodeTooLargeForMemory},
		{"output over MaxOutputBytes", image.Config{MaxOutputBytes: 200},
			map[string]any{"data": data(t, "sample.jpg"), "width": 64}, image.CodeOutputTooLarge},
		{"truncated jpeg", image.Config{},
			map[string]any{"data": data(t, "truncated.jpg"), "width": 10}, image.CodeBadImage},
		{"not an image", image.Config{},
			map[string]any{"data": base64.StdEncoding.EncodeToString([]byte("hello, world")), "width": 10}, image.CodeBadImage},
		{"empty", image.Config{}, map[string]any{"data": "", "width": 10}, image.CodeBadImage},
		{"bad base64", image.Config{}, map[string]any{"data": "!!!!", "width": 10}, image.CodeBadPayload},
		{"neither url nor data", image.Config{}, map[string]any{"width": 10}, image.CodeBadPayload},
		{"no size", image.Config{}, map[string]any{"data": data(t, "sample.jpg")}, image.CodeBadPayload},
		{"not decodable", image.Config{}, map[string]any{"data": data(t, "sample.jpg"), "width": "ten"}, image.CodeBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := run(t, setup(t, tt.cfg), "image.resize", tt.args)
			wantCode(t, err, tt.code, true)
		})
	}
	// Exactly at the limits is fine.
	_, _, err := run(t, setup(t, image.Config{MaxInputBytes: int64(len(jpg)), MaxPixels: 64 * 48}),
		"image.resize", map[string]any{"data": data(t, "sample.jpg"), "width": 64})
	if err != nil {
		t.Errorf("at the limits: %v", err)
	}
}

// A PNG that declares 100000×100000 pixels is refused from its header:
// quickly, and without allocating anything like its 30 GB of pixels. Not
// parallel, so that the allocation count is this test's own.
func TestDecompressionBomb(t *testing.T) {
	r := setup(t, image.Config{})
	args := map[string]any{"data": data(t, "bomb.png"), "width": 100}
	run(t, r, "image.thumbnail", args) // warm up

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, _, err := run(t, r, "image.thumbnail", args)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)

	wantCode(t, err, image.CodeTooManyPixels, true)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("refusing the bomb allocated %d bytes, want under 1 MiB", alloc)
	}
	if elapsed > time.Second {
		t.Errorf("refusing the bomb took %s", elapsed)
	}
}

func TestFetch(t *testing.T) {
	t.Parallel()
	jpg := readTestdata(t, "sample.jpg")
	mux := http.NewServeMux()
	mux.HandleFunc("/ok.jpg", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(jpg)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, 4096))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for range 8 {
			_, _ = w.Write(make([]byte, 1024))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/boom", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusBadGateway) })
	mux.HandleFunc("/slow-down", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "gone", http.StatusNotFound) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	r := setup(t, image.Config{Client: srv.Client(), MaxInputBytes: 2048})
	fetch := func(path string) (image.Result, *jobs.Artifact, error) {
		return run(t, r, "image.thumbnail", map[string]any{"url": srv.URL + path, "width": 32})
	}

	res, art, err := fetch("/ok.jpg")
	if err != nil {
		t.Fatal(err)
	}
	checkOutput(t, res, art)

	_, _, err = fetch("/big")
	wantCode(t, err, image.CodeTooLarge, true)
	_, _, err = fetch("/chunked")
	wantCode(t, err, image.CodeTooLarge, true)
	_, _, err = fetch("/boom")
	wantCode(t, err, image.CodeFetch, false)
	_, _, err = fetch("/gone")
	wantCode(t, err, image.CodeFetch, true)
	_, _, err = fetch("/slow-down")
	wantCode(t, err, image.CodeFetch, false)
	var ra *jobs.RetryAfterError
	if !errors.As(err, &ra) || ra.After != 7*time.Second {
		t.Errorf("429 with Retry-After: 7 gave %v, want a retry after 7s", err)
	}

	// Without a client, URLs are refused.
	_, _, err = run(t, setup(t, image.Config{}), "image.thumbnail", map[string]any{"url": srv.URL + "/ok.jpg", "width": 32})
	wantCode(t, err, image.CodeRefusedTarget, true)

	_, _, err = run(t, r, "image.thumbnail", map[string]any{"url": "file:///etc/passwd", "width": 32})
	wantCode(t, err, image.CodeBadPayload, true)
}

// errRefused stands for egress.ErrRefused.
var errRefused = errors.New("refused target")

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestFetchRefusedAndFailing(t *testing.T) {
	t.Parallel()
	cfg := image.Config{
		Client: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Hostname() == "169.254.169.254" {
				return nil, fmt.Errorf("dial %s: %w", r.URL.Host, errRefused)
			}
			return nil, errors.New("connection reset")
		})},
		Refused: func(err error) bool { return errors.Is(err, errRefused) },
	}
	r := setup(t, cfg)
	_, _, err := run(t, r, "image.thumbnail", map[string]any{"url": "http://169.254.169.254/latest/meta-data", "width": 32})
	wantCode(t, err, image.CodeRefusedTarget, true)
	_, _, err = run(t, r, "image.thumbnail", map[string]any{"url": "https://example.com/a.jpg", "width": 32})
	wantCode(t, err, image.CodeFetch, false)
}

func TestSchemas(t *testing.T) {
	t.Parallel()
	compile := func(ty jobs.Type) *schema.Schema {
		s, err := schema.Compile(ty.Name, ty.Schema)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	thumb, resize := compile(image.Thumbnail), compile(image.Resize)
	for _, tt := range []struct {
		payload   string
		thumbOK   bool
		resizeOK  bool
		wantField string
	}{
		{`{"url":"https://example.com/a.jpg","width":100}`, true, true, ""},
		{`{"url":"http://example.com/a.jpg","height":100,"format":"png"}`, true, true, ""},
		{`{"data":"aGVsbG8=","width":100,"height":50,"fit":"cover","quality":40}`, true, false, "payload.fit"},
		{`{"data":"aGVsbG8=","width":100,"height":50,"fit":"inside"}`, true, false, "payload.fit"},
		{`{"data":"aGVsbG8=","width":100,"height":50,"format":"jpeg","quality":100}`, true, true, ""},
		{`{"width":100}`, false, false, "payload"}, // url or data: the choice is the payload's
		{`{"url":"https://example.com/a.jpg","data":"aGVsbG8=","width":100}`, false, false, "payload"},
		{`{"url":"https://example.com/a.jpg"}`, false, false, "payload"}, // width, height or both
		{`{"url":"ftp://example.com/a.jpg","width":100}`, false, false, "payload.url"},
		{`{"url":"file:///etc/passwd","width":100}`, false, false, "payload.url"},
		{`{"url":"https://example.com/a.jpg","width":0}`, false, false, "payload.width"},
		{`{"url":"https://example.com/a.jpg","width":10001}`, false, false, "payload.width"},
		{`{"url":"https://example.com/a.jpg","width":1.5}`, false, false, "payload.width"},
		{`{"url":"https://example.com/a.jpg","width":10,"fit":"fill"}`, false, false, "payload.fit"},
		{`{"url":"https://example.com/a.jpg","width":10,"format":"gif"}`, false, false, "payload.format"},
		{`{"url":"https://example.com/a.jpg","width":10,"quality":0}`, false, false, "payload.quality"},
		{`{"url":"https://example.com/a.jpg","width":10,"quality":101}`, false, false, "payload.quality"},
		{`{"url":"https://example.com/a.jpg","width":10,"colour":"red"}`, false, false, "payload.colour"},
	} {
		for _, s := range []struct {
			name string
			s    *schema.Schema
			ok   bool
		}{{"thumbnail", thumb, tt.thumbOK}, {"resize", resize, tt.resizeOK}} {
			err := s.s.Validate([]byte(tt.payload))
			if (err == nil) != s.ok {
				t.Errorf("%s %s: err %v, want ok %v", s.name, tt.payload, err, s.ok)
				continue
			}
			var fe *schema.FieldError
			if err != nil && tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField) {
				t.Errorf("%s %s: %v, want it to name %s", s.name, tt.payload, err, tt.wantField)
			}
		}
	}
}

func TestRegisterRefusesNegativeLimits(t *testing.T) {
	t.Parallel()
	for _, cfg := range []image.Config{{MaxInputBytes: -1}, {MaxPixels: -1}, {MaxOutputBytes: -1}} {
		if err := image.Register(&jobstest.Registry{}, cfg); err == nil {
			t.Errorf("Register(%+v) accepted", cfg)
		}
	}
	// A negative memory budget means none: jobs run whatever they need.
	_, _, err := run(t, setup(t, image.Config{MaxMemoryBytes: -1}), "image.resize",
		map[string]any{"data": data(t, "sample.png"), "width": 640})
	if err != nil {
		t.Errorf("without a memory budget: %v", err)
	}
	if image.DefaultConcurrency() != runtime.NumCPU() {
		t.Error("DefaultConcurrency is not NumCPU")
	}
}
