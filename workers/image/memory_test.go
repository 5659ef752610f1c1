package image_test

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"hash/crc32"
	stdimage "image"
	"image/color"
	"image/png"
	"os"
	"testing"
)

// The peak RSS in docs/performance.md ("Images") is measured with a 40 MP
// 16-bit PNG, which is made at run time rather than kept in testdata/:
//
//	go test ./workers/image -run TestWriteBigPNG -bigpng /tmp/flat16.json
//
// writes a payload for image.thumbnail that carries it.
var bigPNG = flag.String("bigpng", "", "write an image.thumbnail payload with a 40 MP 16-bit PNG to this file")

// flat16 is a w×h 16-bit RGB PNG of one colour: each row after the first
// is filtered "up" to zeros, so 40 MP compress to a few hundred KB, and it
// is written as it is compressed, without its 240 MB of rows in memory.
func flat16(t testing.TB, w, h int, c color.RGBA64) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
		b.WriteString(typ)
		b.Write(data)
		b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(append([]byte(typ), data...))))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	chunk("IHDR", append(ihdr, 16, 2, 0, 0, 0)) // 16-bit RGB, not interlaced

	var z bytes.Buffer
	zw, err := zlib.NewWriterLevel(&z, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	row := make([]byte, 1+6*w) // filter none, then the pixels
	for x := range w {
		binary.BigEndian.PutUint16(row[1+6*x:], c.R)
		binary.BigEndian.PutUint16(row[3+6*x:], c.G)
		binary.BigEndian.PutUint16(row[5+6*x:], c.B)
	}
	bw.Write(row)
	up := make([]byte, 1+6*w)
	up[0] = 2
	for range h - 1 {
		bw.Write(up)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

var flatColour = color.RGBA64{R: 0x3000, G: 0x8000, B: 0xc000, A: 0xffff}

// flat16 makes what it says, small here.
func TestFlat16(t *testing.T) {
	t.Parallel()
	img, err := png.Decode(bytes.NewReader(flat16(t, 300, 200, flatColour)))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := img.(*stdimage.RGBA64)
	if !ok || m.Bounds() != stdimage.Rect(0, 0, 300, 200) {
		t.Fatalf("decoded %T %v, want a 300×200 RGBA64", img, img.Bounds())
	}
	for _, p := range []stdimage.Point{{0, 0}, {299, 0}, {150, 100}, {299, 199}} {
		if got := m.RGBA64At(p.X, p.Y); got != flatColour {
			t.Errorf("pixel %v = %v, want %v", p, got, flatColour)
		}
	}
}

func TestWriteBigPNG(t *testing.T) {
	if *bigPNG == "" {
		t.Skip("no -bigpng file")
	}
	b := flat16(t, 8000, 5000, flatColour)
	payload, err := json.Marshal(map[string]any{"data": base64.StdEncoding.EncodeToString(b), "width": 256})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*bigPNG, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: image.thumbnail payload, an 8000×5000 16-bit PNG of %d bytes", *bigPNG, len(b))
}
