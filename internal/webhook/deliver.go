package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/retryafter"
)

const (
	// DefaultTimeout bounds one attempt (connect, send, answer): the low
	// end of the spec's 15-30 s, so a hung receiver holds a worker slot
	// briefly.
	DefaultTimeout = 15 * time.Second
	// DefaultUserAgent identifies webhook requests to receivers.
	DefaultUserAgent = "easel-webhook"
	// MaxResponseBytes is how much of a receiver's answer is read (and
	// discarded) so the connection can be reused; the rest is dropped
	// with the connection. No part of it is kept, logged or shown.
	MaxResponseBytes = 64 << 10
	// maxURLLen bounds the target URLs accepted; longer is not a plausible
	// endpoint.
	maxURLLen = 8 << 10
	// maxIDLen bounds a message id, which travels in a header.
	maxIDLen = 256
)

var (
	// ErrInvalidURL means the target URL cannot be sent to: unparsable,
	// not http or https, carrying credentials, without a host, or
	// containing whitespace, control bytes or backslashes. The message
	// never repeats the URL, which may hold the receiver's token.
	ErrInvalidURL = errors.New("webhook: invalid endpoint URL")
	// ErrMessage means the Message or Signer handed to Attempt is unusable
	// (empty id, an id with '.', a nil Signer).
	ErrMessage = errors.New("webhook: invalid message")
	// ErrTimeout means the attempt's timeout expired before the receiver
	// answered.
	ErrTimeout = errors.New("webhook: attempt timed out")
)

// StatusError records a receiver's non-2xx answer. It carries no body:
// the receiver's content is never echoed.
type StatusError struct {
	// StatusCode is the HTTP status the receiver answered.
	StatusCode int
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("webhook: receiver answered HTTP %d", e.StatusCode)
}

// Outcome is what the caller does after an attempt.
type Outcome int

// Outcomes of one attempt. The zero value is deliberately none of them.
const (
	// Delivered: the receiver answered 2xx; the message is done.
	Delivered Outcome = iota + 1
	// Retry: the attempt failed (a non-2xx answer other than 410, a
	// timeout, a network error); send again after NextDelay.
	Retry
	// Disable: the receiver answered 410 Gone; stop sending this and
	// later messages to the endpoint.
	Disable
	// Fail: no attempt at this URL can succeed (the SSRF guard refused
	// the destination, the URL or message is invalid); give the message
	// up without retrying. The endpoint stays enabled.
	Fail
)

// String names the outcome for logs and job records.
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Disable:
		return "disable"
	case Fail:
		return "fail"
	default:
		return "Outcome(" + strconv.Itoa(int(o)) + ")"
	}
}

// Result describes one attempt.
type Result struct {
	// Status is the receiver's HTTP status, or 0 when none arrived.
	Status int
	// Outcome says what to do next.
	Outcome Outcome
	// Throttled is set for 429, 502, 503 and 504, which the spec reads as
	// "the receiver is overloaded": a runner may slow the endpoint's other
	// messages too.
	Throttled bool
	// RetryAfter is the receiver's Retry-After (seconds or HTTP date), 0
	// when absent or unusable, at most MaxRetryAfter. Pass it to NextDelay.
	RetryAfter time.Duration
	// Err is nil when Delivered; otherwise it explains the failure: a
	// *StatusError, ErrTimeout, a *netguard.BlockedError, ErrInvalidURL,
	// ErrMessage, the caller's context error or a network error. It never
	// contains the URL's path or query, nor any of the response body, but
	// it may name a refused internal address: it is for logs and job
	// records, and end users are shown only Outcome and Status.
	Err error
}

