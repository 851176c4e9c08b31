package netguard

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var pngish = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 1000)...)

func imageHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(pngish)
}

// TestLoopbackOffOn is the S3 pair: the same server is refused with the
// setting off (and never reached) and served with it on, through both the
// tripwire and the production dialer.
func TestLoopbackOffOn(t *testing.T) {
	t.Parallel()
	for _, withTripwire := range []bool{true, false} {
		t.Run(fmt.Sprintf("tripwire=%v", withTripwire), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, imageHandler)
			port := srv.port(t)
			var trip *tripwire
			opts := Options{AllowedPorts: []int{port}}
			if withTripwire {
				trip = newTripwire(t)
				opts.Dial = trip.Dial
			}
			url := srv.URL + "/img.png"
			for _, u := range []string{url, "http://localhost:" + strconv.Itoa(port) + "/img.png"} {
				_, err := New(opts).Get(testCtx(t), u)
				var be *BlockedError
				if !errors.As(err, &be) || be.Reason != CategoryLoopback {
					t.Fatalf("off: Get(%s) = %v, want loopback refusal", u, err)
				}
			}
			if n := srv.hits.Load(); n != 0 {
				t.Fatalf("off: server saw %d requests, want 0", n)
			}
			if trip != nil && len(trip.Dials()) != 0 {
				t.Fatalf("off: tripwire saw dials %v", trip.Dials())
			}

			opts.AllowPrivate = true
			resp, err := New(opts).Get(testCtx(t), url)
			if err != nil {
				t.Fatalf("on: Get = %v", err)
			}
			if !bytes.Equal(resp.Body, pngish) || resp.ContentType != "image/png" || resp.FinalURL != url {
				t.Errorf("on: got %d bytes, type %q, final %q", len(resp.Body), resp.ContentType, resp.FinalURL)
			}
			if n := srv.hits.Load(); n != 1 {
				t.Errorf("on: server saw %d requests, want 1", n)
			}
		})
	}
}

// TestIPv6Loopback runs the same pair on [::1] when the host has it.
func TestIPv6Loopback(t *testing.T) {
	t.Parallel()
	srv, err := newServerOn(t, "[::1]:0", imageHandler)
	if err != nil {
		t.Logf("no IPv6 loopback here (%v); the IPv4 pair covers the rule", err)
		return
	}
	port := srv.port(t)
	trip := newTripwire(t)
	url := fmt.Sprintf("http://[::1]:%d/", port)
	_, err = New(Options{AllowedPorts: []int{port}, Dial: trip.Dial}).Get(testCtx(t), url)
	if !isRefused(err) || srv.hits.Load() != 0 {
		t.Fatalf("off: err %v, hits %d; want refusal and 0 hits", err, srv.hits.Load())
	}
	resp, err := New(Options{AllowedPorts: []int{port}, AllowPrivate: true, Dial: trip.Dial}).Get(testCtx(t), url)
	if err != nil || !bytes.Equal(resp.Body, pngish) {
		t.Fatalf("on: err %v", err)
	}
}

// TestControlRefusesBeforeConnect dials through a net.Dialer carrying the
// guard's Control hook: the refused dial must never reach the listener, so
// the first connection the listener accepts is the sentinel made after it.
func TestControlRefusesBeforeConnect(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := int(netip.MustParseAddrPort(l.Addr().String()).Port())
	d := newDialer(newPolicy(Options{AllowedPorts: []int{port}}), Options{})
	nd := net.Dialer{Timeout: 2 * time.Second, Control: d.control}
	_, err = nd.DialContext(testCtx(t), "tcp4", l.Addr().String())
	var be *BlockedError
	if !errors.As(err, &be) || be.Reason != CategoryLoopback {
		t.Fatalf("guarded dial = %v, want loopback refusal", err)
	}

	sentinel, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sentinel.Close()
	if _, err := sentinel.Write([]byte("S")); err != nil {
		t.Fatal(err)
	}
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(conn, buf); err != nil || buf[0] != 'S' {
		t.Fatalf("first accepted connection is not the sentinel (read %q, %v)", buf, err)
	}
}

