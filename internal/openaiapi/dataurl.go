package openaiapi

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

// Limits on input images carried in chat messages as data: URLs.
const (
	// maxInputImages is the most images one request may carry (OpenAI's
	// edit limit).
	maxInputImages = 16
	// maxInputImageBytes caps one decoded image.
	maxInputImageBytes = 16 << 20
	// maxInputPixels caps one image's declared size, checked from its
	// header before anything decodes the pixels.
	maxInputPixels = 40_000_000
)

// decodeDataURL turns a data: URL into a sniffed input image. The size is
// judged from the encoded length before decoding, the type from the bytes
// (not from the URL's label), and the dimensions from the header only, so
// neither a huge payload nor a decompression bomb costs more than a glance.
// param names the field in errors; index is the image's position.
func decodeDataURL(s, param string, index int) (provider.InputImage, *apiError) {
	var img provider.InputImage
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, "data") {
		if strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https") {
			return img, badRequest(param, "unsupported_value",
				"Image URLs are not fetched; send the image inline as a data: URL.")
		}
		return img, badRequest(param, "invalid_value", "An image_url must be a data: URL.")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return img, badRequest(param, "invalid_value", "The data: URL has no ',' before its data.")
	}
	params := strings.Split(meta, ";")
	mediaType := strings.ToLower(strings.TrimSpace(params[0]))
	if !strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64") || len(params) < 2 {
		return img, badRequest(param, "invalid_value", "The data: URL must be base64-encoded (';base64,').")
	}
	if !strings.HasPrefix(mediaType, "image/") || strings.Contains(mediaType, "svg") {
		return img, badRequest(param, "unsupported_value", "The data: URL must hold a PNG, JPEG, WebP or GIF image.")
	}
	if base64.StdEncoding.DecodedLen(len(payload)) > maxInputImageBytes+3 {
		e := tooLarge(maxInputImageBytes)
		e.Param = param
		e.Message = "An input image is larger than " + strconv.Itoa(maxInputImageBytes) + " bytes."
		return img, e
	}
	data, err := decodeBase64(payload)
	if err != nil {
		return img, badRequest(param, "invalid_value", "The data: URL's base64 is malformed.")
	}
	if len(data) > maxInputImageBytes {
		e := tooLarge(maxInputImageBytes)
		e.Param = param
		return img, e
	}
	w, h, mime, err := imageio.DecodeConfig(data, maxInputPixels)
	switch {
	case errors.Is(err, imageio.ErrTooLarge):
		return img, badRequest(param, "image_too_large", "An input image has more pixels than allowed.")
	case errors.Is(err, imageio.ErrUnsupported):
		return img, badRequest(param, "unsupported_value", "An input image is not PNG, JPEG, WebP or GIF.")
	case err != nil:
		return img, badRequest(param, "invalid_value", "An input image cannot be read.")
	}
	return provider.InputImage{
		Data:   data,
		MIME:   mime,
		Name:   "image-" + strconv.Itoa(index+1) + "." + imageio.FormatOf(mime),
		Width:  w,
		Height: h,
	}, nil
}

// decodeBase64 accepts standard base64 with or without padding and with
// line breaks, as clients produce it.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n\t ") {
		s = strings.Map(func(r rune) rune {
			switch r {
			case '\r', '\n', '\t', ' ':
				return -1
			}
			return r
		}, s)
	}
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// tooManyImages is the error for the image after the last allowed one.
func tooManyImages(param string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param,
		Code: "too_many_images", Message: "At most " + strconv.Itoa(maxInputImages) + " input images are allowed."}
}
