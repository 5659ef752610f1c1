package image

import (
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"runtime"
	"sync"
)

// A job's memory is predicted from its input's header, before anything is
// decoded: the decoded image and the decoder's working copies (decodeCost),
// the scaler's copies (scaleCost) and the encoder's output (encodeCost).
// Bytes that are garbage before the job ends (a progressive JPEG's
// coefficients, an interlaced PNG's passes) are counted as if they lived to
// the end: the garbage collector frees them when it next runs, not when they
// become garbage. Outside the prediction are the input, read before the job
// takes its share of the budget, and the output once the job has given its
// share back (the runtime holds it until it is stored): each is bounded by
// its own limit, MaxInputBytes and MaxOutputBytes.

// jobOverhead is what a job allocates whatever its size: the decoders' and
// encoders' state (Huffman tables, zlib's window and hash chains, read
// buffers).
const jobOverhead = 2 << 20

// A decodeCost is what decoding one input allocates, predicted from its
// header.
type decodeCost struct {
	// bytes is the decoded image and the decoder's working copies.
	bytes int64
	// direct says the decoded image is of a type the scaler reads as it is
	// (see direct); otherwise scale copies it to RGBA first.
	direct bool
}

// direct reports whether scale reads img as it is: x/image/draw has fast
// paths for these types (YCbCr with chroma halved or whole). Others are
// copied to RGBA once.
func direct(img image.Image) bool {
	switch m := img.(type) {
	case *image.RGBA, *image.NRGBA, *image.Gray:
		return true
	case *image.YCbCr:
		return m.SubsampleRatio != image.YCbCrSubsampleRatio411 && m.SubsampleRatio != image.YCbCrSubsampleRatio410
	}
	return false
}

// cost predicts what one job allocates: decoding the input whose header is
// c, scaling its part sr to w×h and encoding the result.
func (h *handler) cost(f *format, in []byte, c image.Config, sr image.Rectangle, w, hgt int) int64 {
	d := f.cost(in, c)
	return jobOverhead + d.bytes + scaleCost(sr.Dx(), sr.Dy(), w, hgt, d.direct, tmpCells) + encodeCost(w, hgt, h.cfg.MaxOutputBytes)
}

// pngCost: the image of the type the colour type and bit depth decode to
// (a tRNS chunk turns grey and truecolour into NRGBA or NRGBA64), twice if
// interlaced (each of the seven passes is decoded into an image of its own
// and then copied in), and two rows.
func pngCost(in []byte, c image.Config) decodeCost {
	w, h := int64(c.Width), int64(c.Height)
	rows := 2 * (8*w + 1)
	// IHDR is the first chunk (DecodeConfig checked), so its fields are at
	// fixed offsets.
	if len(in) < 33 || string(in[12:16]) != "IHDR" {
		return decodeCost{2*8*w*h + rows, false}
	}
	depth, ctype, interlaced := in[24], in[25], in[28] != 0
	trns := pngTRNS(in[33:])
	var bpp int64
	isDirect := true
	switch {
	case ctype == 3: // paletted
		bpp, isDirect = 1, false
	case ctype == 0 && depth <= 8 && !trns: // Gray
		bpp = 1
	case depth <= 8: // RGBA or NRGBA
		bpp = 4
	case ctype == 0 && !trns: // Gray16
		bpp, isDirect = 2, false
	default: // RGBA64 or NRGBA64
		bpp, isDirect = 8, false
	}
	n := bpp * w * h
	if interlaced {
		n *= 2
	}
	return decodeCost{n + rows, isDirect}
}

// pngTRNS reports whether the chunks b begins with have a tRNS before the
// first IDAT. A list it cannot follow counts as yes: the larger estimate.
func pngTRNS(b []byte) bool {
	for len(b) >= 8 {
		switch string(b[4:8]) {
		case "tRNS":
			return true
		case "IDAT":
			return false
		}
		n := uint64(binary.BigEndian.Uint32(b)) + 12 // length, type, data, CRC
		if n > uint64(len(b)) {
			return true
		}
		b = b[n:]
	}
	return true
}