func TestPortFilter(t *testing.T) {
	t.Parallel()
	srv := newServer(t, imageHandler)
	trip := newTripwire(t)
	_, err := New(Options{AllowPrivate: true, Dial: trip.Dial}).Get(testCtx(t), srv.URL)
	var be *BlockedError
	if !errors.As(err, &be) || be.Reason != ReasonPort {
		t.Fatalf("Get = %v, want port refusal", err)
	}
	if srv.hits.Load() != 0 || len(trip.Dials()) != 0 {
		t.Errorf("hits %d, dials %v; want none", srv.hits.Load(), trip.Dials())
	}
}

// TestRedirects is S5: an allowed loopback server answers every redirect
// status with a target the guard must refuse, before any connection.
func TestRedirects(t *testing.T) {
	t.Parallel()
	other := newServer(t, imageHandler) // B: its port is not allowed
	res := newResolver(t)
	res.set("meta.test", "169.254.169.254")
	res.set("lan.test", "10.0.0.1")
	targets := []struct {
		location string
		check    func(error) bool
	}{
		{"http://169.254.169.254/latest/meta-data/", blockedAs(CategoryMetadata)},
		{"http://169.254.1.1/", blockedAs(CategoryLinkLocal)},
		{"http://[::ffff:169.254.169.254]/", blockedAs(CategoryMetadata)},
		{"http://[fd00:ec2::254]/", blockedAs(CategoryMetadata)},
		{"http://meta.test/latest/meta-data/", blockedAs(CategoryMetadata)},
		{"http://lan.test/", blockedAs(CategoryPrivate)},
		{other.URL + "/", blockedAs(ReasonPort)},
		{"file:///etc/passwd", isErr(ErrScheme)},
		{"gopher://127.0.0.1:6379/_x", isErr(ErrScheme)},
		{"http://user:pass@127.0.0.1/", isErr(ErrCredentials)},
		{"http://2130706433/", isErr(ErrInvalidURL)},
	}
	var statuses = []int{301, 302, 303, 307, 308}
	a := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.URL.Query().Get("t"))
		code, _ := strconv.Atoi(r.URL.Query().Get("s"))
		http.Redirect(w, r, targets[i].location, code)
	})
	trip := newTripwire(t)
	c := New(Options{
		// Only server A's address is opened, so lan.test (10.0.0.1) and
		// server B (another port) stay shut.
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		AllowedPorts:  []int{80, 443, a.port(t)},
		Resolver:      res,
		Dial:          trip.Dial,
	})
	for i, tg := range targets {
		for _, s := range statuses {
			_, err := c.Get(testCtx(t), fmt.Sprintf("%s/?t=%d&s=%d", a.URL, i, s))
			if !tg.check(err) {
				t.Errorf("redirect %d to %s: got %v", s, tg.location, err)
			}
		}
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("server B saw %d requests, want 0", n)
	}
	for _, d := range trip.Dials() {
		if int(d.Port()) != a.port(t) {
			t.Errorf("tripwire: dial to %s, only server A may be dialed", d)
		}
	}
}

func blockedAs(reason string) func(error) bool {
	return func(err error) bool {
		var be *BlockedError
		return errors.As(err, &be) && be.Reason == reason
	}
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// TestRedirectChain follows up to MaxRedirects hops, refuses one more, and
// sends no cookie, Authorization or Referer along the way.
func TestRedirectChain(t *testing.T) {
	t.Parallel()
	type seen struct{ cookie, auth, referer string }
	got := make(chan seen, 16)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Cookie"), r.Header.Get("Authorization"), r.Header.Get("Referer")}
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if n > 0 {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "secret"})
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
			return
		}
		imageHandler(w, r)
	})
	trip := newTripwire(t)
	c := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, Dial: trip.Dial})

	resp, err := c.Get(testCtx(t), srv.URL+"/hop/3")
	if err != nil {
		t.Fatalf("3 hops: %v", err)
	}
	if resp.FinalURL != srv.URL+"/hop/0" || !bytes.Equal(resp.Body, pngish) {
		t.Errorf("3 hops: final %q, %d bytes", resp.FinalURL, len(resp.Body))
	}
	for range 4 {
		if s := <-got; s != (seen{}) {
			t.Errorf("request carried credentials or referer: %+v", s)
		}
	}

	before := srv.hits.Load()
	_, err = c.Get(testCtx(t), srv.URL+"/hop/4")
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("4 hops: %v, want ErrTooManyRedirects", err)
	}
	if n := srv.hits.Load() - before; n != 4 {
		t.Errorf("4 hops: server saw %d requests, want 4 (the fifth never sent)", n)
	}
}

