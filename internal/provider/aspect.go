package provider

import (
	"math"
	"strconv"
	"strings"
)

// NearestAspectRatio returns the "W:H" entry of list closest to w:h,
// compared on a log scale so that 2:1 and 1:2 are equally far from 1:1.
// Symbolic entries such as "match_input_image" are skipped; "" means that
// w or h is not positive or that no entry is a ratio. Ties go to the
// earlier entry. It lives here, beside Capabilities.AspectRatios, because
// both the runner and the backends that take ratios choose from such lists.
func NearestAspectRatio(list []string, w, h int) string {
	if w <= 0 || h <= 0 {
		return ""
	}
	want := math.Log(float64(w) / float64(h))
	best, bestD := "", math.Inf(1)
	for _, s := range list {
		rw, rh, ok := ParseAspectRatio(s)
		if !ok {
			continue
		}
		if d := math.Abs(math.Log(float64(rw)/float64(rh)) - want); d < bestD-1e-9 {
			best, bestD = s, d
		}
	}
	return best
}

// ParseAspectRatio reads "W:H" with positive terms of at most 1<<20 (space
// around either term is allowed).
func ParseAspectRatio(s string) (w, h int, ok bool) {
	l, r, found := strings.Cut(strings.TrimSpace(s), ":")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(strings.TrimSpace(l))
	h, err2 := strconv.Atoi(strings.TrimSpace(r))
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 || w > 1<<20 || h > 1<<20 {
		return 0, 0, false
	}
	return w, h, true
}