// Options configures a Deliverer. Zero fields take the defaults.
type Options struct {
	// Client sends the requests. It must be the SSRF-guarded client
	// (netguard.New(...).HTTPClient()) built with the settings for webhook
	// targets, so every attempt's destination is checked at dial time;
	// nil means netguard's defaults: public addresses on ports 80 and 443
	// only. A receiver on the local network needs
	// netguard.Options.AllowPrivate (or AllowPrefixes for its range) and,
	// unless it listens on 80 or 443, its port in AllowedPorts. Set
	// MaxRedirects to -1; redirects are never followed in any case.
	Client *http.Client
	// Timeout bounds one attempt; zero or negative means DefaultTimeout.
	// The spec recommends 15 to 30 s; tests use less.
	Timeout time.Duration
	// UserAgent is sent on every request; empty means DefaultUserAgent.
	UserAgent string
	// Logger receives one record per attempt (message id, event type,
	// host, status, outcome, duration); nil discards them. Records never
	// contain the URL's path or query, a signature, a secret or the body.
	Logger *slog.Logger
	// Now is the clock for webhook-timestamp and HTTP-date Retry-After;
	// nil means time.Now.
	Now func() time.Time
}

// Deliverer sends one webhook attempt at a time. It is safe for
// concurrent use.
type Deliverer struct {
	hc        *http.Client
	timeout   time.Duration
	userAgent string
	log       *slog.Logger
	now       func() time.Time
}

// NewDeliverer builds a Deliverer; see Options for the defaults.
func NewDeliverer(opts Options) *Deliverer {
	d := &Deliverer{
		timeout:   opts.Timeout,
		userAgent: opts.UserAgent,
		log:       opts.Logger,
		now:       opts.Now,
	}
	if d.timeout <= 0 {
		d.timeout = DefaultTimeout
	}
	if d.userAgent == "" {
		d.userAgent = DefaultUserAgent
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	base := opts.Client
	if base == nil {
		base = netguard.New(netguard.Options{
			MaxRedirects: -1,
			Timeout:      d.timeout,
			UserAgent:    d.userAgent,
		}).HTTPClient()
	}
	hc := *base
	// A 3xx is a failed delivery, not a new target: following it would
	// send the signed payload somewhere the owner never registered.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// Cookies from one receiver must never reach another.
	hc.Jar = nil
	d.hc = &hc
	return d
}

// Attempt POSTs msg to rawURL once, signed by signer with a timestamp
// taken now, and classifies the answer. It never panics on bad input and
// returns within the attempt timeout (or when ctx ends).
func (d *Deliverer) Attempt(ctx context.Context, rawURL string, msg Message, signer *Signer) Result {
	start := time.Now()
	u, err := checkURL(rawURL)
	var res Result
	switch {
	case err != nil:
		res = Result{Outcome: Fail, Err: err}
	case signer == nil:
		res = Result{Outcome: Fail, Err: fmt.Errorf("%w: no signer", ErrMessage)}
	default:
		if err := checkID(msg.ID); err != nil {
			res = Result{Outcome: Fail, Err: err}
		} else {
			res = d.send(ctx, u, msg, signer)
		}
	}
	d.logResult(ctx, u, msg, res, time.Since(start))
	return res
}

func (d *Deliverer) send(ctx context.Context, u *url.URL, msg Message, signer *Signer) Result {
	host := u.Host
	attemptCtx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(attemptCtx, http.MethodPost, u.String(), bytes.NewReader(msg.Body))
	if err != nil {
		return Result{Outcome: Fail, Err: fmt.Errorf("%w: building request: %w", ErrInvalidURL, stripURL(err))}
	}
	ts := d.now()
	// Set as written in the spec (lower case) rather than canonicalised:
	// HTTP says case does not matter, but some receivers compare exactly.
	req.Header["webhook-id"] = []string{msg.ID}
	req.Header["webhook-timestamp"] = []string{strconv.FormatInt(ts.Unix(), 10)}
	req.Header["webhook-signature"] = []string{signer.Sign(msg.ID, ts, msg.Body)}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.userAgent)

	resp, err := d.hc.Do(req)
	if err != nil {
		return classifyError(ctx, host, err)
	}
	drain(resp.Body)
	_ = resp.Body.Close()
	return classifyStatus(resp.StatusCode, resp.Header.Get("Retry-After"), d.now())
}

