package openaiapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/easelgw/easel/internal/blob"
)

// servedTypes are the only types a stored file is served as inline;
// anything else goes out as an opaque download, so a stored object can
// never run as a page on easel's origin.
var servedTypes = map[string]bool{
	"image/png":  true,
	"image/jpeg": true,
	"image/webp": true,
	"image/gif":  true,
}

// handleFile serves a stored result behind a signed, expiring URL. The
// signature is the only credential: the route is public, and an extra
// Authorization header (some clients send their API key everywhere) is
// ignored.
func (a *API) handleFile(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	exp, sig := q.Get("exp"), q.Get("sig")
	forbidden := &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "invalid_signature",
		Message: "The file URL is invalid or has expired."}
	if !validKey(key) || exp == "" || sig == "" {
		a.writeError(w, r, forbidden)
		return
	}
	if err := a.signer.Verify(key, exp, sig); err != nil {
		forbidden.cause = err
		a.writeError(w, r, forbidden)
		return
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		a.writeError(w, r, forbidden)
		return
	}
	remaining := expires - a.now().Unix()
	if remaining <= 0 {
		a.writeError(w, r, forbidden)
		return
	}
	rc, info, err := a.svc.Blobs().Get(r.Context(), key)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			a.writeError(w, r, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
				Code: "not_found", Message: "The file does not exist.", cause: err})
			return
		}
		a.writeError(w, r, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	if servedTypes[info.MIME] {
		h.Set("Content-Type", info.MIME)
	} else {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", "attachment")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Objects are immutable, but a cache must not outlive the signature.
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(remaining, 10))
	http.ServeContent(w, r, "", info.Modified, rc)
}

// validKey accepts the blob key shapes easel mints (hex digest plus an
// extension) and nothing that could walk a path.
func validKey(key string) bool {
	if key == "" || len(key) > 200 || key[0] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
