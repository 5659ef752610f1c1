package image

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// recv returns what ch delivers; a test that waits longer than this for a
// signal has hung.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no signal after 30s: %s", what)
		panic("unreachable")
	}
}

// waitSignals makes the budget and the handler report: waiting delivers the
// share of each job that starts to wait; acquired is sent to when a job has
// its share, which then holds it until proceed is sent to.
func waitSignals(h *handler) (waiting chan int64, acquired, proceed chan struct{}) {
	waiting = make(chan int64, 10)
	acquired, proceed = make(chan struct{}), make(chan struct{})
	h.mem.waiting = func(n int64) { waiting <- n }
	h.acquired = func() {
		acquired <- struct{}{}
		<-proceed
	}
	return waiting, acquired, proceed
}

func (b *budget) state() (used int64, waiters int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, len(b.queue)
}

// memHandler returns a thumbnail handler for a job on in, and the job's
// payload and need, with a budget of one and a half times that need: one
// such job fits, two do not.
func memHandler(t *testing.T, in []byte) (h *handler, raw []byte, need int64) {
	t.Helper()
	h = &handler{cfg: Config{}.withDefaults(), mode: modeThumbnail}
	p := map[string]any{"data": base64.StdEncoding.EncodeToString(in), "width": 32}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var pp payload
	if err := json.Unmarshal(raw, &pp); err != nil {
		t.Fatal(err)
	}
	if err := pp.check(modeThumbnail); err != nil {
		t.Fatal(err)
	}
	pl, err := h.plan(in, &pp)
	if err != nil {
		t.Fatal(err)
	}
	h.mem = newBudget(pl.need * 3 / 2)
	return h, raw, pl.need
}

func start(ctx context.Context, h *handler, payload []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := jobs.Typed(h.run).Run(ctx, &jobs.Job{ID: "test", Type: "image.thumbnail", Payload: payload, Attempt: 1})
		done <- err
	}()
	return done
}

func samplePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Two jobs whose needs each fit the budget but not together: the second
// waits until the first gives its share back, then runs.
func TestJobWaitsForMemory(t *testing.T) {
	t.Parallel()
	h, payload, need := memHandler(t, samplePNG(t, 64, 48))
	waiting, acquired, proceed := waitSignals(h)

	first := start(context.Background(), h, payload)
	recv(t, acquired, "the first job takes its share")
	second := start(context.Background(), h, payload)
	if n := recv(t, waiting, "the second job waits"); n != need {
		t.Errorf("the second job waits for %d bytes, want %d", n, need)
	}
	select {
	case err := <-second:
		t.Fatalf("the second job ended (%v) while the first held its share", err)
	default:
	}
	if used, waiters := h.mem.state(); used != need || waiters != 1 {
		t.Errorf("budget: %d used, %d waiting; want %d and 1", used, waiters, need)
	}

	proceed <- struct{}{} // the first job decodes, scales, encodes, ends
	if err := recv(t, first, "the first job ends"); err != nil {
		t.Fatalf("first job: %v", err)
	}
	recv(t, acquired, "the second job takes its share")
	proceed <- struct{}{}
	if err := recv(t, second, "the second job ends"); err != nil {
		t.Fatalf("second job: %v", err)
	}
	if used, waiters := h.mem.state(); used != 0 || waiters != 0 {
		t.Errorf("budget after both: %d used, %d waiting; want none", used, waiters)
	}
}

// A job cancelled (or timed out) while it waits ends with its context's
// error, which the runtime retries, and holds nothing.
func TestWaitForMemoryCanceled(t *testing.T) {
	t.Parallel()
	h, payload, need := memHandler(t, samplePNG(t, 64, 48))
	waiting, acquired, proceed := waitSignals(h)

	first := start(context.Background(), h, payload)
	recv(t, acquired, "the first job takes its share")
	ctx, cancel := context.WithCancel(context.Background())
	second := start(ctx, h, payload)
	recv(t, waiting, "the second job waits")
	cancel()
	err := recv(t, second, "the cancelled job ends")
	if !errors.Is(err, context.Canceled) || jobs.IsPermanent(err) {
		t.Errorf("cancelled while waiting: %v (permanent %v), want context.Canceled, retryable", err, jobs.IsPermanent(err))
	}
	if used, waiters := h.mem.state(); used != need || waiters != 0 {
		t.Errorf("budget after the cancel: %d used, %d waiting; want the first job's %d and none", used, waiters, need)
	}

	proceed <- struct{}{}
	if err := recv(t, first, "the first job ends"); err != nil {
		t.Fatalf("first job: %v", err)
	}
	if used, _ := h.mem.state(); used != 0 {
		t.Errorf("budget after both: %d used, want 0", used)
	}
}

