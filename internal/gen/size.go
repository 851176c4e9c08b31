package gen

import (
	"math"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/provider"
)

// fallbackSide is the size used when neither the client nor the backend
// names one: the common square default of today's image models.
const fallbackSide = 1024

// fitted is a request's size after fitting it to one backend.
type fitted struct {
	Width, Height int
	// AspectRatio is set for backends that take ratios ("16:9").
	AspectRatio string
}

// fitSize maps the client's size to one the backend accepts:
//   - 0x0 means the backend's default (its rule's default, else 1024x1024
//     fitted like any other request); an explicit ratio with no size picks
//     a size of the default's area with that ratio;
//   - with Choices, the choice with the nearest aspect ratio, then the
//     nearest area;
//   - otherwise the aspect ratio is kept, each side scaled into [Min,Max]
//     and rounded to Multiple;
//   - a rule with no bounds at all leaves the size as asked.
//
// For backends with a list of AspectRatios, the nearest one is chosen.
func fitSize(caps provider.Capabilities, width, height int, aspect string) fitted {
	if len(caps.AspectRatios) > 0 && width == 0 && height == 0 && aspect == "" {
		// A backend that takes ratios and was asked for nothing: send it
		// nothing, so its own default applies (for an edit backend that is
		// typically "match the input image", which a made-up 1:1 would
		// override).
		return fitted{}
	}
	rule := caps.Size
	var f fitted
	switch {
	case width > 0 && height > 0:
		f.Width, f.Height = width, height
	case rule.DefaultWidth > 0 && rule.DefaultHeight > 0 && aspect == "":
		f.Width, f.Height = rule.DefaultWidth, rule.DefaultHeight
	default:
		dw, dh := fallbackSide, fallbackSide
		if rule.DefaultWidth > 0 && rule.DefaultHeight > 0 {
			dw, dh = rule.DefaultWidth, rule.DefaultHeight
		}
		f.Width, f.Height = dw, dh
		if rw, rh, ok := provider.ParseAspectRatio(aspect); ok {
			area := float64(dw) * float64(dh)
			r := float64(rw) / float64(rh)
			f.Width = int(math.Round(math.Sqrt(area * r)))
			f.Height = int(math.Round(math.Sqrt(area / r)))
		}
	}
	if choices := parseChoices(rule.Choices); len(choices) > 0 {
		c := nearestSize(choices, f.Width, f.Height)
		f.Width, f.Height = c[0], c[1]
	} else if rule.Min > 0 || rule.Max > 0 || rule.Multiple > 0 {
		f.Width, f.Height = scaleInto(f.Width, f.Height, rule)
	}
	if len(caps.AspectRatios) > 0 {
		f.AspectRatio = fitRatio(caps.AspectRatios, width, height, aspect)
	}
	return f
}

// fitRatio picks the ratio to send to a backend that takes ratios: one of
// its own values named by the client as is (including symbolic ones such as
// "match_input_image"), else the nearest to the client's ratio or size, else
// nothing, so the backend applies its own default.
func fitRatio(list []string, width, height int, aspect string) string {
	for _, r := range list {
		if aspect != "" && strings.EqualFold(r, aspect) {
			return r
		}
	}
	if rw, rh, ok := provider.ParseAspectRatio(aspect); ok {
		return nearestRatio(list, rw, rh)
	}
	if width > 0 && height > 0 {
		return nearestRatio(list, width, height)
	}
	return ""
}

// scaleInto keeps the aspect ratio while bringing both sides into
// [Min,Max], then rounds each to Multiple without leaving the bounds.
func scaleInto(w, h int, r provider.SizeRule) (int, int) {
	fw, fh := float64(w), float64(h)
	if r.Max > 0 && max(fw, fh) > float64(r.Max) {
		k := float64(r.Max) / max(fw, fh)
		fw, fh = fw*k, fh*k
	}
	if r.Min > 0 && min(fw, fh) < float64(r.Min) {
		k := float64(r.Min) / min(fw, fh)
		fw, fh = fw*k, fh*k
	}
	return roundSide(fw, r), roundSide(fh, r)
}

// roundSide rounds v to the nearest multiple and clamps it to the rule,
// keeping the clamp itself on a multiple.
func roundSide(v float64, r provider.SizeRule) int {
	m := max(r.Multiple, 1)
	n := int(math.Round(v/float64(m))) * m
	if r.Max > 0 && n > r.Max {
		n = r.Max / m * m
	}
	if r.Min > 0 && n < r.Min {
		n = (r.Min + m - 1) / m * m
	}
	return max(n, m)
}

// parseChoices reads "WxH" entries, skipping malformed ones (config
// validation reports those; the runner must not fail on them).
func parseChoices(list []string) [][2]int {
	var out [][2]int
	for _, s := range list {
		if w, h, ok := parseSize(s); ok {
			out = append(out, [2]int{w, h})
		}
	}
	return out
}

// nearestSize picks the choice whose aspect ratio is closest to w:h
// (compared on a log scale so 2:1 and 1:2 are equally far from 1:1), then
// the one whose area is closest.
func nearestSize(choices [][2]int, w, h int) [2]int {
	want := math.Log(float64(w) / float64(h))
	area := float64(w) * float64(h)
	best := choices[0]
	bestR, bestA := math.Inf(1), math.Inf(1)
	for _, c := range choices {
		dr := math.Abs(math.Log(float64(c[0])/float64(c[1])) - want)
		da := math.Abs(math.Log(float64(c[0]) * float64(c[1]) / area))
		if dr < bestR-1e-9 || (math.Abs(dr-bestR) <= 1e-9 && da < bestA) {
			best, bestR, bestA = c, dr, da
		}
	}
	return best
}

// nearestRatio picks the ratio in list closest to w:h; malformed entries
// are skipped, and the first entry is the answer of last resort.
func nearestRatio(list []string, w, h int) string {
	if r := provider.NearestAspectRatio(list, w, h); r != "" {
		return r
	}
	return list[0]
}

// parseSize reads "WxH" with positive sides.
func parseSize(s string) (w, h int, ok bool) {
	return parsePair(strings.ToLower(strings.TrimSpace(s)), "x")
}

// parsePair reads "A<sep>B" with both sides positive and at most 2^20.
func parsePair(s, sep string) (a, b int, ok bool) {
	l, r, found := strings.Cut(s, sep)
	if !found {
		return 0, 0, false
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(l))
	b, err2 := strconv.Atoi(strings.TrimSpace(r))
	if err1 != nil || err2 != nil || a <= 0 || b <= 0 || a > 1<<20 || b > 1<<20 {
		return 0, 0, false
	}
	return a, b, true
}
