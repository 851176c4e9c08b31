// Package imageio reads and writes the image bytes that cross easel's
// boundaries: uploads from clients and results from upstreams. Types are
// judged from magic bytes only (never a declared header or file name), sizes
// are checked from the header before any pixel is decoded so a small file
// cannot make the gateway allocate gigabytes, and no input can make it panic.
package imageio

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/webp"
)

// MIME types this package knows.
const (
	MIMEPNG  = "image/png"
	MIMEJPEG = "image/jpeg"
	MIMEWebP = "image/webp"
	MIMEGIF  = "image/gif"
)

// MaxSide is the largest width or height accepted whatever the pixel budget:
// WebP cannot encode more than 16383 and nothing easel serves needs more.
const MaxSide = 16384

// JPEGQuality is the quality used when converting to JPEG: visually lossless
// for generated images at a fraction of PNG's size.
const JPEGQuality = 92

var (
	// ErrTooLarge: the image declares more pixels, or a longer side, than
	// allowed.
	ErrTooLarge = errors.New("image is too large")
	// ErrUnsupported: the bytes are not PNG, JPEG, WebP or GIF, or the
	// requested output format is unknown.
	ErrUnsupported = errors.New("unsupported image type")
	// ErrCorrupt: the bytes look like a known type but cannot be read.
	ErrCorrupt = errors.New("image data is corrupt")
)

// Sniff returns the MIME type of b judged from its magic bytes alone.
func Sniff(b []byte) (mime string, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return MIMEPNG, true
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return MIMEJPEG, true
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return MIMEGIF, true
	case len(b) >= 12 && bytes.Equal(b[0:4], []byte("RIFF")) && bytes.Equal(b[8:12], []byte("WEBP")):
		return MIMEWebP, true
	}
	return "", false
}

// FormatOf maps a MIME type to its short format name ("png", "jpeg",
// "webp", "gif"); "" for anything else.
func FormatOf(mime string) string {
	switch mime {
	case MIMEPNG:
		return "png"
	case MIMEJPEG:
		return "jpeg"
	case MIMEWebP:
		return "webp"
	case MIMEGIF:
		return "gif"
	}
	return ""
}

// mimeOf is FormatOf's inverse; it also accepts "jpg".
func mimeOf(format string) string {
	switch format {
	case "png":
		return MIMEPNG
	case "jpeg", "jpg":
		return MIMEJPEG
	case "webp":
		return MIMEWebP
	case "gif":
		return MIMEGIF
	}
	return ""
}

// DecodeConfig reads only the header of b and returns its size and type. It
// returns ErrTooLarge when width*height exceeds maxPixels (maxPixels <= 0
// means no pixel budget) or a side exceeds MaxSide, ErrUnsupported for
// unknown types and ErrCorrupt for unreadable headers.
func DecodeConfig(b []byte, maxPixels int) (width, height int, mime string, err error) {
	mime, ok := Sniff(b)
	if !ok {
		return 0, 0, "", ErrUnsupported
	}
	var cfg image.Config
	err = guard(func() error {
		var derr error
		r := bytes.NewReader(b)
		switch mime {
		case MIMEPNG:
			cfg, derr = png.DecodeConfig(r)
		case MIMEJPEG:
			cfg, derr = jpeg.DecodeConfig(r)
		case MIMEGIF:
			cfg, derr = gif.DecodeConfig(r)
		case MIMEWebP:
			cfg, derr = webp.DecodeConfig(r)
		}
		return derr
	})
	if err != nil {
		return 0, 0, "", fmt.Errorf("reading %s header: %w: %w", FormatOf(mime), ErrCorrupt, err)
	}
	if err := checkSize(cfg.Width, cfg.Height, maxPixels); err != nil {
		return 0, 0, "", err
	}
	return cfg.Width, cfg.Height, mime, nil
}

func checkSize(w, h, maxPixels int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("image declares size %dx%d: %w", w, h, ErrCorrupt)
	}
	if w > MaxSide || h > MaxSide {
		return fmt.Errorf("image is %dx%d, a side exceeds %d: %w", w, h, MaxSide, ErrTooLarge)
	}
	// Both sides are <= MaxSide here, so the product cannot overflow.
	if maxPixels > 0 && w*h > maxPixels {
		return fmt.Errorf("image is %dx%d (%d pixels), more than %d: %w", w, h, w*h, maxPixels, ErrTooLarge)
	}
	return nil
}

// Convert re-encodes b as format ("png", "jpeg", "webp"). An empty format,
// or the type b already has, returns b unchanged. The header is checked with
// DecodeConfig (and maxPixels) before any pixel is decoded. PNG uses the
// fastest compression, JPEG quality JPEGQuality with transparency flattened
// onto white, WebP is lossless.
func Convert(b []byte, format string, maxPixels int) (out []byte, mime string, err error) {
	_, _, inMIME, err := DecodeConfig(b, maxPixels)
	if err != nil {
		return nil, "", err
	}
	if format == "" {
		return b, inMIME, nil
	}
	outMIME := mimeOf(format)
	if outMIME == "" || outMIME == MIMEGIF {
		return nil, "", fmt.Errorf("output format %q: %w", format, ErrUnsupported)
	}
	if outMIME == inMIME {
		return b, inMIME, nil
	}
	img, err := decodePixels(b, inMIME)
	if err != nil {
		return nil, "", err
	}
	out, err = encodeAs(img, FormatOf(outMIME))
	if err != nil {
		return nil, "", err
	}
	return out, outMIME, nil
}

// flatten draws img over opaque white, because JPEG has no alpha and the
// default (black) makes transparent areas look wrong.
func flatten(img image.Image) image.Image {
	if o, ok := img.(interface{ Opaque() bool }); ok && o.Opaque() {
		return img
	}
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Over)
	return dst
}

// guard runs f and turns a panic inside a codec into an error: hostile bytes
// must never take the process down.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec panic: %v", r)
		}
	}()
	return f()
}
