package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"time"
)

type ctxKey struct{}

// requestInfo is shared by every layer of one request: the outer layer
// creates it, auth fills keyID, and the access log reads both.
type requestInfo struct {
	id     string
	keyID  string
	scopes []string
}

func info(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(ctxKey{}).(*requestInfo)
	return ri
}

// RequestID returns the request id the middleware assigned, or "".
func RequestID(ctx context.Context) string {
	if ri := info(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// KeyID returns the id of the API key that authenticated the request (for
// keys from the environment the first 12 hex digits of the key's SHA-256,
// for database keys their 8-character id), or "" when auth is off or the
// path is public.
func KeyID(ctx context.Context) string {
	if ri := info(ctx); ri != nil {
		return ri.keyID
	}
	return ""
}

// Scopes returns the scopes of the API key that authenticated the request
// ("admin", "user"), or nil when auth is off or the path is public.
func Scopes(ctx context.Context) []string {
	if ri := info(ctx); ri != nil {
		return ri.scopes
	}
	return nil
}

// IsAdmin reports whether the request's key has the admin scope.
func IsAdmin(ctx context.Context) bool {
	return slices.Contains(Scopes(ctx), "admin")
}

// WithIDs returns ctx carrying a request id and key id as the middleware
// would set them; for tests and non-HTTP callers of handlers.
func WithIDs(ctx context.Context, requestID, keyID string) context.Context {
	return context.WithValue(ctx, ctxKey{}, &requestInfo{id: requestID, keyID: keyID})
}

// maxRequestIDLen bounds an inbound X-Request-Id we are willing to echo
// and log.
const maxRequestIDLen = 128

// safeRequestID reports whether an inbound id can be echoed and logged
// as is: short, and only characters that cannot forge log lines or headers.
func safeRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

// recorder remembers the status and byte count for the access log and
// whether headers went out (a panic after that cannot send a 500).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Flush lets streaming handlers that assert http.Flusher work through the
// chain.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer for
// deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// outer is the first layer: it assigns the request id, recovers panics and
// writes the access log line, all around the same recorder.
type outer struct {
	log  *slog.Logger
	next http.Handler
}

func (o *outer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !safeRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	ri := &requestInfo{id: id}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
	rec := &recorder{ResponseWriter: w}

	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				// The handler chose to abort the connection; net/http
				// handles that quietly and so do we.
				o.access(r, rec, id, start)
				panic(p)
			}
			o.log.Error("panic serving request",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("panic", fmt.Sprint(p)),
				slog.String("stack", string(debug.Stack())))
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, "server_error", "internal_error",
					"The server had an error while processing your request.")
			}
		}
		o.access(r, rec, id, start)
	}()
	o.next.ServeHTTP(rec, r)
}

// access logs one line per request. It records only the path: query
// strings can carry URL signatures, and headers can carry keys.
func (o *outer) access(r *http.Request, rec *recorder, id string, start time.Time) {
	// Checked first: the attributes below are built for every request, and
	// access logging is often off.
	if !o.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	status := rec.status
	if status == 0 {
		// Nothing was written: net/http sends 200 with an empty body.
		status = http.StatusOK
	}
	o.log.Info("http request",
		slog.String("request_id", id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("key_id", info(r.Context()).keyID))
}

// WriteError writes an OpenAI-shaped error body:
// {"error":{"message","type","param":null,"code"}}, not cacheable.
func WriteError(w http.ResponseWriter, status int, typ, code, message string) {
	writeError(w, status, typ, code, message)
}

// writeError writes an OpenAI-shaped error body.
func writeError(w http.ResponseWriter, status int, typ, code, message string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": message,
		"type":    typ,
		"param":   nil,
		"code":    code,
	}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
