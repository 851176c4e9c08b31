package jobapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// transportError classifies a failed round trip. Only failures that
// provably happened before the request left (DNS, refused connection) are
// marked NotStarted.
func transportError(ctx context.Context, err error, doing string) *provider.Error {
	if ctx.Err() != nil {
		return upstream.CanceledError(ctx, doing)
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

// messageText turns a message value from a JSON answer into display text:
// a string as is, an object by its message, error or detail member (or,
// failing those, its compact JSON), anything else by its JSON spelling.
// HTML is stripped and the length capped.
func messageText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return upstream.PlainText(x)
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
	return upstream.PlainText(string(b))
}

// bodyText extracts readable text from an error body that is not the
// expected JSON: a proxy's HTML page or plain text.
func bodyText(body []byte) string {
	if !utf8.Valid(body) {
		body = []byte(strings.ToValidUTF8(string(body), "\uFFFD"))
	}
	return upstream.PlainText(string(body))
}