// jpegCost: the component planes as the decoder allocates them (whole
// MCUs), an int32 coefficient per sample more for a progressive image
// (kept between scans), and a 4-byte-per-pixel copy for RGB and CMYK
// images.
func jpegCost(in []byte, c image.Config) decodeCost {
	w, h := int64(c.Width), int64(c.Height)
	comps, extra, isDirect := 3, int64(0), true
	switch c.ColorModel {
	case color.GrayModel:
		comps = 1
	case color.RGBAModel:
		extra = 4 * w * h
	case color.CMYKModel:
		comps, extra, isDirect = 4, 4*w*h, false
	}
	fr, ok := jpegFrameOf(in)
	if !ok || len(fr.sampling) != comps {
		// The largest: progressive, full-resolution components in the
		// largest MCU.
		fr = jpegFrame{progressive: true}
		for range comps {
			fr.sampling = append(fr.sampling, [2]int{4, 2})
		}
		isDirect = isDirect && comps == 1
	} else if c.ColorModel == color.YCbCrModel {
		// 4:1:1 and 4:1:0 are copied to RGBA (see direct).
		isDirect = fr.sampling[0][0]/fr.sampling[1][0] <= 2
	}
	hmax, vmax := int64(1), int64(1)
	for _, s := range fr.sampling {
		hmax, vmax = max(hmax, int64(s[0])), max(vmax, int64(s[1]))
	}
	mxx, myy := (w+8*hmax-1)/(8*hmax), (h+8*vmax-1)/(8*vmax)
	var planes int64
	for _, s := range fr.sampling {
		planes += 8 * int64(s[0]) * mxx * 8 * int64(s[1]) * myy
	}
	n := planes + extra
	if fr.progressive {
		n += 4 * planes
	}
	return decodeCost{n, isDirect}
}

// A jpegFrame is what a JPEG's frame header says about memory.
type jpegFrame struct {
	progressive bool
	// sampling is each component's horizontal and vertical sampling
	// factor; (1, 1) for a greyscale image, as the decoder takes it.
	sampling [][2]int
}

// jpegFrameOf finds the frame header (SOF0, SOF1 or SOF2) the way
// image/jpeg does: markers in order, extraneous bytes and fill bytes
// skipped, each segment skipped by its length. ok is false if there is none
// before the first scan.
func jpegFrameOf(in []byte) (fr jpegFrame, ok bool) {
	i := 2 // after SOI
	for {
		if i+2 > len(in) {
			return fr, false
		}
		a, m := in[i], in[i+1]
		i += 2
		for a != 0xff {
			if i >= len(in) {
				return fr, false
			}
			a, m = m, in[i]
			i++
		}
		if m == 0 {
			continue
		}
		for m == 0xff {
			if i >= len(in) {
				return fr, false
			}
			m = in[i]
			i++
		}
		switch {
		case m == 0xd9 || m == 0xda: // EOI, SOS
			return fr, false
		case 0xd0 <= m && m <= 0xd7: // RSTn
			continue
		}
		if i+2 > len(in) {
			return fr, false
		}
		n := int(in[i])<<8 | int(in[i+1]) - 2
		i += 2
		if n < 0 || i+n > len(in) {
			return fr, false
		}
		if m == 0xc0 || m == 0xc1 || m == 0xc2 {
			seg := in[i : i+n]
			if n < 6 || n != 6+3*int(seg[5]) {
				return fr, false
			}
			fr.progressive = m == 0xc2
			for k := range int(seg[5]) {
				hv := seg[6+3*k+1]
				s := [2]int{int(hv >> 4), int(hv & 0x0f)}
				if seg[5] == 1 {
					s = [2]int{1, 1}
				}
				if s[0] < 1 || s[0] > 4 || s[1] < 1 || s[1] > 4 {
					return fr, false
				}
				fr.sampling = append(fr.sampling, s)
			}
			return fr, true
		}
		i += n
	}
}

// gifCost: the first frame, and a copy of it if it is interlaced.
func gifCost(_ []byte, c image.Config) decodeCost {
	return decodeCost{2 * int64(c.Width) * int64(c.Height), false}
}

// webpCost: lossy (VP8) decodes to YCbCr 4:2:0 in whole macroblocks, with
// an alpha plane if an ALPH chunk comes first (itself decoded as a lossless
// image when compressed); lossless (VP8L) to NRGBA, with a second copy of
// the pixels when a colour-indexing transform unpacks them and the
// transforms' own images. A file whose chunks cannot be followed is given
// the largest.
func webpCost(in []byte, c image.Config) decodeCost {
	w, h := int64(c.Width), int64(c.Height)
	pw, ph := (w+15)/16*16, (h+15)/16*16
	lossy := pw*ph + 2*(pw/2)*(ph/2)
	lossless := 9 * w * h
	alpha := int64(-1)
	b := in[min(12, len(in)):] // after "RIFF", the size and "WEBP"
	for len(b) >= 8 {
		n := uint64(binary.LittleEndian.Uint32(b[4:8]))
		switch string(b[:4]) {
		case "VP8 ":
			if alpha >= 0 {
				return decodeCost{lossy + alpha, false} // NYCbCrA
			}
			return decodeCost{lossy, true}
		case "VP8L":
			return decodeCost{lossless, true}
		case "ALPH":
			alpha = w*h + lossless
			if n > 0 && len(b) > 8 && b[8]&0x03 == 0 {
				alpha = w * h // uncompressed
			}
		}
		if n += 8 + n&1; n > uint64(len(b)) {
			break // to the largest
		}
		b = b[n:]
	}
	return decodeCost{lossy + w*h + lossless, false}
}