// Waiters are served in order; one that gives up lets those behind it in.
func TestBudgetOrder(t *testing.T) {
	t.Parallel()
	b := newBudget(10)
	waiting := make(chan int64, 10)
	b.waiting = func(n int64) { waiting <- n }
	ctx := context.Background()
	if err := b.acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}

	bigCtx, cancelBig := context.WithCancel(ctx)
	big, small := make(chan error, 1), make(chan error, 1)
	go func() { big <- b.acquire(bigCtx, 6) }()
	recv(t, waiting, "the big share waits")
	go func() { small <- b.acquire(ctx, 4) }()
	recv(t, waiting, "the small share waits")
	// 4 would fit beside 6, but the big share came first.
	if used, waiters := b.state(); used != 6 || waiters != 2 {
		t.Fatalf("%d used, %d waiting; want 6 and 2", used, waiters)
	}
	cancelBig()
	if err := recv(t, big, "the big share gives up"); !errors.Is(err, context.Canceled) {
		t.Errorf("big share: %v, want context.Canceled", err)
	}
	if err := recv(t, small, "the small share is granted"); err != nil {
		t.Errorf("small share: %v", err)
	}
	if used, waiters := b.state(); used != 10 || waiters != 0 {
		t.Errorf("%d used, %d waiting; want 10 and 0", used, waiters)
	}

	// Released shares let the next waiters in, as many as fit.
	go func() { big <- b.acquire(ctx, 5) }()
	recv(t, waiting, "a share of 5 waits")
	go func() { small <- b.acquire(ctx, 5) }()
	recv(t, waiting, "another share of 5 waits")
	b.release(6)
	b.release(4)
	recv(t, big, "the first share of 5")
	recv(t, small, "the second share of 5")
	if used, waiters := b.state(); used != 10 || waiters != 0 {
		t.Errorf("%d used, %d waiting; want 10 and 0", used, waiters)
	}

	var none *budget // no budget: everything fits at once
	if !none.fits(1<<62) || none.acquire(ctx, 1<<62) != nil {
		t.Error("a nil budget refused a share")
	}
	none.release(1 << 62)
}

// A 40-megapixel 16-bit PNG needs about 530 MB to make a thumbnail of
// (320 MB decoded, a 160 MB RGBA copy for the scaler, the scaler's
// buffers): two fit the default budget, and under a smaller budget than
// one it is refused from its header.
func TestNeedOf40MP16BitPNG(t *testing.T) {
	t.Parallel()
	in := pngHeader(8000, 5000, 16, 2, false)
	h := &handler{cfg: Config{}.withDefaults(), mode: modeThumbnail}
	p := &payload{Width: 256, Fit: "inside"}
	pl, err := h.plan(in, p)
	if err != nil {
		t.Fatal(err)
	}
	if pl.need < 500e6 || pl.need > DefaultMaxMemoryBytes/2 {
		t.Errorf("need %d, want 500 MB to half the default budget", pl.need)
	}
	h.mem = newBudget(pl.need - 1)
	_, err = h.plan(in, p)
	if jobs.ErrorCode(err) != CodeTooLargeForMemory || !jobs.IsPermanent(err) {
		t.Errorf("under a smaller budget: %v, want permanent %s", err, CodeTooLargeForMemory)
	}
}

// pngHeader is a PNG with an IHDR and nothing to decode: enough for plan.
func pngHeader(w, h uint32, depth, ctype byte, interlaced bool) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, depth, ctype, 0, 0, b2b(interlaced))
	return pngFile(ihdr, pngChunk("IDAT", nil))
}

func b2b(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(append(b, typ...), data...)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	return binary.BigEndian.AppendUint32(b, crc.Sum32())
}

// pngFile is a PNG of ihdr's data and the chunks, then IEND.
func pngFile(ihdr []byte, chunks ...[]byte) []byte {
	b := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	for _, c := range chunks {
		b = append(b, c...)
	}
	return append(b, pngChunk("IEND", nil)...)
}

// withChunk inserts a chunk after a PNG's IHDR.
func withChunk(in []byte, c []byte) []byte {
	return append(append(append([]byte(nil), in[:33]...), c...), in[33:]...)
}

