package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/jobs"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/server"
)

// statusClientClosed is the conventional status for "the client went away";
// it is only ever logged or sent when a job was cancelled while its client
// was still listening.
const statusClientClosed = 499

// maxRetryAfter keeps retry hints within what both official SDKs honour
// (the Node SDK ignores hints above 60 s and backs off on its own).
const maxRetryAfter = 60 * time.Second

// defaultBusyRetryAfter is suggested on a 503 when the upstream gave no
// Retry-After of its own.
const defaultBusyRetryAfter = 5 * time.Second

// apiError is an error already shaped for the OpenAI envelope.
type apiError struct {
	Status  int
	Type    string
	Code    string // "" is sent as null
	Param   string // "" is sent as null
	Message string
	// RetryAfter, when positive, is sent as Retry-After and retry-after-ms.
	RetryAfter time.Duration
	// NoRetry sends x-should-retry: false: the work may have run upstream
	// and an automatic replay would run it again.
	NoRetry bool
	// exactRetryAfter sends RetryAfter uncapped: a key's quota knows when
	// it frees up, even a day ahead.
	exactRetryAfter bool
	// cause is logged, never sent.
	cause error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.Message + ": " + e.cause.Error()
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return e.cause }

// errorBody is the OpenAI error envelope. Every key is always present;
// param and code are null when unknown.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	o := errorObject{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		p := e.Param
		o.Param = &p
	}
	if e.Code != "" {
		c := e.Code
		o.Code = &c
	}
	return errorBody{Error: o}
}

// badRequest is a 400 naming the offending parameter.
func badRequest(param, code, message string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Code: code, Message: message}
}

// toAPIError maps any error to its OpenAI shape, reading typed errors only.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var inv *gen.InvalidError
	if errors.As(err, &inv) {
		code := inv.Code
		if code == "" {
			code = "invalid_value"
		}
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Param: inv.Param, Code: code, Message: inv.Message, cause: err}
	}
	var nf *gen.NotFoundError
	if errors.As(err, &nf) {
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Param: "model", Code: "model_not_found",
			Message: "The model '" + truncate(nf.Model, 200) + "' does not exist.", cause: err}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit)
	}
	var le *keys.LimitError
	if errors.As(err, &le) {
		typ := "requests"
		if le.Code == keys.CodeQuota {
			typ = "insufficient_quota"
		}
		if le.Status() != http.StatusTooManyRequests {
			typ = "invalid_request_error"
		}
		return &apiError{Status: le.Status(), Type: typ, Code: le.Code, Message: le.Message, RetryAfter: le.RetryAfter,
			exactRetryAfter: true, NoRetry: le.RetryAfter > maxRetryAfter, cause: err}
	}
	if errors.Is(err, jobs.ErrStopped) {
		return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "service_unavailable",
			Message: "The server is shutting down; try again.", RetryAfter: time.Second, cause: err}
	}
	if pe, ok := provider.AsError(err); ok {
		return fromProvider(pe)
	}
	if errors.Is(err, gen.ErrClosed) {
		return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "service_unavailable",
			Message: "The server is shutting down; try again.", RetryAfter: time.Second, cause: err}
	}
	if errors.Is(err, gen.ErrCanceled) || errors.Is(err, context.Canceled) {
		return &apiError{Status: statusClientClosed, Type: "invalid_request_error", Code: "canceled",
			Message: "The request was canceled.", NoRetry: true, cause: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apiError{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
			Message: "The image job took too long.", NoRetry: true, cause: err}
	}
	return &apiError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
		Message: "The server had an error while processing your request.", cause: err}
}

func tooLarge(limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
		Code:    "payload_too_large",
		Message: "The request body is larger than " + strconv.FormatInt(limit, 10) + " bytes."}
}

func fromProvider(pe *provider.Error) *apiError {
	msg := pe.Message
	e := &apiError{cause: pe, Code: pe.Kind.String()}
	switch pe.Kind {
	case provider.KindBadRequest:
		e.Status, e.Type = http.StatusBadRequest, "invalid_request_error"
		if msg == "" {
			msg = "The backend rejected the request."
		}
	case provider.KindRateLimited:
		e.Status, e.Type, e.Code = http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded"
		e.RetryAfter = max(pe.RetryAfter, time.Second)
		if msg == "" {
			msg = "The backend is rate limited; try again later."
		}
	case provider.KindUnavailable:
		e.Status, e.Type, e.Code = http.StatusServiceUnavailable, "server_error", "service_unavailable"
		e.RetryAfter = pe.RetryAfter
		if e.RetryAfter <= 0 {
			// Busy upstreams rarely say how long; a short hint keeps SDK
			// retries from hammering them at once.
			e.RetryAfter = defaultBusyRetryAfter
		}
		if msg == "" {
			msg = "The backend is unavailable; try again later."
		}
	case provider.KindTimeout:
		e.Status, e.Type = http.StatusGatewayTimeout, "server_error"
		e.NoRetry = !pe.NotStarted
		if msg == "" {
			msg = "The backend took too long."
		}
	case provider.KindCanceled:
		e.Status, e.Type, e.NoRetry = statusClientClosed, "invalid_request_error", true
		if msg == "" {
			msg = "The request was canceled."
		}
	default: // upstream, protocol, config
		e.Status, e.Type = http.StatusBadGateway, "server_error"
		e.NoRetry = !pe.NotStarted
		if msg == "" {
			msg = "The backend failed to produce an image."
		}
	}
	e.Message = msg
	return e
}

// setRetryHeaders writes the retry hints for e on h.
func setRetryHeaders(h http.Header, e *apiError) {
	if e.RetryAfter > 0 {
		d := e.RetryAfter
		if !e.exactRetryAfter {
			d = min(d, maxRetryAfter)
		}
		secs := int64(math.Ceil(d.Seconds()))
		h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(max(d.Milliseconds(), 1), 10))
	}
	if e.NoRetry {
		h.Set("X-Should-Retry", "false")
	}
}

// writeError is the one place errors become HTTP responses. It logs the
// error once. When the client is gone there is nobody to answer, so it only
// logs.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	a.logError(r, e)
	if r.Context().Err() != nil {
		return
	}
	h := w.Header()
	setRetryHeaders(h, e)
	writeJSON(w, e.Status, e.body())
}

func (a *API) logError(r *http.Request, e *apiError) {
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelWarn
	}
	if e.Status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	msg := "request failed"
	if r.Context().Err() != nil {
		msg = "client went away"
	}
	attrs := []slog.Attr{
		slog.String("request_id", server.RequestID(r.Context())),
		slog.Int("status", e.Status),
		slog.String("code", e.Code),
		slog.String("param", e.Param),
		slog.String("error", e.Error()),
	}
	a.log.LogAttrs(r.Context(), level, msg, attrs...)
}

// writeJSON sends v with the exact content type the SDKs need to parse it.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// A client that stops reading must not hold the handler for long.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(jsonWriteTimeout))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// truncate caps echoed client text in messages.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