// scaleCost is what scaleBanded allocates for sw×sh → w×h: the RGBA copy of
// a source it cannot read directly, the intermediate and the output images,
// and each pass's scaler (see passCost).
func scaleCost(sw, sh, w, h int, isDirect bool, cells int) int64 {
	var n int64
	if !isDirect {
		n += 4 * int64(sw) * int64(sh)
	}
	n += 4 * int64(w) * int64(h)
	// The shapes are scaleBanded's: r is a band's rows or columns.
	if widthsFirst(sw, sh, w, h) {
		n += 4 * int64(w) * int64(sh)
		n += passCost(sh, w, cells, func(r int) [4]int { return [4]int{w, r, sw, r} })
		n += passCost(w, sh, cells, func(r int) [4]int { return [4]int{r, h, r, sh} })
	} else {
		n += 4 * int64(sw) * int64(h)
		n += passCost(sw, sh, cells, func(r int) [4]int { return [4]int{r, h, r, sh} })
		n += passCost(h, sw, cells, func(r int) [4]int { return [4]int{w, r, sw, r} })
	}
	return n
}

// passCost is what the scaler of a pass banded along a side of n
// allocates (bands as bands makes them; shape gives a band's destination
// width and height and source width and height): a buffer of 32 bytes per
// cell of destination width × source height, and weights: per side, a
// source range per destination pixel and about four weights per pixel of
// the larger of destination and source, under 96 bytes per pixel of the
// four sides.
func passCost(n, other, cells int, shape func(r int) [4]int) int64 {
	s := shape(bandLen(n, other, cells))
	return 32*int64(s[0])*int64(s[3]) + 96*int64(s[0]+s[1]+s[2]+s[3])
}

// encodeCost is what encoding a w×h image allocates: the output buffer,
// which grows by doubling up to twice the output, at most MaxOutputBytes,
// and the PNG encoder's six rows.
func encodeCost(w, h, maxOutput int) int64 {
	out := min(int64(maxOutput), 5*int64(w)*int64(h)+64<<10)
	return 2*out + 6*(4*int64(w)+1)
}

// A budget is a number of bytes that concurrent jobs take shares of and
// give back: a weighted semaphore. Waiters are served in order, so a large
// job is not passed over forever by smaller ones behind it. A nil *budget
// is unlimited.
type budget struct {
	size int64

	mu    sync.Mutex
	used  int64
	queue []*waiter
	// garbage is what shares given back since the last collection held.
	garbage int64

	// waiting, if set (tests), is called when a job starts to wait.
	waiting func(n int64)
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when the share is granted
}

// newBudget returns a budget of size bytes; nil (unlimited) for a negative
// size.
func newBudget(size int64) *budget {
	if size < 0 {
		return nil
	}
	return &budget{size: size}
}

// fits reports whether a share of n can ever be granted.
func (b *budget) fits(n int64) bool { return b == nil || n <= b.size }

// acquire takes a share of n bytes, waiting until the others' shares leave
// room or ctx is done; then it returns ctx.Err() and holds nothing. n must
// fit.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if b == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	if b.waiting != nil {
		b.waiting(n)
	}

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		// Granted meanwhile: give it back.
		b.used -= n
	default:
		for i, q := range b.queue {
			if q == w {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
	}
	// Whoever was behind w may fit now.
	b.grant()
	return ctx.Err()
}

// release gives back a share of n bytes.
//
// The job's pixels are garbage by then, but the collector frees garbage
// when it next runs, and it paces itself to let the heap grow to twice what
// was live at its last run: a job granted the share would allocate on top of
// the pixels it replaces, and the process would hold twice its budget. So
// once the shares given back since the last collection add up to a
// sixteenth of the budget, release collects before it grants anything: at
// most that sixteenth is garbage the budget does not count. It collects
// twice, as the scalers keep their buffers in a sync.Pool, which keeps what
// it holds through one collection. (Collecting costs a few milliseconds: the
// pixels are pointer-free, so there is little to mark. Freed pages are
// reused by the next job, and returned to the operating system by the
// runtime's scavenger within seconds once the pool is idle;
// debug.FreeOSMemory would return them at once, but then the next job
// faults every page in again: 5 to 30% more time for a 12 MP photo's
// thumbnail, measured.)
func (b *budget) release(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.garbage += n
	collect := b.garbage >= b.size/16
	if collect {
		b.garbage = 0
	}
	b.mu.Unlock()
	if collect {
		runtime.GC()
		runtime.GC()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.grant()
}

// grant grants the waiters at the head of the queue whose shares fit. b.mu
// is held.
func (b *budget) grant() {
	for len(b.queue) > 0 && b.used+b.queue[0].n <= b.size {
		w := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.used += w.n
		close(w.ready)
	}
}