// adam7 writes a w×h PNG, interlaced, of colour type ctype and bit depth
// depth (whole bytes per pixel) whose pixels px gives.
func adam7(t *testing.T, w, h int, depth, ctype byte, px func(x, y int) []byte) []byte {
	t.Helper()
	var raw bytes.Buffer
	for _, p := range [][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}} {
		if p[0] >= w || p[1] >= h {
			continue
		}
		for y := p[1]; y < h; y += p[3] {
			raw.WriteByte(0) // no filter
			for x := p[0]; x < w; x += p[2] {
				raw.Write(px(x, y))
			}
		}
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, depth, ctype, 0, 0, 1)
	return pngFile(ihdr, pngChunk("IDAT", z.Bytes()))
}

func encoded(t *testing.T, enc func(*bytes.Buffer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// costInputs are inputs of every decoded type, big enough (about a
// megapixel) for their pixels to outweigh the decoders' fixed state, and
// the small files of the standard library's and x/image's test data that
// Go cannot write (progressive, CMYK and RGB JPEGs; lossy WebP, with
// alpha), where they are found.
func costInputs(t *testing.T) map[string][]byte {
	const w, h = 1200, 800
	grad := func(m interface{ Set(x, y int, c color.Color) }, alpha bool) {
		for y := range h {
			for x := range w {
				a := uint8(255)
				if alpha {
					a = uint8(x)
				}
				m.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), a})
			}
		}
	}
	rgba, nrgba := image.NewRGBA(image.Rect(0, 0, w, h)), image.NewNRGBA(image.Rect(0, 0, w, h))
	gray, gray16 := image.NewGray(image.Rect(0, 0, w, h)), image.NewGray16(image.Rect(0, 0, w, h))
	rgba64, nrgba64 := image.NewRGBA64(image.Rect(0, 0, w, h)), image.NewNRGBA64(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	for _, m := range []interface{ Set(x, y int, c color.Color) }{rgba, gray, gray16, rgba64, pal} {
		grad(m, false)
	}
	grad(nrgba, true)
	grad(nrgba64, true)
	pngOf := func(m image.Image) []byte { return encoded(t, func(b *bytes.Buffer) error { return png.Encode(b, m) }) }
	in := map[string][]byte{
		"png rgb":     pngOf(rgba),
		"png rgba":    pngOf(nrgba),
		"png gray":    pngOf(gray),
		"png gray16":  pngOf(gray16),
		"png rgb16":   pngOf(rgba64),
		"png rgba16":  pngOf(nrgba64),
		"png palette": pngOf(pal),
		// A tRNS chunk makes grey decode to NRGBA, 16-bit grey to NRGBA64.
		"png gray trns":       withChunk(pngOf(gray), pngChunk("tRNS", []byte{0, 7})),
		"png gray16 trns":     withChunk(pngOf(gray16), pngChunk("tRNS", []byte{0, 7})),
		"png gray interlaced": adam7(t, w, h, 8, 0, func(x, y int) []byte { return []byte{uint8(x + y)} }),
		"png rgba16 interlaced": adam7(t, w, h, 16, 6, func(x, y int) []byte {
			return []byte{uint8(x), 0, uint8(y), 0, 9, 9, uint8(x), 0xff}
		}),
		"jpeg 420":  encoded(t, func(b *bytes.Buffer) error { return jpeg.Encode(b, rgba, nil) }),
		"jpeg gray": encoded(t, func(b *bytes.Buffer) error { return jpeg.Encode(b, gray, nil) }),
		"gif":       encoded(t, func(b *bytes.Buffer) error { return gif.Encode(b, pal, nil) }),
		"webp lossless": func() []byte {
			b, err := os.ReadFile("testdata/sample.webp")
			if err != nil {
				t.Fatal(err)
			}
			return b
		}(),
	}
	goDir := func(args ...string) string {
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	found := 0
	for dir, pattern := range map[string]string{
		filepath.Join(goDir("env", "GOROOT"), "src/image/testdata"):                            "video-001*.jpeg",
		filepath.Join(goDir("list", "-m", "-f", "{{.Dir}}", "golang.org/x/image"), "testdata"): "*.webp",
	} {
		names, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			in[filepath.Base(name)] = b
			found++
		}
	}
	if found == 0 {
		t.Log("no JPEG or WebP test data of the standard library or x/image found; checked the generated inputs only")
	}
	return in
}

// raceEnabled is set under the race detector (race_internal_test.go).
var raceEnabled bool

