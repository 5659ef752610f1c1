package image_test

import (
	"bytes"
	"encoding/binary"
	"flag"
	"hash/crc32"
	stdimage "image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// The files in testdata/ are made by this file: run
//
//	go test ./workers/image -run TestTestdata -update
//
// to write them again. Without -update the test checks that the files on
// disk still have the properties the other tests rely on.
var update = flag.Bool("update", false, "rewrite the files in testdata/")

// Size of the sample pictures.
const sampleW, sampleH = 64, 48

// sample is a 64×48 picture with a gradient, a disc and, when alpha, a
// transparent band across the top.
func sample(alpha bool) *stdimage.NRGBA {
	img := stdimage.NewNRGBA(stdimage.Rect(0, 0, sampleW, sampleH))
	for y := range sampleH {
		for x := range sampleW {
			c := color.NRGBA{R: uint8(x * 4), G: uint8(y * 5), B: 160, A: 255}
			if dx, dy := x-40, y-24; dx*dx+dy*dy < 100 {
				c = color.NRGBA{R: 250, G: 220, B: 30, A: 255}
			}
			if alpha && y < 8 {
				c.A = uint8(x * 4)
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func encodeJPEG(t testing.TB) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, sample(false), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, sample(true)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// encodeGIF makes a two-frame GIF whose frames differ, so a test can tell
// the first frame was used.
func encodeGIF(t testing.TB) []byte {
	g := &gif.GIF{}
	for i := range 2 {
		p := stdimage.NewPaletted(stdimage.Rect(0, 0, sampleW, sampleH), palette.Plan9)
		src := sample(false)
		for y := range sampleH {
			for x := range sampleW {
				c := src.NRGBAAt(x, y)
				if i == 1 {
					c = color.NRGBA{A: 255} // the second frame is black
				}
				p.Set(x, y, c)
			}
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// encodeWebP writes a lossless WebP (VP8L, RFC 9649) by hand: no transforms,
// no colour cache, and each of the five prefix codes a "simple" code of one
// or two symbols, so every channel takes at most two values and costs at
// most one bit a pixel. The picture: red low on the left half, high on the
// right; green low on the top half, high on the bottom; blue constant;
// opaque.
func encodeWebP(w, h int) []byte {
	const (
		r0, r1 = 30, 220
		g0, g1 = 40, 200
		blue   = 120
	)
	var bw bitWriter
	bw.write(0x2f, 8) // VP8L signature
	bw.write(uint32(w-1), 14)
	bw.write(uint32(h-1), 14)
	bw.write(0, 1) // alpha_is_used
	bw.write(0, 3) // version
	bw.write(0, 1) // no transform
	bw.write(0, 1) // no colour cache
	bw.write(0, 1) // no meta prefix codes
	// Prefix codes in the order green, red, blue, alpha, distance. A
	// simple code: 1, then number of symbols−1, then is_first_8bits and the
	// symbols. Of two symbols the smaller comes first and is coded 0.
	simple := func(syms ...uint32) {
		bw.write(1, 1)
		bw.write(uint32(len(syms)-1), 1)
		if syms[0] <= 1 {
			bw.write(0, 1)
			bw.write(syms[0], 1)
		} else {
			bw.write(1, 1)
			bw.write(syms[0], 8)
		}
		if len(syms) == 2 {
			bw.write(syms[1], 8)
		}
	}
	simple(g0, g1)
	simple(r0, r1)
	simple(blue)
	simple(255)
	simple(0)
	for y := range h {
		for x := range w {
			bw.write(b2u(y >= h/2), 1) // green
			bw.write(b2u(x >= w/2), 1) // red
			// blue and alpha have one symbol each: zero bits
		}
	}
	data := bw.bytes()

	var out bytes.Buffer
	chunk := len(data)
	pad := chunk & 1
	out.WriteString("RIFF")
	_ = binary.Write(&out, binary.LittleEndian, uint32(4+8+chunk+pad))
	out.WriteString("WEBPVP8L")
	_ = binary.Write(&out, binary.LittleEndian, uint32(chunk))
	out.Write(data)
	if pad == 1 {
		out.WriteByte(0)
	}
	return out.Bytes()
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// bitWriter packs bits least significant first, as VP8L reads them.
type bitWriter struct {
	buf   []byte
	acc   uint64
	nbits uint
}

func (b *bitWriter) write(v uint32, n uint) {
	b.acc |= uint64(v&(1<<n-1)) << b.nbits
	b.nbits += n
	for b.nbits >= 8 {
		b.buf = append(b.buf, byte(b.acc))
		b.acc >>= 8
		b.nbits -= 8
	}
}

func (b *bitWriter) bytes() []byte {
	if b.nbits > 0 {
		return append(b.buf, byte(b.acc))
	}
	return b.buf
}

// pngBomb is a valid PNG header (signature, IHDR with a correct CRC, a tiny
// IDAT, IEND) that declares w×h RGB pixels: DecodeConfig reports the size
// from IHDR alone, and decoding it would allocate w×h×3 bytes.
func pngBomb(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // depth 8, RGB, deflate, no filter, no interlace
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}) // empty zlib stream
	chunk("IEND", nil)
	return b.Bytes()
}

// testdataFiles makes every file of testdata/.
func testdataFiles(t testing.TB) map[string][]byte {
	jpg := encodeJPEG(t)
	return map[string][]byte{
		"sample.jpg":    jpg,
		"sample.png":    encodePNG(t),
		"sample.gif":    encodeGIF(t),
		"sample.webp":   encodeWebP(sampleW, sampleH),
		"truncated.jpg": jpg[:len(jpg)/2],
		"bomb.png":      pngBomb(100000, 100000),
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (make the files with: go test ./workers/image -run TestTestdata -update)", err)
	}
	return b
}

func TestTestdata(t *testing.T) {
	if *update {
		for name, b := range testdataFiles(t) {
			if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Parallel()
	for _, tt := range []struct {
		name, format string
		w, h         int
	}{
		{"sample.jpg", "jpeg", sampleW, sampleH},
		{"sample.png", "png", sampleW, sampleH},
		{"sample.gif", "gif", sampleW, sampleH},
		{"sample.webp", "webp", sampleW, sampleH},
		{"bomb.png", "png", 100000, 100000},
	} {
		c, format, err := stdimage.DecodeConfig(bytes.NewReader(readTestdata(t, tt.name)))
		if err != nil || format != tt.format || c.Width != tt.w || c.Height != tt.h {
			t.Errorf("%s: %s %d×%d, %v; want %s %d×%d", tt.name, format, c.Width, c.Height, err, tt.format, tt.w, tt.h)
		}
	}
	// Every file but the bomb decodes whole, except the truncated one.
	for _, name := range []string{"sample.jpg", "sample.png", "sample.gif", "sample.webp"} {
		if _, _, err := stdimage.Decode(bytes.NewReader(readTestdata(t, name))); err != nil {
			t.Errorf("decode %s: %v", name, err)
		}
	}
	if _, _, err := stdimage.Decode(bytes.NewReader(readTestdata(t, "truncated.jpg"))); err == nil {
		t.Error("truncated.jpg decodes")
	}
}
