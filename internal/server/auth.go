package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// queryKeyParams are query parameters that look like credentials. A key in
// a URL ends up in access logs, browser history and Referer headers, so a
// request carrying one is refused even if its header is valid.
var queryKeyParams = []string{"api_key", "api-key", "apikey", "key", "access_token", "token"}

// unauthorizedMessage is the same for every failure so that a caller cannot
// tell a wrong key from a malformed header.
const unauthorizedMessage = "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'."

type auth struct {
	digests [][sha256.Size]byte
	ids     []string
	exact   map[string]bool
	prefix  []string
}

func newAuth(keys, public []string) (*auth, error) {
	a := &auth{exact: map[string]bool{"/healthz": true}}
	for _, k := range keys {
		if k == "" || strings.TrimSpace(k) != k {
			return nil, errors.New("server: API keys must be non-empty and have no surrounding spaces")
		}
		d := sha256.Sum256([]byte(k))
		a.digests = append(a.digests, d)
		a.ids = append(a.ids, hex.EncodeToString(d[:])[:12])
	}
	for _, p := range public {
		if !strings.HasPrefix(p, "/") {
			return nil, errors.New("server: public paths must start with /")
		}
		if p != "/" && strings.HasSuffix(p, "/") {
			a.prefix = append(a.prefix, p)
		} else {
			a.exact[p] = true
		}
	}
	return a, nil
}

func (a *auth) public(path string) bool {
	if a.exact[path] {
		return true
	}
	for _, p := range a.prefix {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// match compares the presented key with every configured key in constant
// time over digests, so neither timing nor early exit reveals how much of
// a key matched or which key it was.
func (a *auth) match(key string) (string, bool) {
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range a.digests {
		if subtle.ConstantTimeCompare(d[:], a.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return a.ids[found], true
}

// bearer extracts the key from exactly one "Authorization: Bearer <key>"
// header. The scheme is matched as clients send it; anything unusual
// (two headers, extra spaces, other schemes) is a failure.
func bearer(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	key, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || key == "" {
		return "", false
	}
	return key, true
}

func hasQueryKey(r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return false
	}
	q := r.URL.Query()
	for _, name := range queryKeyParams {
		if q.Has(name) {
			return true
		}
	}
	return false
}

func (a *auth) wrap(next http.Handler) http.Handler {
	if len(a.digests) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Public paths ignore Authorization entirely: signed file URLs
		// must work even when a client adds its own (other) key.
		if a.public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		key, ok := bearer(r)
		var id string
		if ok && !hasQueryKey(r) {
			id, ok = a.match(key)
		} else {
			ok = false
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="easel"`)
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", unauthorizedMessage)
			return
		}
		if ri := info(r.Context()); ri != nil {
			ri.keyID = id
		} else {
			r = r.WithContext(WithIDs(r.Context(), "", id))
		}
		next.ServeHTTP(w, r)
	})
}