// classifyStatus maps a receiver's answer to an outcome.
func classifyStatus(status int, retryAfter string, now time.Time) Result {
	res := Result{Status: status}
	switch {
	case status >= 200 && status <= 299:
		res.Outcome = Delivered
		return res
	case status == http.StatusGone:
		res.Outcome = Disable
	default:
		// 3xx included: the spec counts it as a failure, and retrying gives
		// the owner time to fix the URL.
		res.Outcome = Retry
		res.RetryAfter = retryafter.Parse(retryAfter, now)
		switch status {
		case http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			res.Throttled = true
		}
	}
	res.Err = &StatusError{StatusCode: status}
	return res
}

// classifyError maps a failed exchange (no response) to an outcome.
func classifyError(parent context.Context, host string, err error) Result {
	timedOut := isTimeout(err) // before stripping: *url.Error knows too
	err = stripURL(err)
	var blocked *netguard.BlockedError
	switch {
	case errors.As(err, &blocked):
		return Result{Outcome: Fail, Err: fmt.Errorf("posting to %s: %w", host, err)}
	case errors.Is(err, netguard.ErrInvalidURL):
		return Result{Outcome: Fail, Err: fmt.Errorf("%w: %w", ErrInvalidURL, err)}
	case parent.Err() != nil:
		// The caller stopped (shutdown): not the receiver's fault, so the
		// message stays due.
		return Result{Outcome: Retry, Err: fmt.Errorf("posting to %s: %w", host, parent.Err())}
	case timedOut:
		return Result{Outcome: Retry, Err: fmt.Errorf("posting to %s: %w: %w", host, ErrTimeout, err)}
	default:
		return Result{Outcome: Retry, Err: fmt.Errorf("posting to %s: %w", host, err)}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, netguard.ErrTimeout) ||
		errors.As(err, &ne) && ne.Timeout()
}

// stripURL drops the *url.Error layer, whose message repeats the full URL
// (with any token in its path or query).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// drain reads at most MaxResponseBytes of a response so a well-behaved
// receiver's connection can be reused; a larger answer is cut off by
// closing. It returns how much it read.
func drain(r io.Reader) int64 {
	n, _ := io.Copy(io.Discard, io.LimitReader(r, MaxResponseBytes))
	return n
}

// checkURL refuses, before any network activity, a URL the guarded client
// should never see. The address checks themselves happen at dial time in
// the guard.
func checkURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidURL)
	}
	if len(raw) > maxURLLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidURL, maxURLLen)
	}
	for i := 0; i < len(raw); i++ {
		// Parsers disagree about these (a browser reads \ as /), so none
		// reach one.
		if c := raw[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return nil, fmt.Errorf("%w: byte %#x at offset %d", ErrInvalidURL, c, i)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable", ErrInvalidURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidURL, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in URL", ErrInvalidURL)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port out of range", ErrInvalidURL)
		}
	}
	// The fragment is never sent; dropping it keeps it out of logs too.
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// checkID refuses ids that would make the signed content ambiguous ('.')
// or could not travel in a header.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: id length %d, want 1 to %d", ErrMessage, len(id), maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '.' {
			return fmt.Errorf("%w: id byte %#x at offset %d", ErrMessage, c, i)
		}
	}
	return nil
}

func (d *Deliverer) logResult(ctx context.Context, u *url.URL, msg Message, res Result, took time.Duration) {
	attrs := []slog.Attr{
		slog.String("webhook_id", msg.ID),
		slog.String("event", msg.Type),
		slog.String("outcome", res.Outcome.String()),
		slog.Int("status", res.Status),
		slog.Duration("duration", took),
	}
	if u != nil {
		attrs = append(attrs, slog.String("host", u.Host))
	}
	level := slog.LevelInfo
	if res.Outcome != Delivered {
		level = slog.LevelWarn
		attrs = append(attrs, slog.String("error", res.Err.Error()))
		if res.RetryAfter > 0 {
			attrs = append(attrs, slog.Duration("retry_after", res.RetryAfter))
		}
	}
	d.log.LogAttrs(ctx, level, "webhook attempt", attrs...)
}
