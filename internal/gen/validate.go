package gen

import (
	"fmt"
	"slices"
	"strings"

	"github.com/easelgw/easel/internal/provider"
)

// validate checks req against the service limits and the model's
// capabilities (those of its first backend). Optional controls the model
// lacks (seed, steps, negative prompt) are not errors: popular clients send
// them to every model, so the runner drops them instead.
func (s *Service) validate(mi ModelInfo, req *Request) error {
	caps := mi.Capabilities
	if strings.TrimSpace(req.Prompt) == "" {
		return &InvalidError{Param: "prompt", Code: "missing_required_parameter", Message: "prompt must not be empty"}
	}
	if req.N < 1 || req.N > s.opts.MaxN {
		return &InvalidError{Param: "n", Code: "invalid_value", Message: fmt.Sprintf("n must be between 1 and %d, got %d", s.opts.MaxN, req.N)}
	}
	if req.Width < 0 || req.Height < 0 || (req.Width == 0) != (req.Height == 0) {
		return &InvalidError{Param: "size", Code: "invalid_value", Message: fmt.Sprintf("size %dx%d is not valid: give both sides, or neither for the default", req.Width, req.Height)}
	}
	if req.Width*req.Height > s.opts.MaxPixels || req.Width > 1<<20 || req.Height > 1<<20 {
		return &InvalidError{Param: "size", Code: "invalid_value", Message: fmt.Sprintf("size %dx%d exceeds the limit of %d pixels", req.Width, req.Height, s.opts.MaxPixels)}
	}
	if req.AspectRatio != "" {
		if _, _, ok := provider.ParseAspectRatio(req.AspectRatio); !ok && !slices.ContainsFunc(caps.AspectRatios, func(r string) bool { return strings.EqualFold(r, req.AspectRatio) }) {
			msg := fmt.Sprintf("aspect ratio %q is not of the form W:H", req.AspectRatio)
			if len(caps.AspectRatios) > 0 {
				msg += fmt.Sprintf(" nor one of the model's ratios (%s)", strings.Join(caps.AspectRatios, ", "))
			}
			return &InvalidError{Param: "aspect_ratio", Code: "invalid_value", Message: msg}
		}
	}
	switch req.Kind {
	case provider.KindEdit:
		if !caps.ImageToImage {
			return &InvalidError{Param: "image", Code: "unsupported_value", Message: fmt.Sprintf("model '%s' does not support image edits (image input)", mi.ID)}
		}
		if len(req.Images) == 0 {
			return &InvalidError{Param: "image", Code: "missing_required_parameter", Message: "an edit needs at least one input image"}
		}
		if caps.MaxInputImages > 0 && len(req.Images) > caps.MaxInputImages {
			return &InvalidError{Param: "image", Code: "invalid_value", Message: fmt.Sprintf("model '%s' takes at most %d input images, got %d", mi.ID, caps.MaxInputImages, len(req.Images))}
		}
	case provider.KindGenerate, "":
		if !caps.TextToImage {
			return &InvalidError{Param: "image", Code: "missing_required_parameter", Message: fmt.Sprintf("model '%s' only edits images: send an input image (use the edits endpoint)", mi.ID)}
		}
	default:
		return &InvalidError{Param: "kind", Code: "invalid_value", Message: fmt.Sprintf("unknown request kind %q", req.Kind)}
	}
	if req.Steps != 0 && caps.Steps {
		lo, hi := max(caps.MinSteps, 1), caps.MaxSteps
		if req.Steps < lo || (hi > 0 && req.Steps > hi) {
			msg := fmt.Sprintf("steps must be at least %d, got %d", lo, req.Steps)
			if hi > 0 {
				msg = fmt.Sprintf("steps must be between %d and %d, got %d", lo, hi, req.Steps)
			}
			return &InvalidError{Param: "steps", Code: "invalid_value", Message: msg}
		}
	}
	switch req.OutputFormat {
	case "", "png", "jpeg", "jpg", "webp":
	default:
		return &InvalidError{Param: "output_format", Code: "invalid_value", Message: fmt.Sprintf("output_format must be png, jpeg or webp, got %q", req.OutputFormat)}
	}
	return nil
}

// outputFormat is the stored format for req ("png" when unset).
func outputFormat(req *Request) string {
	switch req.OutputFormat {
	case "":
		return "png"
	case "jpg":
		return "jpeg"
	}
	return req.OutputFormat
}
