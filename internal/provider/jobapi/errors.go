package jobapi

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/easelgw/easel/internal/provider"
)

// maxMessageLen bounds upstream text copied into error messages.
const maxMessageLen = 500

// maxRetryAfter caps a Retry-After value: anything longer is an upstream
// bug or a daily quota, and either way a day is the most worth reporting.
const maxRetryAfter = 24 * time.Hour

// transportError classifies a failed round trip. Only failures that
// provably happened before the request left (DNS, refused connection) are
// marked NotStarted.
func transportError(ctx context.Context, err error, doing string) *provider.Error {
	if ctx.Err() != nil {
		return canceledError(ctx, doing)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &provider.Error{Kind: provider.KindTimeout, Message: "the upstream did not answer in time while " + doing, Err: err}
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		return &provider.Error{Kind: provider.KindUnavailable, Message: "cannot connect to the upstream while " + doing, NotStarted: true, Err: err}
	}
	return &provider.Error{Kind: provider.KindUnavailable, Message: "the upstream connection failed while " + doing, Err: err}
}

// canceledError reports that ctx ended. A deadline is a timeout rather than
// a cancellation, so the runner reports it as such.
func canceledError(ctx context.Context, doing string) *provider.Error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	if errors.Is(cause, context.DeadlineExceeded) {
		return &provider.Error{Kind: provider.KindTimeout, Message: "job deadline exceeded while " + doing, Err: cause}
	}
	return &provider.Error{Kind: provider.KindCanceled, Message: "canceled while " + doing, Err: cause}
}

// parseRetryAfter reads a Retry-After value (RFC 9110: delay seconds or an
// HTTP date). Garbage, zero, negative and past values give 0 (unknown).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d.Round(time.Second), maxRetryAfter)
		}
	}
	return 0
}

// messageText turns a message value from a JSON answer into display text:
// a string as is, an object by its message, error or detail member (or,
// failing those, its compact JSON), anything else by its JSON spelling.
// HTML is stripped and the length capped.
func messageText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return clip(stripHTML(x))
	case map[string]any:
		for _, k := range []string{"message", "error", "detail", "msg"} {
			if s := messageText(x[k]); s != "" {
				return s
			}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return clip(stripHTML(string(b)))
}

// bodyText extracts readable text from an error body that is not the
// expected JSON: a proxy's HTML page or plain text.
func bodyText(body []byte) string {
	if !utf8.Valid(body) {
		body = []byte(strings.ToValidUTF8(string(body), "\uFFFD"))
	}
	return clip(stripHTML(string(body)))
}

// clip bounds text for messages, cutting on a rune boundary.
func clip(s string) string {
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// stripHTML turns markup into plain text: tags are dropped (block tags
// become spaces), the content of script and style elements is skipped,
// entities are decoded and runs of white space collapse to one space. A
// '<' that does not open a tag stays as text.
func stripHTML(s string) string {
	var b strings.Builder
	skip := "" // name of the script/style element being skipped
	for i := 0; i < len(s); {
		if s[i] != '<' || i+1 >= len(s) || !opensTag(s[i+1]) {
			if skip == "" {
				b.WriteByte(s[i])
			}
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '>')
		if end < 0 {
			break // an unterminated tag: nothing after it is text
		}
		tag := strings.ToLower(s[i+1 : i+end])
		i += end + 1
		name := tagName(tag)
		if skip != "" {
			if name == "/"+skip {
				skip = ""
			}
			continue
		}
		if name == "script" || name == "style" {
			skip = name
			continue
		}
		if blockTags[strings.TrimPrefix(name, "/")] {
			b.WriteByte(' ')
		}
	}
	return strings.Join(strings.Fields(html.UnescapeString(b.String())), " ")
}

func opensTag(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '/' || c == '!' || c == '?'
}

// tagName returns the element name of a tag's inside ("div class=x" →
// "div", "/p" → "/p", "br/" → "br").
func tagName(tag string) string {
	if f := strings.Fields(tag); len(f) > 0 {
		return strings.TrimSuffix(f[0], "/")
	}
	return ""
}

var blockTags = map[string]bool{
	"br": true, "p": true, "div": true, "li": true, "tr": true, "td": true, "th": true, "title": true,
	"h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "body": true, "head": true,
	"html": true, "ul": true, "ol": true, "table": true, "hr": true, "span": false,
}