// TestNoRedirectsForWebhooks: MaxRedirects < 0 turns a 3xx into an error
// without touching the target.
func TestNoRedirectsForWebhooks(t *testing.T) {
	t.Parallel()
	target := newServer(t, imageHandler)
	src := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	})
	trip := newTripwire(t)
	c := New(Options{AllowPrivate: true, AllowedPorts: []int{src.port(t), target.port(t)}, MaxRedirects: -1, Dial: trip.Dial})
	_, err := c.Get(testCtx(t), src.URL)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("Get = %v, want StatusError 307", err)
	}
	if target.hits.Load() != 0 {
		t.Error("redirect target was contacted")
	}
}

func TestSizeLimits(t *testing.T) {
	t.Parallel()
	const limit = 1000
	big := bytes.Repeat([]byte("x"), 4*limit)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/exact":
			_, _ = w.Write(big[:limit])
		case "/declared":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		case "/chunked":
			// Flushing before the end forces chunked encoding: no
			// Content-Length for the client to check first.
			for i := 0; i < 4; i++ {
				_, _ = w.Write(big[:limit])
				w.(http.Flusher).Flush()
			}
		case "/gzip-small", "/gzip-bomb":
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				http.Error(w, "client did not offer gzip", http.StatusNotAcceptable)
				return
			}
			n := limit / 2
			if r.URL.Path == "/gzip-bomb" {
				n = 1000 * limit
			}
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(bytes.Repeat([]byte{0}, n))
			_ = zw.Close()
		}
	})
	trip := newTripwire(t)
	c := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, MaxBytes: limit, Dial: trip.Dial})
	ctx := testCtx(t)

	resp, err := c.Get(ctx, srv.URL+"/exact")
	if err != nil || len(resp.Body) != limit {
		t.Errorf("exact: %v", err)
	}
	for _, path := range []string{"/declared", "/chunked", "/gzip-bomb"} {
		if _, err := c.Get(ctx, srv.URL+path); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: got %v, want ErrTooLarge", path, err)
		}
	}
	resp, err = c.Get(ctx, srv.URL+"/gzip-small")
	if err != nil {
		t.Fatalf("gzip-small: %v", err)
	}
	if diff := cmp.Diff(bytes.Repeat([]byte{0}, limit/2), resp.Body); diff != "" {
		t.Errorf("gzip-small body not decoded (-want +got):\n%s", diff)
	}
}

// TestTimeout: a server that sends headers and then stalls, and one that
// never answers, both end in ErrTimeout near Options.Timeout; the caller's
// own cancellation is reported as such, not as our timeout.
func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	trip := newTripwire(t)
	const timeout = 300 * time.Millisecond
	c := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, Timeout: timeout, Dial: trip.Dial})
	for _, path := range []string{"/headers", "/body"} {
		start := time.Now()
		_, err := c.Get(testCtx(t), srv.URL+path)
		elapsed := time.Since(start)
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: got %v, want ErrTimeout", path, err)
		}
		if elapsed < timeout || elapsed > timeout+3*time.Second {
			t.Errorf("%s: returned after %v, want about %v", path, elapsed, timeout)
		}
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	_, err := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, Dial: trip.Dial}).Get(ctx, srv.URL+"/headers")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("canceled: got %v, want context.Canceled and not ErrTimeout", err)
	}
}

