package imageio

import (
	"bytes"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"

	"github.com/HugoSmits86/nativewebp"
	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// DefaultInputFormats are the formats a backend is assumed to accept when it
// names none.
var DefaultInputFormats = []string{"png", "jpeg", "webp"}

// Fit prepares an input image for a backend: it scales b down, keeping the
// aspect ratio, when it has more than maxPixels pixels or a side longer
// than maxSide (either <= 0 means no such limit), and re-encodes it when its
// type is not among formats ("png", "jpeg", "webp", "gif"; empty means
// DefaultInputFormats). An image that already fits is returned unchanged,
// without a decode or re-encode, so the common case costs one header read.
//
// A changed image keeps its own format when the backend accepts it, and
// otherwise becomes PNG (lossless, keeps transparency) or, when PNG is not
// accepted, the first accepted format. GIFs lose their animation: only the
// first frame is kept.
func Fit(b []byte, maxPixels, maxSide int, formats []string) (out []byte, mime string, w, h int, err error) {
	w, h, mime, err = DecodeConfig(b, 0)
	if err != nil {
		return nil, "", 0, 0, err
	}
	accepted := acceptedFormats(formats)
	nw, nh := fitDims(w, h, maxPixels, maxSide)
	outFormat := FormatOf(mime)
	if !accepted[outFormat] {
		outFormat = pickFormat(accepted, formats)
		if outFormat == "" {
			return nil, "", 0, 0, fmt.Errorf("no encodable format among %v: %w", formats, ErrUnsupported)
		}
	}
	if nw == w && nh == h && outFormat == FormatOf(mime) {
		return b, mime, w, h, nil
	}
	img, err := decodePixels(b, mime)
	if err != nil {
		return nil, "", 0, 0, err
	}
	if nw != w || nh != h {
		dst := image.NewNRGBA(image.Rect(0, 0, nw, nh))
		err = guard(func() error {
			xdraw.CatmullRom.Scale(dst, dst.Bounds(), img, img.Bounds(), xdraw.Src, nil)
			return nil
		})
		if err != nil {
			return nil, "", 0, 0, fmt.Errorf("scaling %dx%d to %dx%d: %w", w, h, nw, nh, err)
		}
		img = dst
	}
	out, err = encodeAs(img, outFormat)
	if err != nil {
		return nil, "", 0, 0, err
	}
	return out, mimeOf(outFormat), nw, nh, nil
}

// fitDims is the largest size with w:h's aspect ratio within the limits;
// each side is at least 1.
func fitDims(w, h, maxPixels, maxSide int) (int, int) {
	scale := 1.0
	if maxPixels > 0 && w*h > maxPixels {
		scale = math.Sqrt(float64(maxPixels) / float64(w*h))
	}
	if maxSide > 0 && max(w, h) > maxSide {
		scale = min(scale, float64(maxSide)/float64(max(w, h)))
	}
	if scale >= 1 {
		return w, h
	}
	nw := max(int(math.Floor(float64(w)*scale)), 1)
	nh := max(int(math.Floor(float64(h)*scale)), 1)
	// Floating point may land one pixel over a limit; step down until not.
	for maxPixels > 0 && nw*nh > maxPixels && (nw > 1 || nh > 1) {
		if nw >= nh {
			nw--
		} else {
			nh--
		}
	}
	if maxSide > 0 {
		nw, nh = min(nw, maxSide), min(nh, maxSide)
	}
	return nw, nh
}

func acceptedFormats(formats []string) map[string]bool {
	if len(formats) == 0 {
		formats = DefaultInputFormats
	}
	m := map[string]bool{}
	for _, f := range formats {
		if mt := mimeOf(f); mt != "" {
			m[FormatOf(mt)] = true
		}
	}
	return m
}

// pickFormat chooses the output format for an image whose own format the
// backend does not take: PNG when accepted, else the first accepted format
// easel can encode.
func pickFormat(accepted map[string]bool, formats []string) string {
	if len(formats) == 0 || accepted["png"] {
		return "png"
	}
	for _, f := range formats {
		switch FormatOf(mimeOf(f)) {
		case "jpeg":
			return "jpeg"
		case "webp":
			return "webp"
		}
	}
	return ""
}

// decodePixels reads the pixels of b, whose header the caller has checked.
func decodePixels(b []byte, mime string) (image.Image, error) {
	var img image.Image
	err := guard(func() error {
		var derr error
		r := bytes.NewReader(b)
		switch mime {
		case MIMEPNG:
			img, derr = png.Decode(r)
		case MIMEJPEG:
			img, derr = jpeg.Decode(r)
		case MIMEGIF:
			img, derr = gif.Decode(r)
		case MIMEWebP:
			img, derr = webp.Decode(r)
		default:
			derr = ErrUnsupported
		}
		return derr
	})
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w: %w", FormatOf(mime), ErrCorrupt, err)
	}
	return img, nil
}

// encodeAs writes img as format (png, jpeg or webp): png at BestSpeed,
// jpeg at JPEGQuality over white, webp lossless.
func encodeAs(img image.Image, format string) ([]byte, error) {
	var buf bytes.Buffer
	err := guard(func() error {
		switch format {
		case "png":
			enc := png.Encoder{CompressionLevel: png.BestSpeed}
			return enc.Encode(&buf, img)
		case "jpeg":
			return jpeg.Encode(&buf, flatten(img), &jpeg.Options{Quality: JPEGQuality})
		case "webp":
			return nativewebp.Encode(&buf, img, nil)
		}
		return fmt.Errorf("output format %q: %w", format, ErrUnsupported)
	})
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", format, err)
	}
	return buf.Bytes(), nil
}
