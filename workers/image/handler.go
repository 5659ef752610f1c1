package image

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"

	"github.com/warrenhq/warren/jobs"
)

type mode int

const (
	modeThumbnail mode = iota
	modeResize
)

type handler struct {
	cfg  Config
	mode mode
	// mem is the memory budget, shared by the handlers of one Register
	// call; nil means none.
	mem *budget

	// acquired, if set (tests), is called when a job has its share of mem,
	// before it decodes.
	acquired func()
}

type payload struct {
	URL     string  `json:"url"`
	Data    *string `json:"data"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	Fit     string  `json:"fit"`
	Format  string  `json:"format"`
	Quality int     `json:"quality"`
}

const maxSide = 10000

// maxInputSide bounds an input's longer side whatever MaxPixels allows, so
// that one band of the scaler (a row or column of the other side) stays
// small; see scale.
const maxInputSide = 100_000

// check repeats what the schema says, for jobs that reached the queue
// without passing the API.
func (p *payload) check(m mode) error {
	p.Fit = cmp.Or(p.Fit, "inside")
	p.Format = cmp.Or(p.Format, "jpeg")
	p.Quality = cmp.Or(p.Quality, 85)
	switch {
	case (p.URL == "") == (p.Data == nil):
		return errors.New("want exactly one of url and data")
	case p.Width == 0 && p.Height == 0:
		return errors.New("want width, height or both")
	case p.Width < 0 || p.Width > maxSide || p.Height < 0 || p.Height > maxSide:
		return fmt.Errorf("width and height must be 1 to %d", maxSide)
	case p.Fit != "inside" && p.Fit != "cover" || m == modeResize && p.Fit != "inside":
		return fmt.Errorf("fit %q: want inside or cover (thumbnail only)", p.Fit)
	case p.Format != "jpeg" && p.Format != "png":
		return fmt.Errorf("format %q: want jpeg or png", p.Format)
	case p.Quality < 1 || p.Quality > 100:
		return fmt.Errorf("quality %d: want 1 to 100", p.Quality)
	}
	return nil
}

// run makes the job's image, returned as a jobs.Output. Registered through
// jobs.Typed, whose payload that does not decode fails the job with
// CodeBadPayload, permanently.
func (h *handler) run(ctx context.Context, j *jobs.Job, p payload) (any, error) {
	if err := p.check(h.mode); err != nil {
		return nil, permanent(CodeBadPayload, "%s: %w", j.Type, err)
	}

	in, err := h.input(ctx, &p)
	if err != nil {
		return nil, err
	}
	pl, err := h.plan(in, &p)
	if err != nil {
		return nil, err
	}
	if err := h.mem.acquire(ctx, pl.need); err != nil {
		return nil, fmt.Errorf("wait for %d bytes of the memory budget: %w", pl.need, err)
	}
	defer h.mem.release(pl.need)
	if h.acquired != nil {
		h.acquired()
	}

	src, err := h.decode(pl.f, in, pl.canvas)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, hgt := pl.w, pl.h
	dst := scale(src, pl.src, w, hgt, p.Format == "jpeg")
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out, ctype, err := h.encode(dst, p.Format, p.Quality)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(out)
	return jobs.Output{
		Result: Result{
			Width: w, Height: hgt, Bytes: len(out), Format: p.Format,
			SHA256: hex.EncodeToString(sum[:]),
		},
		Artifact: &jobs.Artifact{ContentType: ctype, Data: out},
	}, nil
}

// A plan is what a job will do, known from its input's header before
// anything is decoded.
type plan struct {
	f *format
	// canvas is the image as its header declares it; src the part of it
	// to scale to w×h.
	canvas, src image.Rectangle
	w, h        int
	// need is what the job will allocate (see cost).
	need int64
}

// plan reads in's header and works out the output's geometry and the
// memory the job needs, refusing inputs, outputs and needs over the limits.
// The geometry comes from the header, not the decoded image, so that the
// need is known before decoding: the two have the same bounds but for a GIF
// whose first frame covers part of its screen, and there the rest of the
// screen is transparent, as a browser shows it.
func (h *handler) plan(in []byte, p *payload) (plan, error) {
	f, c, err := h.header(in)
	if err != nil {
		return plan{}, err
	}
	pl := plan{f: f, canvas: image.Rect(0, 0, c.Width, c.Height)}
	pl.src, pl.w, pl.h = h.geometry(pl.canvas, p)
	if int64(pl.w)*int64(pl.h) > h.cfg.MaxPixels {
		return plan{}, permanent(CodeTooManyPixels, "output %d×%d is over the limit of %d pixels", pl.w, pl.h, h.cfg.MaxPixels)
	}
	pl.need = h.cost(f, in, c, pl.src, pl.w, pl.h)
	if !h.mem.fits(pl.need) {
		return plan{}, permanent(CodeTooLargeForMemory, "%s %d×%d to %d×%d needs about %d bytes, over the memory budget of %d",
			f.name, c.Width, c.Height, pl.w, pl.h, pl.need, h.mem.size)
	}
	return pl, nil
}

// input reads the encoded image from the payload's data or url, at most
// MaxInputBytes of it.
func (h *handler) input(ctx context.Context, p *payload) ([]byte, error) {
	if p.Data != nil {
		// Base64 takes 4 characters for 3 bytes; don't even start on a
		// string that cannot decode to within the limit.
		if int64(len(*p.Data)) > (h.cfg.MaxInputBytes+3)/3*4+4 {
			return nil, permanent(CodeTooLarge, "data is over the limit of %d bytes", h.cfg.MaxInputBytes)
		}
		b, err := h.readLimited(base64.NewDecoder(base64.StdEncoding, strings.NewReader(*p.Data)), "data")
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, permanent(CodeBadPayload, "data: not base64: %w", err)
		}
		return b, err
	}
	return h.fetch(ctx, p.URL)
}

func (h *handler) readLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, h.cfg.MaxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > h.cfg.MaxInputBytes {
		return nil, permanent(CodeTooLarge, "%s is over the limit of %d bytes", what, h.cfg.MaxInputBytes)
	}
	return b, nil
}

func (h *handler) fetch(ctx context.Context, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, permanent(CodeBadPayload, "url: want an http or https URL")
	}
	if h.cfg.Client == nil {
		return nil, coded(CodeRefusedTarget, false, errNoClient)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, permanent(CodeBadPayload, "url: %w", err)
	}
	req.Header.Set("Accept", "image/jpeg, image/png, image/gif, image/webp")
	resp, err := h.cfg.Client.Do(req)
	switch {
	case err != nil && h.cfg.Refused(err):
		return nil, coded(CodeRefusedTarget, false, fmt.Errorf("fetch %s: %w", u.Redacted(), err))
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, coded(CodeFetch, true, fmt.Errorf("fetch %s: %w", u.Redacted(), err))
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		err := fmt.Errorf("fetch %s: %s", u.Redacted(), resp.Status)
		switch sc := resp.StatusCode; {
		case sc == http.StatusTooManyRequests || sc == http.StatusServiceUnavailable:
			if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return nil, jobs.RetryAfter(coded(CodeFetch, true, err), d)
			}
			return nil, coded(CodeFetch, true, err)
		case sc >= 500 || sc == http.StatusRequestTimeout:
			return nil, coded(CodeFetch, true, err)
		default: // other 4xx, and 1xx/3xx the client did not follow
			return nil, coded(CodeFetch, false, err)
		}
	}
	if resp.ContentLength > h.cfg.MaxInputBytes {
		return nil, permanent(CodeTooLarge, "fetch %s: %d bytes is over the limit of %d", u.Redacted(), resp.ContentLength, h.cfg.MaxInputBytes)
	}
	b, err := h.readLimited(resp.Body, "response")
	if err != nil && !jobs.IsPermanent(err) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, coded(CodeFetch, true, fmt.Errorf("fetch %s: %w", u.Redacted(), err))
	}
	return b, err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 24*3600)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// A format is an input format, recognised by its leading bytes. The table
// is explicit, rather than image.Decode's registry, so the pool accepts these
// four and no others whatever else the binary registers.
type format struct {
	name   string
	match  func([]byte) bool
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
	// cost predicts what decode allocates for an input whose config is c.
	cost func(in []byte, c image.Config) decodeCost
}

var formats = []format{
	{"jpeg", prefix("\xff\xd8"), jpeg.DecodeConfig, jpeg.Decode, jpegCost},
	{"png", prefix("\x89PNG\r\n\x1a\n"), png.DecodeConfig, png.Decode, pngCost},
	// gif.Decode returns the first frame only.
	{"gif", prefix("GIF87a", "GIF89a"), gif.DecodeConfig, gif.Decode, gifCost},
	{"webp", isWebP, webp.DecodeConfig, webp.Decode, webpCost},
}

func prefix(magic ...string) func([]byte) bool {
	return func(b []byte) bool {
		for _, m := range magic {
			if bytes.HasPrefix(b, []byte(m)) {
				return true
			}
		}
		return false
	}
}

// isWebP matches a RIFF container of form WEBP.
func isWebP(b []byte) bool {
	return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
}

// header recognises in's format and reads the dimensions its header
// declares, refusing a decompression bomb before its pixels are allocated.
func (h *handler) header(in []byte) (f *format, c image.Config, err error) {
	for i := range formats {
		if formats[i].match(in) {
			f = &formats[i]
			break
		}
	}
	if f == nil {
		return nil, c, permanent(CodeBadImage, "input is not JPEG, PNG, GIF or WebP")
	}
	// Decoders of untrusted input have panicked on crafted files before; a
	// file that makes one panic is a bad image, not a reason to retry.
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, permanent(CodeBadImage, "decode %s header: decoder failed: %v", f.name, r)
		}
	}()
	c, err = f.config(bytes.NewReader(in))
	if err != nil {
		return nil, c, permanent(CodeBadImage, "decode %s header: %w", f.name, err)
	}
	if c.Width <= 0 || c.Height <= 0 {
		return nil, c, permanent(CodeBadImage, "decode %s header: empty image %d×%d", f.name, c.Width, c.Height)
	}
	if int64(c.Width)*int64(c.Height) > h.cfg.MaxPixels || max(c.Width, c.Height) > maxInputSide {
		return nil, c, permanent(CodeTooManyPixels, "input %d×%d is over the limit of %d pixels (and %d a side)", c.Width, c.Height, h.cfg.MaxPixels, maxInputSide)
	}
	return f, c, nil
}

// decode decodes in, whose header declared canvas.
func (h *handler) decode(f *format, in []byte, canvas image.Rectangle) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, permanent(CodeBadImage, "decode %s: decoder failed: %v", f.name, r)
		}
	}()
	img, err = f.decode(bytes.NewReader(in))
	if err != nil {
		return nil, permanent(CodeBadImage, "decode %s: %w", f.name, err)
	}
	if b := img.Bounds(); b.Empty() || !b.In(canvas) {
		return nil, permanent(CodeBadImage, "decode %s: bounds %v disagree with the header", f.name, b)
	}
	return img, nil
}

// geometry returns the part of the source to use and the output size.
func (h *handler) geometry(b image.Rectangle, p *payload) (src image.Rectangle, w, hgt int) {
	sw, sh := float64(b.Dx()), float64(b.Dy())
	bw, bh := float64(p.Width), float64(p.Height)
	switch {
	case h.mode == modeResize && p.Width > 0 && p.Height > 0:
		return b, p.Width, p.Height
	case h.mode == modeResize && p.Width > 0:
		return b, p.Width, side(sh * bw / sw)
	case h.mode == modeResize:
		return b, side(sw * bh / sh), p.Height
	}

	// Thumbnail: a missing side does not bound; never enlarge.
	if p.Width == 0 {
		bw = math.Inf(1)
	}
	if p.Height == 0 {
		bh = math.Inf(1)
	}
	if p.Fit == "inside" || p.Width == 0 || p.Height == 0 {
		f := min(bw/sw, bh/sh, 1)
		return b, side(sw * f), side(sh * f)
	}
	// Cover: scale so the image fills the box, then crop the overflow,
	// centred. Cropping is done on the source rectangle, so only the kept
	// part is scaled.
	f := min(max(bw/sw, bh/sh), 1)
	w, hgt = side(min(bw, sw*f)), side(min(bh, sh*f))
	cw, ch := min(sw, float64(w)/f), min(sh, float64(hgt)/f)
	x0 := b.Min.X + int(math.Round((sw-cw)/2))
	y0 := b.Min.Y + int(math.Round((sh-ch)/2))
	return image.Rect(x0, y0, x0+max(1, int(math.Round(cw))), y0+max(1, int(math.Round(ch)))), w, hgt
}

// side rounds a computed side to a whole pixel, at least 1. Values are
// capped well below overflow; the pixel limit refuses what is still too big.
func side(v float64) int { return int(min(max(math.Round(v), 1), 1e9)) }

// scale draws the src rectangle of img into a new w×h image. For JPEG,
// which has no alpha, transparency is composited over white.
//
// It uses Catmull-Rom throughout: x/image/draw widens the kernel with the
// scale factor, so big downscales are properly filtered (ApproxBiLinear
// samples four pixels and aliases, moiré on fine detail), and its cost grows
// with the source's pixels, not with the ratio.
//
// One Kernel.Scale call keeps a float64 buffer of 32 bytes per cell of
// (output width × source height): for a 36 MP photo scaled to 3000 wide
// that is over 500 MiB, and unbounded for tall inputs. So the two passes are
// done separately, each in bands that keep that buffer near tmpCells, with
// an 8-bit intermediate image between them; the pass order is the one whose
// intermediate is smaller, which is never more than MaxPixels (the product
// of the two candidates is input pixels × output pixels).
func scale(img image.Image, sr image.Rectangle, w, h int, opaque bool) *image.RGBA {
	return scaleBanded(img, sr, w, h, opaque, tmpCells)
}

// scaleBanded is scale in bands of at most about cells cells. scaleCost
// (memory.go) predicts what it allocates: change them together.
func scaleBanded(img image.Image, sr image.Rectangle, w, h int, opaque bool, cells int) *image.RGBA {
	if !direct(img) {
		// Paletted (GIF), CMYK (some JPEGs), 16-bit PNGs, WebP with alpha:
		// convert once with the standard library rather than make the
		// kernel call At for every tap. Where sr reaches outside img (a GIF
		// frame smaller than its screen) the copy stays transparent.
		rgba := image.NewRGBA(sr)
		draw.Draw(rgba, sr, img, sr.Min, draw.Src)
		img = rgba
	}
	sw, sh := sr.Dx(), sr.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	var s1, s2 bandScaler
	if widthsFirst(sw, sh, w, h) {
		// Widths first: sw×sh → w×sh → w×h.
		mid := image.NewRGBA(image.Rect(0, 0, w, sh))
		bands(sh, w, cells, func(a, b int) {
			s1.scale(mid, image.Rect(0, a, w, b), img, image.Rect(sr.Min.X, sr.Min.Y+a, sr.Max.X, sr.Min.Y+b))
		})
		bands(w, sh, cells, func(a, b int) {
			s2.scale(dst, image.Rect(a, 0, b, h), mid, image.Rect(a, 0, b, sh))
		})
	} else {
		// Heights first: sw×sh → sw×h → w×h.
		mid := image.NewRGBA(image.Rect(0, 0, sw, h))
		bands(sw, sh, cells, func(a, b int) {
			s1.scale(mid, image.Rect(a, 0, b, h), img, image.Rect(sr.Min.X+a, sr.Min.Y, sr.Min.X+b, sr.Max.Y))
		})
		bands(h, sw, cells, func(a, b int) {
			s2.scale(dst, image.Rect(0, a, w, b), mid, image.Rect(0, a, sw, b))
		})
	}
	if opaque {
		// Over white, in premultiplied RGBA: c + (255 − α).
		for i := 0; i < len(dst.Pix); i += 4 {
			t := 255 - dst.Pix[i+3]
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = dst.Pix[i]+t, dst.Pix[i+1]+t, dst.Pix[i+2]+t, 255
		}
	}
	return dst
}

// A bandScaler scales the bands of one pass. The bands are the same size,
// so they share a draw.Scaler, which computes its weights once and reuses
// its buffer; a Kernel.Scale call per band would make both anew each time,
// and leave the garbage collector a buffer per band.
type bandScaler struct {
	size [4]int // dst width and height, src width and height
	sc   draw.Scaler
}

func (s *bandScaler) scale(dst *image.RGBA, dr image.Rectangle, src image.Image, sr image.Rectangle) {
	if size := [4]int{dr.Dx(), dr.Dy(), sr.Dx(), sr.Dy()}; s.sc == nil || size != s.size {
		s.size, s.sc = size, draw.CatmullRom.NewScaler(size[0], size[1], size[2], size[3])
	}
	s.sc.Scale(dst, dr, src, sr, draw.Src, nil)
}

// widthsFirst reports whether scaling sw×sh to w×h does the widths first:
// whichever order makes the smaller intermediate image.
func widthsFirst(sw, sh, w, h int) bool { return int64(w)*int64(sh) <= int64(sw)*int64(h) }

// tmpCells bounds the scaler's buffer per call: 32 MiB.
const tmpCells = 1 << 20

// bands calls f for runs [a, b) covering 0..n, all bandLen long: where n
// is not a multiple of it, the last run overlaps the one before, so that
// one scaler (and one buffer) serves them all. In the scaling direction's
// perpendicular a band is scaled 1:1, which Catmull-Rom reproduces exactly
// (its weights at whole offsets are 1, 0, 0), so bands join without seams
// and a pixel scaled twice comes out the same both times.
func bands(n, other, cells int, f func(a, b int)) {
	step := bandLen(n, other, cells)
	for a := 0; a < n; a += step {
		a = min(a, n-step)
		f(a, a+step)
	}
}

// bandLen is the length of the bands along a side of n whose other side is
// other: at most cells/other (at least 1), and as even as the number of
// bands allows, so that the last overlaps the others little.
func bandLen(n, other, cells int) int {
	step := max(1, cells/other)
	if step >= n {
		return n
	}
	k := (n + step - 1) / step
	return (n + k - 1) / k
}

// errOutputLimit stops an encoder that has written too much.
var errOutputLimit = errors.New("output limit reached")

type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errOutputLimit
	}
	return b.Buffer.Write(p)
}

func (h *handler) encode(img *image.RGBA, format string, quality int) ([]byte, string, error) {
	out := &limitedBuffer{max: h.cfg.MaxOutputBytes}
	var err error
	ctype := "image/" + format
	switch format {
	case "png":
		err = (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(out, img)
	default:
		err = jpeg.Encode(out, img, &jpeg.Options{Quality: quality})
	}
	switch {
	case errors.Is(err, errOutputLimit):
		return nil, "", permanent(CodeOutputTooLarge, "encoded %s is over the limit of %d bytes", format, h.cfg.MaxOutputBytes)
	case err != nil:
		// Encoding an in-memory RGBA image fails only on a writer error;
		// nothing a retry would change.
		return nil, "", permanent("encode", "encode %s: %w", format, err)
	}
	return out.Bytes(), ctype, nil
}
