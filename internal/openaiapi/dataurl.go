package openaiapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

// Input images reach easel three ways: as multipart file parts (edits), as
// data: URLs and as http(s) URLs (edits JSON form, chat image_url parts).
// All three end in checkImage: the type is judged from the bytes (never a
// declared Content-Type, file name or data: label), and the dimensions from
// the header only, so neither a huge payload nor a decompression bomb costs
// more than a glance.

// imageBudget tracks the bytes of input images one request has taken, so
// many images just under the per-image cap cannot add up to an unbounded
// amount of memory.
type imageBudget struct {
	left int64
}

// take books n bytes, or returns a 413 when they do not fit.
func (b *imageBudget) take(n int64, param string, total int64) *apiError {
	if n > b.left {
		e := tooLarge(total)
		e.Param = param
		e.Message = "The input images together are larger than " + strconv.FormatInt(total, 10) + " bytes."
		return e
	}
	b.left -= n
	return nil
}

// loadImageURL turns an image reference from a JSON body (a data: URL or an
// http(s) URL) into a checked input image. index is the image's position
// (for its file name). Fetch failures never reveal where a name resolved.
func (a *API) loadImageURL(ctx context.Context, s, param string, index int, budget *imageBudget) (provider.InputImage, error) {
	scheme, _, _ := strings.Cut(s, ":")
	var data []byte
	switch strings.ToLower(scheme) {
	case "data":
		d, e := parseDataURL(s, a.maxImageBytes, param)
		if e != nil {
			return provider.InputImage{}, e
		}
		data = d
	case "http", "https":
		d, err := a.fetchImage(ctx, s, param)
		if err != nil {
			return provider.InputImage{}, err
		}
		data = d
	default:
		return provider.InputImage{}, badRequest(param, "invalid_value",
			"An image URL must be an http(s) URL or a data: URL.")
	}
	if e := budget.take(int64(len(data)), param, a.maxUpload); e != nil {
		return provider.InputImage{}, e
	}
	img, e := a.checkImage(data, param, "Input image "+strconv.Itoa(index+1), index)
	if e != nil {
		return provider.InputImage{}, e
	}
	return img, nil
}

// parseDataURL decodes a base64 data: URL. Its size is judged from the
// encoded length before anything is decoded (413 above maxBytes); its label
// must be an image type other than SVG, though the bytes decide the type in
// the end.
func parseDataURL(s string, maxBytes int64, param string) ([]byte, *apiError) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, "data") {
		return nil, badRequest(param, "invalid_value", "An image URL must be an http(s) URL or a data: URL.")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, badRequest(param, "invalid_value", "The data: URL has no ',' before its data.")
	}
	params := strings.Split(meta, ";")
	mediaType := strings.ToLower(strings.TrimSpace(params[0]))
	if len(params) < 2 || !strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64") {
		return nil, badRequest(param, "invalid_value", "The data: URL must be base64-encoded (';base64,').")
	}
	if !strings.HasPrefix(mediaType, "image/") || strings.Contains(mediaType, "svg") {
		return nil, badRequest(param, "invalid_image_format", "The data: URL must hold a PNG, JPEG, WebP or GIF image.")
	}
	if int64(base64.StdEncoding.DecodedLen(len(payload))) > maxBytes+3 {
		return nil, imageTooBig(param, maxBytes, "An input image")
	}
	data, err := decodeBase64(payload)
	if err != nil {
		return nil, badRequest(param, "invalid_value", "The data: URL's base64 is malformed.")
	}
	if int64(len(data)) > maxBytes {
		return nil, imageTooBig(param, maxBytes, "An input image")
	}
	return data, nil
}

// imageTooBig is the 413 for one image over the per-image cap; what names
// the image ("The file in part 'image[]'").
func imageTooBig(param string, maxBytes int64, what string) *apiError {
	e := tooLarge(maxBytes)
	e.Param = param
	e.Message = what + " is larger than " + strconv.FormatInt(maxBytes, 10) + " bytes."
	return e
}

// checkImage sniffs data and reads its header against the pixel cap. It
// never decodes pixels. what names the image in messages ("Input image 2",
// "The mask").
func (a *API) checkImage(data []byte, param, what string, index int) (provider.InputImage, *apiError) {
	w, h, mime, err := imageio.DecodeConfig(data, a.maxInputPixels)
	switch {
	case errors.Is(err, imageio.ErrTooLarge):
		return provider.InputImage{}, badRequest(param, "image_too_large", what+" has more than "+strconv.Itoa(a.maxInputPixels)+" pixels or a side longer than "+
			strconv.Itoa(imageio.MaxSide)+".")
	case errors.Is(err, imageio.ErrUnsupported):
		return provider.InputImage{}, badRequest(param, "invalid_image_format", what+" is not a PNG, JPEG, WebP or GIF image.")
	case err != nil:
		return provider.InputImage{}, badRequest(param, "invalid_image", what+" cannot be read.")
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
func (a *API) tooManyImages(param string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param,
		Code: "too_many_images", Message: "At most " + strconv.Itoa(a.maxImages) + " input images are allowed."}
}
