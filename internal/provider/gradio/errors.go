package gradio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
	"github.com/easelgw/easel/internal/retryafter"
)

// newRequest builds an upstream request carrying easel's identity and, when
// configured, the token. Every upstream call goes through here so that no
// request kind can forget the Authorization header.
func (p *Provider) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, &provider.Error{Kind: provider.KindConfig, Message: "building the upstream request failed", NotStarted: true, Err: err}
	}
	req.Header.Set("User-Agent", p.ua)
	req.Header.Set("x-gradio-user", "api")
	if p.cfg.Token != "" && p.sameHost(req) {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	return req, nil
}

// sameHost reports whether req goes to the configured app, so the token is
// never handed to an external host that an output URL happens to name.
func (p *Provider) sameHost(req *http.Request) bool {
	return p.baseURL != nil && strings.EqualFold(p.baseURL.Host, req.URL.Host) && p.baseURL.Scheme == req.URL.Scheme
}

// transportError classifies a failed round trip. Only failures that
// provably happened before the request left (DNS, refused connection) are
// marked NotStarted.
func transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cerr := context.Cause(ctx); errors.Is(cerr, context.DeadlineExceeded) {
			return &provider.Error{Kind: provider.KindTimeout, Message: "the upstream did not answer in time", Err: err}
		}
		return upstream.CanceledError(ctx, "calling the upstream")
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		return &provider.Error{Kind: provider.KindUnavailable, Message: "cannot connect to the upstream", NotStarted: true, Err: err}
	}
	return &provider.Error{Kind: provider.KindUnavailable, Message: "the upstream connection failed", Err: err}
}

// statusError maps a non-2xx answer to a typed error. notStarted says the
// request could not have started work (config, info, join, upload).
func statusError(resp *http.Response, body []byte, notStarted bool) error {
	code := resp.StatusCode
	detail := bodyMessage(body)
	cause := fmt.Errorf("HTTP %d from %s: %s", code, resp.Request.URL.Path, detail)
	e := &provider.Error{Err: cause}
	switch {
	case code == http.StatusTooManyRequests:
		e.Kind, e.Message, e.NotStarted = provider.KindRateLimited, "the upstream is rate limiting requests", true
		e.RetryAfter = retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Kind, e.NotStarted = provider.KindConfig, notStarted
		e.Message = fmt.Sprintf("the upstream refused authorization (HTTP %d): check the backend's token", code)
	case code == http.StatusNotFound:
		e.Kind, e.NotStarted = provider.KindUnavailable, notStarted
		e.Message = "the upstream answered 404 (wrong host, or the Space is down or building)"
	case code == http.StatusServiceUnavailable:
		e.Kind, e.NotStarted = provider.KindUnavailable, notStarted
		e.Message = "the upstream is unavailable (HTTP 503)"
		e.RetryAfter = retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
	case code >= 500:
		e.Kind, e.NotStarted = provider.KindUnavailable, notStarted
		e.Message = fmt.Sprintf("the upstream failed (HTTP %d)", code)
	case code == http.StatusRequestEntityTooLarge:
		e.Kind, e.NotStarted = provider.KindBadRequest, notStarted
		e.Message = "the upstream refused the upload as too large: " + detail
	case code == http.StatusUnprocessableEntity || code == http.StatusBadRequest:
		e.Kind, e.NotStarted = provider.KindBadRequest, notStarted
		e.Message = "the upstream rejected the inputs: " + detail
	default:
		e.Kind, e.NotStarted = provider.KindUpstream, notStarted
		e.Message = fmt.Sprintf("unexpected HTTP %d from the upstream", code)
	}
	return e
}

// bodyMessage extracts readable text from an error body that may be JSON
// (FastAPI detail as string, list or object), plain text or an HTML page.
func bodyMessage(body []byte) string {
	var env struct {
		Detail json.RawMessage `json:"detail"`
		Error  any             `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Detail) > 0 {
		var s string
		if json.Unmarshal(env.Detail, &s) == nil {
			return upstream.PlainText(s)
		}
		var list []map[string]any
		if json.Unmarshal(env.Detail, &list) == nil {
			var msgs []string
			for _, item := range list {
				m, _ := item["message"].(string)
				if m == "" {
					m, _ = item["msg"].(string)
				}
				if name, _ := item["parameter_name"].(string); name != "" && m != "" {
					m = name + ": " + m
				} else if loc, ok := item["loc"].([]any); ok && m != "" {
					parts := make([]string, 0, len(loc))
					for _, l := range loc {
						parts = append(parts, fmt.Sprint(l))
					}
					m = strings.Join(parts, ".") + ": " + m
				}
				if m != "" {
					msgs = append(msgs, upstream.StripHTML(m))
				}
			}
			return upstream.Clip(strings.Join(msgs, "; "), upstream.MaxMessageLen)
		}
		var obj map[string]any
		if json.Unmarshal(env.Detail, &obj) == nil {
			if s, ok := obj["error"].(string); ok {
				return upstream.PlainText(s)
			}
		}
	}
	if s, ok := env.Error.(string); ok && s != "" {
		return upstream.PlainText(s)
	}
	return upstream.PlainText(string(body))
}

var retryInRE = regexp.MustCompile(`(?i)(?:try again|retry) in (\d{1,3}):(\d{1,2}):(\d{1,2})`)

// parseRetryIn reads ZeroGPU's "Try again in H:MM:SS" / "retry in H:MM:SS".
func parseRetryIn(msg string) time.Duration {
	m := retryInRE.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	s, _ := strconv.Atoi(m[3])
	return time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(s)*time.Second
}

// appError classifies a process_completed with success:false. msg is the
// error text (nil when the Space hides it), title the error title.
func appError(msg *string, title string) *provider.Error {
	title = upstream.StripHTML(title)
	if msg == nil {
		return &provider.Error{Kind: provider.KindUpstream, Message: "upstream error (details hidden by the Space)", Title: title}
	}
	text := upstream.PlainText(*msg)
	e := &provider.Error{Kind: provider.KindUpstream, Message: text, Title: title}
	lower := strings.ToLower(text)
	switch {
	case isQuota(title, lower):
		e.Kind = provider.KindRateLimited
		e.RetryAfter = parseRetryIn(text)
	case strings.HasPrefix(title, "ZeroGPU queue timeout") || strings.Contains(lower, "no gpu was available") ||
		strings.Contains(lower, "no gpu is currently available"):
		e.Kind = provider.KindUnavailable
	}
	if e.Message == "" {
		e.Message = "upstream error"
	}
	return e
}

func isQuota(title, lowerMsg string) bool {
	if strings.HasPrefix(title, "ZeroGPU quota") {
		return true
	}
	if strings.Contains(lowerMsg, "exceeded your") &&
		(strings.Contains(lowerMsg, "gpu quota") || strings.Contains(lowerMsg, "zerogpu quota") || strings.Contains(lowerMsg, "runs limit")) {
		return true
	}
	return false
}

// refuse builds an error for a job refused before anything reached the
// upstream's queue: NotStarted, so the runner may retry or fail over.
func refuse(kind provider.ErrorKind, format string, args ...any) *provider.Error {
	e := provider.Errorf(kind, format, args...)
	e.NotStarted = true
	return e
}
