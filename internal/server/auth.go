package server

import (
	"context"
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
	authn   Authenticator
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

// Principal is who a request comes from, as an Authenticator saw it.
type Principal struct {
	// KeyID identifies the API key; job ownership uses it. Empty means
	// no key (auth is off).
	KeyID string
	// Scopes are the key's scopes ("admin", "user").
	Scopes []string
}

// Authenticator decides who sends a request to a non-public path. It is
// how the server learns about keys it does not hold itself (keys in a
// database, with limits).
type Authenticator interface {
	// Authenticate checks r. On success it returns the context the rest
	// of the chain runs with (derived from r.Context(), carrying whatever
	// the authenticator's own handlers read) and the caller's Principal;
	// when auth is off it returns r.Context() and a zero Principal. When
	// ok is false it has written the response (401, 429, ...) itself.
	Authenticate(w http.ResponseWriter, r *http.Request) (ctx context.Context, p Principal, ok bool)
}

// WriteUnauthorized writes the 401 every authentication failure gets: one
// body for all, so a caller cannot tell a wrong secret from an unknown id
// or a malformed header.
func WriteUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="easel"`)
	writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", unauthorizedMessage)
}

// BearerKey returns the key of r's single "Authorization: Bearer <key>"
// header; ok is false for no header, any other shape, or a credential-like
// query parameter (refused even next to a valid header, so keys never
// travel in URLs). presented reports whether r carried anything that looks
// like a credential, so a caller can tell "no key" from "a wrong key".
func BearerKey(r *http.Request) (key string, presented, ok bool) {
	queryKey := hasQueryKey(r)
	presented = queryKey || len(r.Header.Values("Authorization")) > 0
	key, ok = bearer(r)
	if queryKey {
		return "", presented, false
	}
	return key, presented, ok
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

// operatorScopes are the scopes of keys given in Options.APIKeys: they are
// the operator's own keys.
var operatorScopes = []string{"admin", "user"}

func (a *auth) wrap(next http.Handler) http.Handler {
	if a.authn == nil && len(a.digests) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Public paths ignore Authorization entirely: signed file URLs
		// must work even when a client adds its own (other) key.
		if a.public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		var p Principal
		if a.authn != nil {
			ctx, got, ok := a.authn.Authenticate(w, r)
			if !ok {
				return
			}
			r, p = r.WithContext(ctx), got
		} else {
			key, ok := bearer(r)
			var id string
			if ok && !hasQueryKey(r) {
				id, ok = a.match(key)
			} else {
				ok = false
			}
			if !ok {
				WriteUnauthorized(w)
				return
			}
			p = Principal{KeyID: id, Scopes: operatorScopes}
		}
		if ri := info(r.Context()); ri != nil {
			ri.keyID, ri.scopes = p.KeyID, p.Scopes
		} else {
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, &requestInfo{keyID: p.KeyID, scopes: p.Scopes}))
		}
		next.ServeHTTP(w, r)
	})
}
