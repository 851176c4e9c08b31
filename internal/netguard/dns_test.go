package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// TestResolvedInternalAddressesRefused: names whose answers are internal
// are refused before any dial, with AllowPrivate off and, for link-local
// and metadata answers, with it on too.
func TestResolvedInternalAddressesRefused(t *testing.T) {
	t.Parallel()
	res := newResolver(t)
	res.set("internal.test", "10.0.0.1")
	res.set("metadata.google.internal", "169.254.169.254")
	res.set("mapped-meta.test", "::ffff:169.254.169.254")
	res.set("alibaba.test", "100.100.100.200")
	res.set("aws6.test", "fd00:ec2::254")
	res.set("ll6.test", "fe80::1")
	res.set("nat64.test", "64:ff9b::a00:1")
	res.set("all-bad.test", "10.0.0.1,169.254.169.254,::1,fe80::1")
	cases := []struct {
		host         string
		allowPrivate bool
		reason       string
	}{
		{"internal.test", false, CategoryPrivate},
		{"metadata.google.internal", false, CategoryMetadata},
		{"metadata.google.internal", true, CategoryMetadata},
		{"mapped-meta.test", true, CategoryMetadata},
		{"alibaba.test", true, CategoryMetadata},
		{"aws6.test", true, CategoryMetadata},
		{"ll6.test", true, CategoryLinkLocal},
		{"nat64.test", true, CategoryNAT64},
		{"all-bad.test", false, CategoryPrivate},
	}
	trip := newTripwire(t)
	for _, tc := range cases {
		c := New(Options{AllowPrivate: tc.allowPrivate, Resolver: res, Dial: trip.Dial})
		_, err := c.Get(testCtx(t), "http://"+tc.host+"/x.png")
		var be *BlockedError
		if !errors.As(err, &be) || be.Reason != tc.reason {
			t.Errorf("%s (allowPrivate=%v): got %v, want %q refusal", tc.host, tc.allowPrivate, err, tc.reason)
		}
	}
	if d := trip.Dials(); len(d) != 0 {
		t.Errorf("tripwire saw dials %v", d)
	}
}

// TestLocalhostNamesNeverResolved: localhost and its subdomains are
// answered with loopback by the guard itself (RFC 6761), never asked of
// the resolver.
func TestLocalhostNamesNeverResolved(t *testing.T) {
	t.Parallel()
	srv := newServer(t, imageHandler)
	port := srv.port(t)
	res := newResolver(t)
	trip := newTripwire(t)
	for _, name := range []string{"localhost", "localhost.", "LOCALHOST", "a.localhost", "A.B.LocalHost."} {
		url := fmt.Sprintf("http://%s:%d/", name, port)
		_, err := New(Options{AllowedPorts: []int{port}, Resolver: res, Dial: trip.Dial}).Get(testCtx(t), url)
		if !blockedAs(CategoryLoopback)(err) {
			t.Errorf("%s off: %v", name, err)
		}
		if _, err := New(Options{AllowPrivate: true, AllowedPorts: []int{port}, Resolver: res, Dial: trip.Dial}).Get(testCtx(t), url); err != nil {
			t.Errorf("%s on: %v", name, err)
		}
	}
	if n := res.TotalCalls(); n != 0 {
		t.Errorf("resolver asked %d times, want 0", n)
	}
	if n := srv.hits.Load(); n != 5 {
		t.Errorf("server saw %d requests, want 5 (the AllowPrivate ones only)", n)
	}
}

// closeConn makes each fetch open a new connection, so every fetch
// resolves and checks afresh instead of reusing a pooled connection.
func closeConn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		h(w, r)
	}
}

