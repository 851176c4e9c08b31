package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errTripwire = errors.New("tripwire: destination outside loopback")

// tripwire is the test-only base dialer under the guard (F-TRIP): it
// records every address the guard let through and refuses, failing the
// test, anything that is not a literal loopback address. No test can
// therefore send a packet off the machine even if the guard is wrong.
type tripwire struct {
	t     *testing.T
	mu    sync.Mutex
	dials []netip.AddrPort
}

func newTripwire(t *testing.T) *tripwire {
	t.Helper()
	return &tripwire{t: t}
}

func (tw *tripwire) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		tw.t.Errorf("tripwire: guard dialed non-literal address %q", addr)
		return nil, errTripwire
	}
	if !ap.Addr().IsLoopback() || ap.Addr().Zone() != "" {
		tw.t.Errorf("tripwire: guard let %s (%s) through", addr, network)
		return nil, errTripwire
	}
	tw.mu.Lock()
	tw.dials = append(tw.dials, ap)
	tw.mu.Unlock()
	d := net.Dialer{Timeout: 2 * time.Second}
	return d.DialContext(ctx, network, addr)
}

func (tw *tripwire) Dials() []netip.AddrPort {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]netip.AddrPort(nil), tw.dials...)
}

// fakeResolver is F-DNS: it answers only the names it was given, each
// with a sequence of answers (the last repeats), and never forwards.
type fakeResolver struct {
	t       *testing.T
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newResolver(t *testing.T) *fakeResolver {
	t.Helper()
	return &fakeResolver{t: t, answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
}

// set installs the answers for host: each argument is one query's answer,
// a comma-separated address list.
func (r *fakeResolver) set(host string, answers ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seq [][]netip.Addr
	for _, a := range answers {
		var addrs []netip.Addr
		for _, s := range strings.Split(a, ",") {
			addrs = append(addrs, netip.MustParseAddr(s))
		}
		seq = append(seq, addrs)
	}
	r.answers[host] = seq
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.calls[host]
	r.calls[host] = n + 1
	if len(seq) == 0 {
		return nil, nil
	}
	if n >= len(seq) {
		n = len(seq) - 1
	}
	return append([]netip.Addr(nil), seq[n]...), nil
}

func (r *fakeResolver) Calls(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

func (r *fakeResolver) TotalCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, n := range r.calls {
		total += n
	}
	return total
}

// countingServer is an httptest server that counts the requests it saw.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewServer(cs.wrap(h))
	t.Cleanup(cs.Close)
	return cs
}

// newServerOn starts a server on a given loopback address ("127.0.0.2:0").
func newServerOn(t *testing.T, addr string, h http.HandlerFunc) (*countingServer, error) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(cs.wrap(h))
	cs.Server.Listener.Close()
	cs.Server.Listener = l
	cs.Start()
	t.Cleanup(cs.Close)
	return cs, nil
}

func (cs *countingServer) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cs.hits.Add(1)
		h(w, r)
	}
}

// port returns the server's port.
func (cs *countingServer) port(t *testing.T) int {
	t.Helper()
	ap := netip.MustParseAddrPort(cs.Listener.Addr().String())
	return int(ap.Port())
}

// serverPair starts two servers on the same port, one on 127.0.0.1 and one
// on 127.0.0.2, so one URL can be steered between an "internal" and an
// "allowed" host by DNS answers alone.
func serverPair(t *testing.T, h1, h2 http.HandlerFunc) (one, two *countingServer, port int) {
	t.Helper()
	for range 20 {
		one = newServer(t, h1)
		port = one.port(t)
		var err error
		two, err = newServerOn(t, "127.0.0.2:"+strconv.Itoa(port), h2)
		if err == nil {
			return one, two, port
		}
		one.Close()
	}
	t.Fatal("could not bind the same port on 127.0.0.1 and 127.0.0.2")
	return nil, nil, 0
}

func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	}
}

// isRefused reports whether err is one of the guard's refusals (as opposed
// to a network failure).
func isRefused(err error) bool {
	var be *BlockedError
	return errors.As(err, &be) || errors.Is(err, ErrInvalidURL)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