// TestContentTypeAndStatus: any 2xx body comes back whatever its type (the
// caller sniffs it); a non-2xx answer is a StatusError without its body.
func TestContentTypeAndStatus(t *testing.T) {
	t.Parallel()
	const secret = "internal-secret-token-0123"
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/text":
			text("not an image")(w, r)
		case "/created":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("ok"))
		default:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(secret))
		}
	})
	trip := newTripwire(t)
	c := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, UserAgent: "easel-test/1", Dial: trip.Dial})
	ctx := testCtx(t)

	resp, err := c.Get(ctx, srv.URL+"/text")
	if err != nil || string(resp.Body) != "not an image" || resp.ContentType != "text/plain" {
		t.Errorf("text: %+v, %v", resp, err)
	}
	if resp, err := c.Get(ctx, srv.URL+"/created"); err != nil || string(resp.Body) != "ok" {
		t.Errorf("201: %v", err)
	}
	_, err = c.Get(ctx, srv.URL+"/fail")
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Fatalf("500: got %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error echoes the upstream body: %v", err)
	}
}

func TestUserAgent(t *testing.T) {
	t.Parallel()
	agents := make(chan string, 2)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		agents <- r.UserAgent()
	})
	trip := newTripwire(t)
	for _, ua := range []string{"", "custom/2"} {
		c := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, UserAgent: ua, Dial: trip.Dial})
		if _, err := c.Get(testCtx(t), srv.URL); err != nil {
			t.Fatal(err)
		}
		want := ua
		if want == "" {
			want = DefaultUserAgent
		}
		if got := <-agents; got != want {
			t.Errorf("User-Agent %q, want %q", got, want)
		}
	}
}

// TestEnvironmentProxyIgnored is S8: with HTTP_PROXY pointing at a
// loopback proxy, neither a refused nor an allowed fetch goes through it.
// Not parallel: it sets process environment.
func TestEnvironmentProxyIgnored(t *testing.T) {
	proxy := newServer(t, text("proxied"))
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	srv := newServer(t, imageHandler)
	trip := newTripwire(t)

	_, err := New(Options{AllowedPorts: []int{srv.port(t)}, Dial: trip.Dial}).Get(testCtx(t), "http://169.254.169.254/")
	if !isRefused(err) {
		t.Errorf("refused vector: %v", err)
	}
	resp, err := New(Options{AllowPrivate: true, AllowedPorts: []int{srv.port(t)}, Dial: trip.Dial}).Get(testCtx(t), srv.URL)
	if err != nil || !bytes.Equal(resp.Body, pngish) {
		t.Errorf("allowed fetch: %v", err)
	}
	if n := proxy.hits.Load(); n != 0 {
		t.Errorf("proxy saw %d requests, want 0", n)
	}
}

// TestHTTPClientSharesGuard: the client handed to webhook delivery refuses
// the same destinations, and changing the copy leaves the original alone.
func TestHTTPClientSharesGuard(t *testing.T) {
	t.Parallel()
	srv := newServer(t, imageHandler)
	trip := newTripwire(t)
	c := New(Options{AllowedPorts: []int{srv.port(t)}, Dial: trip.Dial})
	hc := c.HTTPClient()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, srv.URL, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hc.Do(req)
	var be *BlockedError
	if !errors.As(err, &be) || be.Reason != CategoryLoopback {
		t.Errorf("POST via HTTPClient: %v, want loopback refusal", err)
	}
	if srv.hits.Load() != 0 {
		t.Error("server reached")
	}
	hc.Timeout = time.Hour
	if c.HTTPClient().Timeout != DefaultTimeout {
		t.Error("modifying one HTTPClient copy changed the Client")
	}
}

// TestDefaults pins the production defaults.
func TestDefaults(t *testing.T) {
	t.Parallel()
	c := New(Options{})
	got := map[string]any{
		"maxBytes":     c.maxBytes,
		"timeout":      c.timeout,
		"maxRedirects": c.maxRedirects,
		"userAgent":    c.userAgent,
		"ports":        c.pol.ports,
		"allowPrivate": c.pol.allowPrivate,
	}
	want := map[string]any{
		"maxBytes":     int64(20 << 20),
		"timeout":      15 * time.Second,
		"maxRedirects": 3,
		"userAgent":    "easel",
		"ports":        []uint16{80, 443},
		"allowPrivate": false,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	tr := c.hc.Transport.(*http.Transport)
	if tr.Proxy != nil || c.hc.Jar != nil {
		t.Error("transport must have no proxy and the client no cookie jar")
	}
}
