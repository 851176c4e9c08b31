package provider

import (
	"errors"
	"fmt"
	"time"
)

// ErrorKind classifies a provider failure so the runner (retry, failover)
// and the HTTP layer (status code) read the cause, never the message text.
type ErrorKind int

const (
	// KindUpstream: the upstream failed while doing the work (HTTP 502).
	KindUpstream ErrorKind = iota
	// KindRateLimited: the upstream or its quota refused for now (429).
	KindRateLimited
	// KindUnavailable: the upstream is busy, full or down (503).
	KindUnavailable
	// KindTimeout: the upstream stalled or exceeded a deadline (504).
	KindTimeout
	// KindBadRequest: the upstream rejected the inputs (400).
	KindBadRequest
	// KindProtocol: the upstream answered something easel cannot read (502).
	KindProtocol
	// KindCanceled: the work was cancelled (by the client or the upstream).
	KindCanceled
	// KindConfig: the backend is misconfigured (bad endpoint, auth refused);
	// an operator problem (502 to the client, logged loudly).
	KindConfig
)

func (k ErrorKind) String() string {
	switch k {
	case KindUpstream:
		return "upstream_error"
	case KindRateLimited:
		return "rate_limited"
	case KindUnavailable:
		return "unavailable"
	case KindTimeout:
		return "timeout"
	case KindBadRequest:
		return "bad_request"
	case KindProtocol:
		return "upstream_protocol_error"
	case KindCanceled:
		return "canceled"
	case KindConfig:
		return "backend_config_error"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParseErrorKind is the inverse of ErrorKind.String, for kinds stored as
// text (job records).
func ParseErrorKind(s string) (ErrorKind, bool) {
	for k := KindUpstream; k <= KindConfig; k++ {
		if k.String() == s {
			return k, true
		}
	}
	return KindUpstream, false
}

// Error is the typed error every provider returns.
type Error struct {
	Kind ErrorKind
	// Message is safe to show to easel's client: the upstream's own text
	// with HTML stripped, never a secret.
	Message string
	// Title is the upstream's error title, if it gave one.
	Title string
	// RetryAfter is how long the upstream asked us to wait (0 if unknown).
	RetryAfter time.Duration
	// NotStarted is true when the upstream provably did not start the work
	// (connect failure, queue full, 429 before acceptance): only then may
	// the runner retry or fail over without risking a duplicate run.
	NotStarted bool
	// Err is the underlying cause, for logs (may hold details not fit for
	// the client).
	Err error
}

func (e *Error) Error() string {
	msg := e.Kind.String()
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given kind with a formatted message.
func Errorf(kind ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe, true
	}
	return nil, false
}