// TestRebinding is S7: rb.test answers the allowed 127.0.0.2 once and the
// internal 127.0.0.1 afterwards; the internal server is never reached.
func TestRebinding(t *testing.T) {
	t.Parallel()
	internal, allowed, port := serverPair(t, closeConn(text("internal")), closeConn(text("allowed")))
	res := newResolver(t)
	res.set("rb.test", "127.0.0.2", "127.0.0.1")
	trip := newTripwire(t)
	c := New(Options{
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		AllowedPorts:  []int{port},
		Resolver:      res,
		Dial:          trip.Dial,
	})
	url := fmt.Sprintf("http://rb.test:%d/", port)
	served, refused := 0, 0
	for range 20 {
		resp, err := c.Get(testCtx(t), url)
		switch {
		case err == nil && string(resp.Body) == "allowed":
			served++
		case blockedAs(CategoryLoopback)(err):
			refused++
		default:
			t.Errorf("fetch: %v", err)
		}
	}
	if served != 1 || refused != 19 {
		t.Errorf("served %d, refused %d; want 1 and 19", served, refused)
	}
	if n := internal.hits.Load(); n != 0 {
		t.Errorf("internal server saw %d requests, want 0", n)
	}
	if n := allowed.hits.Load(); n != 1 {
		t.Errorf("allowed server saw %d requests, want 1", n)
	}
	if n := res.Calls("rb.test"); n != 20 {
		t.Errorf("resolver asked %d times, want 20 (one per connection)", n)
	}
}

// TestMultiAnswer is S6 and the mixed-family vector: a refused answer
// listed first is skipped, never dialed, and the allowed one serves.
func TestMultiAnswer(t *testing.T) {
	t.Parallel()
	internal, allowed, port := serverPair(t, closeConn(text("internal")), closeConn(text("allowed")))
	res := newResolver(t)
	res.set("img.test", "127.0.0.1,127.0.0.2")
	res.set("mixed.test", "::1,127.0.0.2")
	trip := newTripwire(t)
	c := New(Options{
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		AllowedPorts:  []int{port},
		Resolver:      res,
		Dial:          trip.Dial,
	})
	for _, host := range []string{"img.test", "mixed.test"} {
		for range 10 {
			resp, err := c.Get(testCtx(t), fmt.Sprintf("http://%s:%d/", host, port))
			if err != nil || string(resp.Body) != "allowed" {
				t.Fatalf("%s: %v", host, err)
			}
		}
	}
	if n := internal.hits.Load(); n != 0 {
		t.Errorf("internal server saw %d requests, want 0", n)
	}
	if n := allowed.hits.Load(); n != 20 {
		t.Errorf("allowed server saw %d requests, want 20", n)
	}
	for _, d := range trip.Dials() {
		if d.Addr() != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("dialed %s; only 127.0.0.2 is allowed", d)
		}
	}
}

// TestMappedAnswerDialedAsIPv4: an AAAA answer in ::ffff:a.b.c.d form is
// dialed as the IPv4 address, and judged as one.
func TestMappedAnswerDialedAsIPv4(t *testing.T) {
	t.Parallel()
	srv := newServer(t, imageHandler)
	res := newResolver(t)
	res.set("mapped.test", "::ffff:127.0.0.1")
	trip := newTripwire(t)
	url := fmt.Sprintf("http://mapped.test:%d/", srv.port(t))
	if _, err := New(Options{AllowedPorts: []int{srv.port(t)}, Resolver: res, Dial: trip.Dial}).Get(testCtx(t), url); !blockedAs(CategoryLoopback)(err) {
		t.Errorf("off: %v", err)
	}
	if _, err := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, Resolver: res, Dial: trip.Dial}).Get(testCtx(t), url); err != nil {
		t.Errorf("on: %v", err)
	}
	dials := trip.Dials()
	if len(dials) != 1 || !dials[0].Addr().Is4() {
		t.Errorf("dials %v, want one IPv4 dial", dials)
	}
}

// TestResolverFailures: lookup errors and empty answers are errors, not
// refusals, and dial nothing.
func TestResolverFailures(t *testing.T) {
	t.Parallel()
	res := newResolver(t)
	res.set("empty.test")
	trip := newTripwire(t)
	c := New(Options{Resolver: res, Dial: trip.Dial})
	_, err := c.Get(testCtx(t), "http://nxdomain.test/")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("nxdomain: %v, want a not-found DNS error", err)
	}
	if _, err := c.Get(testCtx(t), "http://empty.test/"); err == nil || isRefused(err) {
		t.Errorf("empty answer: %v, want a resolution error", err)
	}
	if len(trip.Dials()) != 0 {
		t.Errorf("dials %v", trip.Dials())
	}
}
