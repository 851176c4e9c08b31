// Package upstream holds the helpers every HTTP backend uses: the tuned
// default client, bounded body reads, Retry-After parsing, HTML stripping
// for upstream messages and multipart file parts. Keeping them in one place
// means the backends cannot drift apart on the bounds and limits that
// protect the gateway from a misbehaving upstream.
package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/easelgw/easel/internal/provider"
)

// DefaultUserAgent is sent when a backend is given no User-Agent.
const DefaultUserAgent = "easel"

// NewClient returns the tuned client a backend uses when given none: a 5s
// connect timeout and no overall timeout, because one job's stream or
// polling can last many minutes; per-call bounds come from contexts. Each
// call returns a client with its own transport, so closing one backend's
// idle connections leaves the others alone.
func NewClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// ClientOr returns c, or a NewClient when c is nil; own reports the
// latter, so that only a backend that built its client closes its idle
// connections.
func ClientOr(c *http.Client) (client *http.Client, own bool) {
	if c == nil {
		return NewClient(), true
	}
	return c, false
}

// UserAgentOr returns ua, or DefaultUserAgent when ua is empty.
func UserAgentOr(ua string) string {
	if ua == "" {
		return DefaultUserAgent
	}
	return ua
}

// BackendLogger returns log (a discarding logger when nil) with the
// backend's name attached, so every line a backend writes says whose it is.
func BackendLogger(log *slog.Logger, name string) *slog.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("backend", name)
}

// ReadLimited reads at most limit bytes of r; tooBig reports that more
// followed (the extra bytes are not kept).
func ReadLimited(r io.Reader, limit int64) (body []byte, tooBig bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(body)) > limit {
		return body[:limit], true, err
	}
	return body, false, err
}

// CanceledError reports that ctx ended while doing ("downloading the
// result"), wrapping its cause. A deadline is a timeout rather than a
// cancellation, so the runner reports it as such.
func CanceledError(ctx context.Context, doing string) *provider.Error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	if errors.Is(cause, context.DeadlineExceeded) {
		return &provider.Error{Kind: provider.KindTimeout, Message: "job deadline exceeded while " + doing, Err: cause}
	}
	return &provider.Error{Kind: provider.KindCanceled, Message: "canceled while " + doing, Err: cause}
}