// The cost predicted from a header covers what decoding and scaling
// allocate. Not parallel, so that the allocation counts are this test's own.
func TestCostCoversAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations (sync.Pool drops what it is given at random)")
	}
	h := &handler{cfg: Config{}.withDefaults(), mode: modeThumbnail}
	var ms runtime.MemStats
	allocated := func(f func()) int64 {
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		f()
		runtime.ReadMemStats(&ms)
		return int64(ms.TotalAlloc - before)
	}
	for name, in := range costInputs(t) {
		f, c, err := h.header(in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		d := f.cost(in, c)
		var img image.Image
		got := allocated(func() { img, err = h.decode(f, in, image.Rect(0, 0, c.Width, c.Height)) })
		if err != nil {
			if strings.Contains(name, "video-001") || strings.HasSuffix(name, ".webp") {
				continue // test data of a kind the decoders refuse on purpose
			}
			t.Errorf("%s: %v", name, err)
			continue
		}
		if direct(img) != d.direct {
			t.Errorf("%s: decoded %T; predicted direct = %v", name, img, d.direct)
		}
		// The decoders' fixed state (under 100 KB) is in jobOverhead.
		if got > d.bytes+128<<10 {
			t.Errorf("%s (%T %v): decoding allocated %d bytes, predicted %d", name, img, img.Bounds().Size(), got, d.bytes)
		}

		// Scaling, in bands of the real size and of small ones (many
		// bands, a short last one): everything scaleBanded allocates.
		sr := img.Bounds()
		for _, size := range [][2]int{{sr.Dx() / 7, sr.Dy() / 5}, {sr.Dx() * 2, sr.Dy() / 3}, {sr.Dx() / 3, sr.Dy() * 2}} {
			w, hh := max(size[0], 1), max(size[1], 1)
			for _, cells := range []int{tmpCells, 10007} {
				got := allocated(func() { scaleBanded(img, sr, w, hh, false, cells) })
				// A scaler keeps its buffer in a sync.Pool, which may
				// make it again, rarely (the goroutine moved to another P
				// between two bands): allow one more.
				want := scaleCost(sr.Dx(), sr.Dy(), w, hh, d.direct, cells)
				if got > want+32*int64(cells) {
					t.Errorf("%s: scaling %v to %d×%d in bands of %d cells allocated %d bytes, predicted %d", name, sr.Size(), w, hh, cells, got, want)
				}
			}
		}
		t.Logf("%-28s %-16T decode: %9d allocated, %9d predicted", name, img, got, d.bytes)
	}
}

// FuzzPlan: the header readers behind plan take any input without
// panicking, and for an input that decodes, the prediction covers the
// decoded image and names its kind right.
func FuzzPlan(f *testing.F) {
	for _, name := range []string{"sample.jpg", "sample.png", "sample.gif", "sample.webp", "truncated.jpg", "bomb.png"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(pngHeader(10, 10, 16, 0, true))
	h := &handler{cfg: Config{MaxPixels: 1 << 16}.withDefaults(), mode: modeThumbnail, mem: newBudget(-1)}
	f.Fuzz(func(t *testing.T, in []byte) {
		pl, err := h.plan(in, &payload{Width: 16, Fit: "inside"})
		if err != nil {
			return
		}
		img, err := h.decode(pl.f, in, pl.canvas)
		if err != nil {
			return
		}
		_, c, _ := h.header(in)
		d := pl.f.cost(in, c)
		if direct(img) != d.direct {
			t.Errorf("decoded %T; predicted direct = %v", img, d.direct)
		}
		if n := pixBytes(img); n > d.bytes {
			t.Errorf("decoded %T of %d bytes; predicted %d", img, n, d.bytes)
		}
	})
}

// pixBytes is the size of img's pixel buffers.
func pixBytes(img image.Image) int64 {
	switch m := img.(type) {
	case *image.RGBA:
		return int64(cap(m.Pix))
	case *image.NRGBA:
		return int64(cap(m.Pix))
	case *image.RGBA64:
		return int64(cap(m.Pix))
	case *image.NRGBA64:
		return int64(cap(m.Pix))
	case *image.Gray:
		return int64(cap(m.Pix))
	case *image.Gray16:
		return int64(cap(m.Pix))
	case *image.Paletted:
		return int64(cap(m.Pix))
	case *image.CMYK:
		return int64(cap(m.Pix))
	case *image.YCbCr:
		return int64(cap(m.Y) + cap(m.Cb) + cap(m.Cr))
	case *image.NYCbCrA:
		return int64(cap(m.Y) + cap(m.Cb) + cap(m.Cr) + cap(m.A))
	}
	return 0
}
