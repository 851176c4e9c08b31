package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsAllowMethods are the methods a browser may use cross-origin.
const corsAllowMethods = "GET, POST, DELETE, OPTIONS"

// corsDefaultHeaders are allowed when a preflight lists none we can echo.
const corsDefaultHeaders = "authorization, content-type"

// corsExposeHeaders lets browser callers read the ids and retry hints.
const corsExposeHeaders = "x-request-id, x-easel-job-id, retry-after, retry-after-ms, x-should-retry, " +
	"x-ratelimit-limit-requests, x-ratelimit-remaining-requests"

// corsMaxAge caches a preflight for ten minutes.
const corsMaxAge = "600"

// cors answers preflights and marks responses for allowed origins. Origins
// are compared exactly (scheme, host and port); "null" is never allowed,
// because sandboxed frames and data: documents all share it.
type cors struct {
	any     bool
	allowed map[string]bool
}

func newCORS(origins []string) (*cors, error) {
	c := &cors{allowed: map[string]bool{}}
	for _, o := range origins {
		switch {
		case o == "*":
			if len(origins) != 1 {
				return nil, fmt.Errorf("server: CORS origin \"*\" must be the only entry")
			}
			c.any = true
		case o == "null" || o == "":
			return nil, fmt.Errorf("server: CORS origin %q is not allowed", o)
		default:
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				return nil, fmt.Errorf("server: CORS origin %q must be scheme://host[:port]", o)
			}
			c.allowed[o] = true
		}
	}
	return c, nil
}

func (c *cors) enabled() bool { return c.any || len(c.allowed) > 0 }

func (c *cors) allows(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	return c.any || c.allowed[origin]
}

func (c *cors) wrap(next http.Handler) http.Handler {
	if !c.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if !c.any {
			// The answer depends on Origin even when it is refused, so
			// shared caches must key on it.
			h.Add("Vary", "Origin")
		}
		preflight := r.Method == http.MethodOptions && origin != "" &&
			r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if c.allows(origin) {
				c.setOrigin(h, origin)
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", requestedHeaders(r))
				h.Set("Access-Control-Max-Age", corsMaxAge)
			}
			// A refused origin gets an answer without CORS headers, which
			// the browser treats as a denial.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if c.allows(origin) {
			c.setOrigin(h, origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

func (c *cors) setOrigin(h http.Header, origin string) {
	if c.any {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
}

// requestedHeaders echoes the header names a preflight asks for, keeping
// only well-formed tokens so nothing odd is reflected.
func requestedHeaders(r *http.Request) string {
	var names []string
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && len(name) <= 64 && isToken(name) {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 || len(names) > 64 {
		return corsDefaultHeaders
	}
	return strings.Join(names, ", ")
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
