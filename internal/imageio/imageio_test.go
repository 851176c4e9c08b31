package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"

	"github.com/HugoSmits86/nativewebp"
	"golang.org/x/image/webp"
)

func testImage(w, h int, alpha bool) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha && x < w/2 {
				a = 0
			}
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 7), G: uint8(y * 5), B: 90, A: a})
		}
	}
	return img
}

func encode(t testing.TB, format string, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	case "webp":
		err = nativewebp.Encode(&buf, img, nil)
	}
	if err != nil {
		t.Fatalf("encoding %s: %v", format, err)
	}
	return buf.Bytes()
}

// pngHeader builds a PNG signature and a valid IHDR chunk declaring w x h,
// with no pixel data at all.
func pngHeader(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth
	ihdr[9] = 6 // RGBA
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	crc := crc32.NewIEEE()
	crc.Write([]byte("IHDR"))
	crc.Write(ihdr[:])
	b.WriteString("IHDR")
	b.Write(ihdr[:])
	_ = binary.Write(&b, binary.BigEndian, crc.Sum32())
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	t.Parallel()
	img := testImage(4, 3, false)
	tests := []struct {
		name string
		in   []byte
		want string
		ok   bool
	}{
		{"png", encode(t, "png", img), MIMEPNG, true},
		{"jpeg", encode(t, "jpeg", img), MIMEJPEG, true},
		{"gif", encode(t, "gif", img), MIMEGIF, true},
		{"webp", encode(t, "webp", img), MIMEWebP, true},
		{"empty", nil, "", false},
		{"text", []byte("<html>not an image</html>"), "", false},
		{"riff not webp", []byte("RIFF\x00\x00\x00\x00WAVEfmt "), "", false},
		{"short riff", []byte("RIFF"), "", false},
		{"png prefix only", []byte("\x89PN"), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Sniff(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Sniff = %q,%v, want %q,%v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	img := testImage(40, 30, false)
	for _, f := range []string{"png", "jpeg", "gif", "webp"} {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			w, h, mime, err := DecodeConfig(encode(t, f, img), 40_000_000)
			if err != nil {
				t.Fatal(err)
			}
			if w != 40 || h != 30 || FormatOf(mime) != f {
				t.Fatalf("got %dx%d %s", w, h, mime)
			}
			if _, _, _, err := DecodeConfig(encode(t, f, img), 40*30-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("one pixel over budget: err = %v, want ErrTooLarge", err)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		if _, _, _, err := DecodeConfig([]byte("hello world, not an image"), 0); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		t.Parallel()
		if _, _, _, err := DecodeConfig([]byte("\x89PNG\r\n\x1a\n\x00\x00"), 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("side over max", func(t *testing.T) {
		t.Parallel()
		if _, _, _, err := DecodeConfig(pngHeader(MaxSide+1, 1), 0); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestFormatOf(t *testing.T) {
	t.Parallel()
	for mime, want := range map[string]string{MIMEPNG: "png", MIMEJPEG: "jpeg", MIMEWebP: "webp", MIMEGIF: "gif", "text/plain": "", "": ""} {
		if got := FormatOf(mime); got != want {
			t.Errorf("FormatOf(%q) = %q, want %q", mime, got, want)
		}
	}
}

// TestDecompressionBomb: a few dozen bytes declaring 30000x30000 (and a
// 10000x10000 one within the side limit) are refused from the header alone.
func TestDecompressionBomb(t *testing.T) {
	for _, dims := range [][2]uint32{{30000, 30000}, {10000, 10000}} {
		bomb := pngHeader(dims[0], dims[1])
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, _, err := DecodeConfig(bomb, 40_000_000)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: DecodeConfig err = %v, want ErrTooLarge", dims, err)
		}
		_, _, err = Convert(bomb, "jpeg", 40_000_000)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: Convert err = %v, want ErrTooLarge", dims, err)
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Fatalf("%v: refusing allocated %d bytes", dims, grew)
		}
	}
}

func TestConvert(t *testing.T) {
	t.Parallel()
	src := testImage(24, 16, true)
	for _, in := range []string{"png", "jpeg", "gif", "webp"} {
		for _, out := range []string{"png", "jpeg", "webp", ""} {
			t.Run(in+"->"+out, func(t *testing.T) {
				t.Parallel()
				b := encode(t, in, src)
				got, mime, err := Convert(b, out, 0)
				if err != nil {
					t.Fatal(err)
				}
				wantFormat := out
				if out == "" {
					wantFormat = in
				}
				if FormatOf(mime) != wantFormat {
					t.Fatalf("mime = %q, want format %q", mime, wantFormat)
				}
				if sniffed, _ := Sniff(got); sniffed != mime {
					t.Fatalf("output sniffs as %q, reported %q", sniffed, mime)
				}
				if wantFormat == in && !bytes.Equal(got, b) {
					t.Fatal("same format must return the input unchanged")
				}
				w, h, _, err := DecodeConfig(got, 0)
				if err != nil || w != 24 || h != 16 {
					t.Fatalf("output %dx%d err %v", w, h, err)
				}
			})
		}
	}
}

func TestConvertWebPIsLossless(t *testing.T) {
	t.Parallel()
	src := testImage(10, 10, false)
	out, _, err := Convert(encode(t, "png", src), "webp", 0)
	if err != nil {
		t.Fatal(err)
	}
	back, err := webp.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for y := range 10 {
		for x := range 10 {
			r1, g1, b1, _ := src.At(x, y).RGBA()
			r2, g2, b2, _ := back.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				t.Fatalf("pixel %d,%d changed", x, y)
			}
		}
	}
}

func TestConvertJPEGFlattensOnWhite(t *testing.T) {
	t.Parallel()
	src := image.NewNRGBA(image.Rect(0, 0, 16, 16)) // fully transparent
	out, _, err := Convert(encode(t, "png", src), "jpeg", 0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := img.At(8, 8).RGBA()
	if r>>8 < 250 || g>>8 < 250 || b>>8 < 250 {
		t.Fatalf("transparent pixel became %d,%d,%d, want white", r>>8, g>>8, b>>8)
	}
}

func TestConvertErrors(t *testing.T) {
	t.Parallel()
	png1 := encode(t, "png", testImage(2, 2, false))
	if _, _, err := Convert(png1, "bmp", 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("bmp: err = %v", err)
	}
	if _, _, err := Convert([]byte("nope"), "png", 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("garbage: err = %v", err)
	}
	// A valid header followed by broken pixel data.
	broken := append(pngHeader(8, 8), []byte("\x00\x00\x00\x04IDATjunkjunk")...)
	if _, _, err := Convert(broken, "jpeg", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("broken body: err = %v", err)
	}
}

func FuzzImage(f *testing.F) {
	img := testImage(5, 4, true)
	for _, format := range []string{"png", "jpeg", "gif", "webp"} {
		f.Add(encode(f, format, img), uint8(0))
	}
	f.Add(pngHeader(30000, 30000), uint8(1))
	f.Add([]byte("RIFF\x10\x00\x00\x00WEBPVP8L"), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		const budget = 1 << 20
		mime, ok := Sniff(b)
		w, h, cmime, err := DecodeConfig(b, budget)
		if err == nil {
			if !ok || cmime != mime || w <= 0 || h <= 0 || w*h > budget {
				t.Fatalf("DecodeConfig accepted %dx%d %q (sniff %q %v)", w, h, cmime, mime, ok)
			}
		}
		format := []string{"png", "jpeg", "webp", ""}[int(which)%4]
		out, omime, err := Convert(b, format, budget)
		if err == nil {
			if got, _ := Sniff(out); got != omime {
				t.Fatalf("Convert output sniffs %q, reported %q", got, omime)
			}
		}
	})
}
