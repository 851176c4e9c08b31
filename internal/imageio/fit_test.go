package imageio

import (
	"bytes"
	"errors"
	"testing"
)

func TestFit(t *testing.T) {
	t.Parallel()
	pngIn := encode(t, "png", testImage(400, 200, true))
	jpegIn := encode(t, "jpeg", testImage(300, 300, false))
	gifIn := encode(t, "gif", testImage(50, 20, false))
	webpIn := encode(t, "webp", testImage(60, 30, false))
	tests := []struct {
		name            string
		in              []byte
		maxPixels, side int
		formats         []string
		wantMIME        string
		wantW, wantH    int
		wantSame        bool
	}{
		{"fits", pngIn, 0, 0, nil, MIMEPNG, 400, 200, true},
		{"fits under limits", pngIn, 80000, 400, []string{"png"}, MIMEPNG, 400, 200, true},
		{"pixels", pngIn, 20000, 0, nil, MIMEPNG, 200, 100, false},
		{"side", pngIn, 0, 100, nil, MIMEPNG, 100, 50, false},
		{"both", jpegIn, 10000, 50, nil, MIMEJPEG, 50, 50, false},
		{"odd ratio stays under", pngIn, 12345, 0, nil, MIMEPNG, 157, 78, false},
		{"gif to png", gifIn, 0, 0, nil, MIMEPNG, 50, 20, false},
		{"gif kept when accepted", gifIn, 0, 0, []string{"gif", "png"}, MIMEGIF, 50, 20, true},
		{"webp to png", webpIn, 0, 0, []string{"png", "jpeg"}, MIMEPNG, 60, 30, false},
		{"png to jpeg", pngIn, 0, 0, []string{"jpg"}, MIMEJPEG, 400, 200, false},
		{"scaled and converted", webpIn, 450, 0, []string{"jpeg"}, MIMEJPEG, 30, 15, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, mime, w, h, err := Fit(tc.in, tc.maxPixels, tc.side, tc.formats)
			if err != nil {
				t.Fatal(err)
			}
			if mime != tc.wantMIME || w != tc.wantW || h != tc.wantH {
				t.Errorf("got %s %dx%d, want %s %dx%d", mime, w, h, tc.wantMIME, tc.wantW, tc.wantH)
			}
			if tc.maxPixels > 0 && w*h > tc.maxPixels {
				t.Errorf("%dx%d exceeds %d pixels", w, h, tc.maxPixels)
			}
			if same := bytes.Equal(out, tc.in); same != tc.wantSame {
				t.Errorf("unchanged = %v, want %v", same, tc.wantSame)
			}
			// What Fit returns must say what the bytes are.
			gw, gh, gm, err := DecodeConfig(out, 0)
			if err != nil || gw != w || gh != h || gm != mime {
				t.Errorf("output reads as %s %dx%d (%v)", gm, gw, gh, err)
			}
		})
	}
}

func TestFitErrors(t *testing.T) {
	t.Parallel()
	if _, _, _, _, err := Fit([]byte("<svg/>"), 0, 0, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("svg: %v", err)
	}
	if _, _, _, _, err := Fit(pngHeader(20, 20), 100, 0, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("header only, needing a decode: %v", err)
	}
	gifIn := encode(t, "gif", testImage(5, 5, false))
	if _, _, _, _, err := Fit(gifIn, 0, 0, []string{"gif-only-please"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("no encodable format: %v", err)
	}
}

func TestFitDims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, h, px, side, ww, wh int }{
		{1, 10000, 100, 0, 1, 100},
		{10000, 1, 0, 16, 16, 1},
		{3000, 2000, 4_000_000, 0, 2449, 1632},
		{16384, 16384, 40_000_000, 0, 6324, 6324},
	} {
		w, h := fitDims(tc.w, tc.h, tc.px, tc.side)
		if w != tc.ww || h != tc.wh {
			t.Errorf("fitDims(%d,%d,%d,%d) = %dx%d, want %dx%d", tc.w, tc.h, tc.px, tc.side, w, h, tc.ww, tc.wh)
		}
		if tc.px > 0 && w*h > tc.px {
			t.Errorf("%dx%d over %d", w, h, tc.px)
		}
	}
}
