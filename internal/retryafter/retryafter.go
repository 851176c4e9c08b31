// Package retryafter reads the Retry-After header (RFC 9110 §10.2.3) one way
// for every outbound call easel makes: image backends and webhook
// receivers alike.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Max caps a Retry-After value: anything longer is an upstream's "not
// today", and a longer wait would only outlive every deadline easel has.
const Max = 24 * time.Hour

// Parse reads v, either delay-seconds or an HTTP date taken relative to now.
// Garbage (including a number too large to represent), zero, negative and
// past values give 0, meaning "no request": the caller's own backoff applies.
// Anything longer than Max is cut to it. Dates are rounded to the second.
func Parse(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(Max/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d.Round(time.Second), Max)
		}
	}
	return 0
}
