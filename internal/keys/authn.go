package keys

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/easelgw/easel/internal/server"
)

var _ server.Authenticator = (*Service)(nil)

// Authenticate implements server.Authenticator: it checks the bearer key,
// refuses clients that guess too much, applies the key's requests per
// minute, and puts the Identity in the context. Every failure to
// authenticate gets the same 401, whether the id is unknown, the secret
// wrong or the key revoked.
func (s *Service) Authenticate(w http.ResponseWriter, r *http.Request) (context.Context, server.Principal, bool) {
	ctx := r.Context()
	on, err := s.Enabled(ctx)
	if err != nil {
		s.log.Error("checking whether auth is on", "err", err)
		writeUnavailable(w)
		return nil, server.Principal{}, false
	}
	if !on {
		return ctx, server.Principal{}, true
	}
	now := s.now()
	client := s.guard.client(r)
	if wait := s.guard.blocked(client, now); wait > 0 {
		writeTooMany(w, &LimitError{
			Code:       CodeRateLimit,
			Message:    fmt.Sprintf("Too many failed authentication attempts from this address; retry after %d s.", seconds(wait)),
			RetryAfter: wait,
		})
		return nil, server.Principal{}, false
	}
	key, presented, ok := server.BearerKey(r)
	if !ok {
		if presented {
			s.guard.fail(client, now)
		}
		server.WriteUnauthorized(w)
		return nil, server.Principal{}, false
	}
	id, err := s.verify(ctx, key)
	if errors.Is(err, errUnknown) {
		s.guard.fail(client, now)
		server.WriteUnauthorized(w)
		return nil, server.Principal{}, false
	}
	if err != nil {
		s.log.Error("authenticating a request", "err", err)
		writeUnavailable(w)
		return nil, server.Principal{}, false
	}
	if rpm := id.Limits.RequestsPerMinute; rpm > 0 {
		lim := s.rpm.get(id.KeyID, rpm)
		res := lim.ReserveN(now, 1)
		h := w.Header()
		h.Set("x-ratelimit-limit-requests", strconv.Itoa(rpm))
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			if !res.OK() {
				d = time.Minute
			}
			h.Set("x-ratelimit-remaining-requests", "0")
			writeTooMany(w, &LimitError{
				Code:       CodeRateLimit,
				Message:    fmt.Sprintf("Rate limit reached: %d requests per minute for this key; retry after %d s.", rpm, seconds(d)),
				RetryAfter: d,
			})
			return nil, server.Principal{}, false
		}
		h.Set("x-ratelimit-remaining-requests", strconv.Itoa(max(0, int(math.Floor(lim.TokensAt(now))))))
	}
	return WithIdentity(ctx, id), server.Principal{KeyID: id.KeyID, Scopes: id.Scopes}, true
}

func writeUnavailable(w http.ResponseWriter) {
	server.WriteError(w, http.StatusServiceUnavailable, "server_error", "service_unavailable",
		"The server could not check the API key; retry shortly.")
}

// guard counts failed authentications per client address and blocks an
// address that fails too often. A blocked address is refused before its
// key is even checked: answering a right key with 200 and a wrong one with
// 429 would let a guesser carry on regardless.
type guard struct {
	max        int
	window     time.Duration
	trustProxy bool

	mu sync.Mutex
	m  map[string]*guardEntry
}

type guardEntry struct {
	lim  *rate.Limiter
	last time.Time
}

// maxGuardEntries bounds the guard's memory; entries idle for a window are
// swept first, and past the bound arbitrary ones go (map order), which
// only forgives some guessers early.
const maxGuardEntries = 100_000

func newGuard(max int, window time.Duration, trustProxy bool) *guard {
	return &guard{max: max, window: window, trustProxy: trustProxy, m: map[string]*guardEntry{}}
}

// client is the address the guard counts against: the peer, or with
// TrustProxy the last X-Forwarded-For entry. IPv6 addresses count per /64,
// the block one subscriber usually gets.
func (g *guard) client(r *http.Request) string {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if g.trustProxy {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				host = last
			}
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// blocked returns how long client must wait, or 0 when it may try.
func (g *guard) blocked(client string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.m[client]
	if e == nil {
		return 0
	}
	tokens := e.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	perToken := g.window / time.Duration(g.max)
	return time.Duration((1 - tokens) * float64(perToken))
}

// fail counts one failed attempt of client.
func (g *guard) fail(client string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.m[client]
	if e == nil {
		if len(g.m) >= maxGuardEntries {
			g.sweep(now)
		}
		e = &guardEntry{lim: rate.NewLimiter(rate.Limit(float64(g.max)/g.window.Seconds()), g.max)}
		g.m[client] = e
	}
	e.last = now
	e.lim.AllowN(now, 1)
}

// sweep drops entries idle for a whole window (their buckets are full
// again) and, if that is not enough, arbitrary ones.
func (g *guard) sweep(now time.Time) {
	for k, e := range g.m {
		if now.Sub(e.last) > g.window {
			delete(g.m, k)
		}
	}
	for k := range g.m {
		if len(g.m) < maxGuardEntries {
			break
		}
		delete(g.m, k)
	}
}
