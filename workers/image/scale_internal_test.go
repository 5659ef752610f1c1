package image

import (
	"image"
	"image/color"
	"testing"

	"golang.org/x/image/draw"
)

// Scaling in bands, either pass first, gives what one Kernel.Scale call
// gives, up to the rounding of the 8-bit intermediate.
func TestScaleBandsMatchOneCall(t *testing.T) {
	t.Parallel()
	src := image.NewNRGBA(image.Rect(0, 0, 37, 53))
	for y := range 53 {
		for x := range 37 {
			src.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 7), G: uint8(y * 5), B: uint8(x * y), A: uint8(255 - x)})
		}
	}
	sr := image.Rect(3, 2, 35, 50)
	for _, size := range [][2]int{{16, 8}, {8, 16}, {64, 20}, {20, 64}, {32, 48}} {
		w, h := size[0], size[1]
		want := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.CatmullRom.Scale(want, want.Bounds(), src, sr, draw.Src, nil)
		for _, cells := range []int{1, 7, 100, 1 << 20} {
			got := scaleBanded(src, sr, w, h, false, cells)
			for i := range want.Pix {
				if d := int(want.Pix[i]) - int(got.Pix[i]); d < -3 || d > 3 {
					t.Fatalf("%d×%d in bands of %d cells: byte %d is %d, one call gives %d", w, h, cells, i, got.Pix[i], want.Pix[i])
				}
			}
		}
	}
}
