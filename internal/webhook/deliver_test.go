package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/netguard"
)

// delivery is one request as the receiver saw it.
type delivery struct {
	header http.Header
	body   []byte
	// verifyErr is the independent verifier's verdict, taken on arrival.
	verifyErr error
}

// receiver is a loopback webhook endpoint that verifies every delivery
// with the independent verifier and answers with respond.
type receiver struct {
	srv  *httptest.Server
	hits atomic.Int32

	mu         sync.Mutex
	deliveries []delivery
}

// newReceiver starts a receiver. now is the clock its verifier uses; nil
// means time.Now. respond gets the 1-based attempt number.
func newReceiver(t *testing.T, v *verifier, now func() time.Time, respond func(w http.ResponseWriter, r *http.Request, attempt int)) *receiver {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rc.hits.Add(1))
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			t.Errorf("receiver reading body: %v", err)
		}
		d := delivery{header: r.Header.Clone(), body: body}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			d.verifyErr = errors.New("not a JSON POST")
		} else if v != nil {
			d.verifyErr = v.verifyRequest(r.Header, body, now())
		}
		rc.mu.Lock()
		rc.deliveries = append(rc.deliveries, d)
		rc.mu.Unlock()
		respond(w, r, n)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.deliveries...)
}

func (rc *receiver) port(t *testing.T) int { return portOf(t, rc.srv.URL) }

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tripwire is the base dialer under the guard: it fails the test on any
// destination outside loopback, so no test traffic can leave the machine
// even if the guard were wrong.
func tripwire(t *testing.T) netguard.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			t.Errorf("tripwire: dial to %q", addr)
			return nil, errors.New("tripwire: non-loopback destination")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// loopbackClient is the guarded client configured the way a LAN
// deployment opens a local receiver: private addresses allowed, the
// receiver's port listed.
func loopbackClient(t *testing.T, ports ...int) *http.Client {
	return netguard.New(netguard.Options{
		AllowPrivate: true,
		AllowedPorts: ports,
		MaxRedirects: -1,
		Dial:         tripwire(t),
	}).HTTPClient()
}

// testMessage builds a real event message.
func testMessage(t *testing.T) Message {
	t.Helper()
	m, err := NewMessage(Event{Type: EventJobSucceeded, JobID: "job_42", Data: map[string]int{"images": 1}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testSigner(t *testing.T, secrets ...string) *Signer {
	t.Helper()
	s, err := NewSigner(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable test clock.
type clock struct{ t atomic.Int64 }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.t.Store(at.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

func TestAttemptOutcomes(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	// A redirect target that must never be hit.
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereHits.Add(1)
	}))
	t.Cleanup(elsewhere.Close)

	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
		want    Result // Err compared by StatusError only
	}{
		{name: "200", respond: status(200), want: Result{Status: 200, Outcome: Delivered}},
		{name: "204", respond: status(204), want: Result{Status: 204, Outcome: Delivered}},
		{name: "299", respond: status(299), want: Result{Status: 299, Outcome: Delivered}},
		{name: "200 with 1 MiB body", respond: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
		}, want: Result{Status: 200, Outcome: Delivered}},
		{name: "301 not followed", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusMovedPermanently)
		}, want: Result{Status: 301, Outcome: Retry}},
		{name: "307 not followed", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
		}, want: Result{Status: 307, Outcome: Retry}},
		{name: "400", respond: status(400), want: Result{Status: 400, Outcome: Retry}},
		{name: "404", respond: status(404), want: Result{Status: 404, Outcome: Retry}},
		{name: "410 disables", respond: status(410), want: Result{Status: 410, Outcome: Disable}},
		{name: "429 with Retry-After seconds", respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, want: Result{Status: 429, Outcome: Retry, Throttled: true, RetryAfter: 120 * time.Second}},
		{name: "429 without Retry-After", respond: status(429), want: Result{Status: 429, Outcome: Retry, Throttled: true}},
		{name: "500", respond: status(500), want: Result{Status: 500, Outcome: Retry}},
		{name: "500 with Retry-After", respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(500)
		}, want: Result{Status: 500, Outcome: Retry, RetryAfter: 30 * time.Second}},
		{name: "502", respond: status(502), want: Result{Status: 502, Outcome: Retry, Throttled: true}},
		{name: "503 with Retry-After date", respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", start.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(503)
		}, want: Result{Status: 503, Outcome: Retry, Throttled: true, RetryAfter: 90 * time.Second}},
		{name: "504", respond: status(504), want: Result{Status: 504, Outcome: Retry, Throttled: true}},
		{name: "410 ignores Retry-After", respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(410)
		}, want: Result{Status: 410, Outcome: Disable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock(start)
			v := newVerifier(t, katSecret)
			rc := newReceiver(t, v, clk.Now, func(w http.ResponseWriter, r *http.Request, _ int) { tc.respond(w, r) })
			d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t)), Timeout: 5 * time.Second, Now: clk.Now})
			msg := testMessage(t)

			res := d.Attempt(t.Context(), rc.srv.URL+"/hook", msg, testSigner(t, katSecret))

			if res.Status != tc.want.Status || res.Outcome != tc.want.Outcome ||
				res.Throttled != tc.want.Throttled || res.RetryAfter != tc.want.RetryAfter {
				t.Fatalf("Attempt = %+v, want %+v", res, tc.want)
			}
			var se *StatusError
			switch {
			case tc.want.Outcome == Delivered && res.Err != nil:
				t.Fatalf("delivered with error %v", res.Err)
			case tc.want.Outcome != Delivered && (!errors.As(res.Err, &se) || se.StatusCode != tc.want.Status):
				t.Fatalf("Err = %v, want *StatusError{%d}", res.Err, tc.want.Status)
			}
			got := rc.got()
			if len(got) != 1 {
				t.Fatalf("receiver saw %d requests, want 1", len(got))
			}
			if got[0].verifyErr != nil {
				t.Fatalf("independent verifier rejected the delivery: %v", got[0].verifyErr)
			}
			if !bytes.Equal(got[0].body, msg.Body) || got[0].header.Get("webhook-id") != msg.ID {
				t.Fatalf("receiver got id %q body %q, want %q %q", got[0].header.Get("webhook-id"), got[0].body, msg.ID, msg.Body)
			}
			if ua := got[0].header.Get("User-Agent"); ua != DefaultUserAgent {
				t.Fatalf("User-Agent %q, want %q", ua, DefaultUserAgent)
			}
		})
	}
	t.Cleanup(func() {
		if n := elsewhereHits.Load(); n != 0 {
			t.Errorf("redirect target was hit %d times", n)
		}
	})
}

func status(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// TestRetriesKeepIDRefreshTimestamp is A13: the receiver fails the first
// attempt; the retry carries the same webhook-id and body, a new
// webhook-timestamp, and verifies.
func TestRetriesKeepIDRefreshTimestamp(t *testing.T) {
	t.Parallel()
	clk := newClock(time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC))
	v := newVerifier(t, katSecret)
	rc := newReceiver(t, v, clk.Now, func(w http.ResponseWriter, _ *http.Request, attempt int) {
		if attempt == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t)), Now: clk.Now})
	msg := testMessage(t)
	signer := testSigner(t, katSecret)

	first := d.Attempt(t.Context(), rc.srv.URL, msg, signer)
	if first.Outcome != Retry {
		t.Fatalf("first attempt %+v, want Retry", first)
	}
	wait, ok := NextDelay(1, first.RetryAfter)
	if !ok {
		t.Fatal("NextDelay gave up after the first attempt")
	}
	clk.Advance(wait)
	second := d.Attempt(t.Context(), rc.srv.URL, msg, signer)
	if second.Outcome != Delivered {
		t.Fatalf("second attempt %+v, want Delivered", second)
	}

	got := rc.got()
	if len(got) != 2 {
		t.Fatalf("receiver saw %d requests, want 2", len(got))
	}
	for i, g := range got {
		if g.verifyErr != nil {
			t.Errorf("attempt %d does not verify: %v", i+1, g.verifyErr)
		}
	}
	if a, b := got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"); a != b || a != msg.ID {
		t.Errorf("webhook-id %q then %q, want %q both times", a, b, msg.ID)
	}
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Error("body changed between attempts")
	}
	ts1, ts2 := got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp")
	want1 := strconv.FormatInt(clk.Now().Add(-wait).Unix(), 10)
	want2 := strconv.FormatInt(clk.Now().Unix(), 10)
	if ts1 != want1 || ts2 != want2 || ts1 == ts2 {
		t.Errorf("webhook-timestamp %s then %s, want %s then %s", ts1, ts2, want1, want2)
	}
	if got[0].header.Get("webhook-signature") == got[1].header.Get("webhook-signature") {
		t.Error("signature did not change with the timestamp")
	}
}

// TestAttemptRealClock checks the default clock: the timestamp is now,
// within the verifier's 5-minute tolerance.
func TestAttemptRealClock(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, katSecret)
	rc := newReceiver(t, v, nil, func(http.ResponseWriter, *http.Request, int) {})
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t))})
	before := time.Now().Unix()
	res := d.Attempt(t.Context(), rc.srv.URL, testMessage(t), testSigner(t, katSecret))
	after := time.Now().Unix()
	if res.Outcome != Delivered {
		t.Fatalf("Attempt = %+v", res)
	}
	g := rc.got()[0]
	if g.verifyErr != nil {
		t.Fatalf("verify: %v", g.verifyErr)
	}
	ts, err := strconv.ParseInt(g.header.Get("webhook-timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Fatalf("webhook-timestamp %q not within [%d, %d]", g.header.Get("webhook-timestamp"), before, after)
	}
}

// TestAttemptRotation: an endpoint mid-rotation gets two signatures, and a
// receiver on either secret accepts the delivery.
func TestAttemptRotation(t *testing.T) {
	t.Parallel()
	newSecret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	vOld, vNew := newVerifier(t, katSecret), newVerifier(t, newSecret)
	rc := newReceiver(t, nil, nil, func(http.ResponseWriter, *http.Request, int) {})
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t))})
	if res := d.Attempt(t.Context(), rc.srv.URL, testMessage(t), testSigner(t, newSecret, katSecret)); res.Outcome != Delivered {
		t.Fatalf("Attempt = %+v", res)
	}
	g := rc.got()[0]
	sigs := strings.Fields(g.header.Get("webhook-signature"))
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature has %d entries, want 2", len(sigs))
	}
	for _, tc := range []struct {
		name string
		v    *verifier
		sig  string
	}{{"new", vNew, sigs[0]}, {"old", vOld, sigs[1]}} {
		if err := tc.v.verify(g.header.Get("webhook-id"), g.header.Get("webhook-timestamp"), tc.sig, g.body, time.Now()); err != nil {
			t.Errorf("%s secret's signature does not verify: %v", tc.name, err)
		}
		if err := tc.v.verifyRequest(g.header, g.body, time.Now()); err != nil {
			t.Errorf("receiver on the %s secret rejects the delivery: %v", tc.name, err)
		}
	}
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	// A silent receiver: it holds the request until the client gives up.
	rc := newReceiver(t, nil, nil, func(_ http.ResponseWriter, r *http.Request, _ int) {
		<-r.Context().Done()
	})
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t)), Timeout: 200 * time.Millisecond})
	begin := time.Now()
	res := d.Attempt(t.Context(), rc.srv.URL, testMessage(t), testSigner(t, katSecret))
	took := time.Since(begin)
	if res.Outcome != Retry || res.Status != 0 || !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("Attempt = %+v, want Retry with ErrTimeout", res)
	}
	if took > 5*time.Second {
		t.Fatalf("attempt took %v with a 200ms timeout", took)
	}
}

func TestDefaultTimeout(t *testing.T) {
	t.Parallel()
	d := NewDeliverer(Options{})
	if d.timeout != 15*time.Second || DefaultTimeout != 15*time.Second {
		t.Fatalf("default timeout %v, want 15s", d.timeout)
	}
	if d.hc.CheckRedirect == nil || d.hc.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("default client may follow redirects")
	}
}

func TestAttemptConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	d := NewDeliverer(Options{Client: loopbackClient(t, addr.Port), Timeout: 5 * time.Second})
	target := "http://" + addr.String() + "/hook/PATHTOKEN?token=QUERYTOKEN"
	res := d.Attempt(t.Context(), target, testMessage(t), testSigner(t, katSecret))
	if res.Outcome != Retry || res.Status != 0 || res.Err == nil || errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("Attempt = %+v, want Retry with a network error", res)
	}
	if s := res.Err.Error(); strings.Contains(s, "PATHTOKEN") || strings.Contains(s, "QUERYTOKEN") {
		t.Fatalf("error repeats the URL's path or query: %q", s)
	}
}

func TestAttemptCallerCanceled(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil, nil, func(http.ResponseWriter, *http.Request, int) {})
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t))})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := d.Attempt(ctx, rc.srv.URL, testMessage(t), testSigner(t, katSecret))
	if res.Outcome != Retry || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("Attempt = %+v, want Retry with context.Canceled", res)
	}
	if n := rc.hits.Load(); n != 0 {
		t.Fatalf("receiver hit %d times after cancel", n)
	}
}

// TestAttemptSSRF: the guard refuses a private target with its default
// options, before any request reaches it, and the attempt is not retried;
// opening private addresses and the port lets the same target through.
func TestAttemptSSRF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		client func(port int) *http.Client
		want   Outcome
	}{
		{name: "nil client means guard defaults", client: func(int) *http.Client { return nil }, want: Fail},
		{name: "guard defaults", client: func(int) *http.Client {
			return netguard.New(netguard.Options{MaxRedirects: -1}).HTTPClient()
		}, want: Fail},
		{name: "guard defaults with the port allowed", client: func(port int) *http.Client {
			return netguard.New(netguard.Options{AllowedPorts: []int{port}, MaxRedirects: -1}).HTTPClient()
		}, want: Fail},
		{name: "private allowed, port not", client: func(int) *http.Client {
			return netguard.New(netguard.Options{AllowPrivate: true, MaxRedirects: -1, Dial: tripwire(t)}).HTTPClient()
		}, want: Fail},
		{name: "private and port allowed", client: func(port int) *http.Client { return loopbackClient(t, port) }, want: Delivered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, katSecret)
			rc := newReceiver(t, v, nil, func(http.ResponseWriter, *http.Request, int) {})
			d := NewDeliverer(Options{Client: tc.client(rc.port(t)), Timeout: 5 * time.Second})
			res := d.Attempt(t.Context(), rc.srv.URL+"/hook", testMessage(t), testSigner(t, katSecret))
			if res.Outcome != tc.want {
				t.Fatalf("Attempt = %+v, want %v", res, tc.want)
			}
			hits := rc.hits.Load()
			if tc.want == Fail {
				var blocked *netguard.BlockedError
				if !errors.As(res.Err, &blocked) {
					t.Fatalf("Err = %v, want *netguard.BlockedError", res.Err)
				}
				if hits != 0 {
					t.Fatalf("refused target was hit %d times", hits)
				}
				return
			}
			if hits != 1 || rc.got()[0].verifyErr != nil {
				t.Fatalf("allowed target: %d hits, verify %v", hits, rc.got()[0].verifyErr)
			}
		})
	}
}

func TestAttemptRejectsBadInput(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil, nil, func(http.ResponseWriter, *http.Request, int) {})
	hostPort := strings.TrimPrefix(rc.srv.URL, "http://")
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t))})
	good := testMessage(t)
	signer := testSigner(t, katSecret)
	tests := []struct {
		name   string
		url    string
		msg    Message
		signer *Signer
		want   error
	}{
		{name: "empty URL", url: "", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "ftp", url: "ftp://" + hostPort + "/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "file", url: "file:///etc/passwd", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "credentials", url: "http://u:p@" + hostPort + "/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "no host", url: "http:///hook", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "opaque", url: "http:" + hostPort, msg: good, signer: signer, want: ErrInvalidURL},
		{name: "space", url: "http://" + hostPort + "/a b", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "backslash", url: "http://allowed.test\\@" + hostPort + "/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "newline", url: "http://" + hostPort + "/\r\nX: y", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "port out of range", url: "http://127.0.0.1:65536/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "port zero", url: "http://127.0.0.1:0/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "unbalanced bracket", url: "http://[::1/", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "relative", url: "/hook", msg: good, signer: signer, want: ErrInvalidURL},
		{name: "huge", url: "http://" + hostPort + "/" + strings.Repeat("a", 9000), msg: good, signer: signer, want: ErrInvalidURL},
		{name: "nil signer", url: rc.srv.URL, msg: good, want: ErrMessage},
		{name: "empty id", url: rc.srv.URL, msg: Message{Body: good.Body}, signer: signer, want: ErrMessage},
		{name: "id with dot", url: rc.srv.URL, msg: Message{ID: "msg_a.b", Body: good.Body}, signer: signer, want: ErrMessage},
		{name: "id with newline", url: rc.srv.URL, msg: Message{ID: "msg_a\nb", Body: good.Body}, signer: signer, want: ErrMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := d.Attempt(t.Context(), tc.url, tc.msg, tc.signer)
			if res.Outcome != Fail || !errors.Is(res.Err, tc.want) {
				t.Fatalf("Attempt = %+v, want Fail with %v", res, tc.want)
			}
		})
	}
	t.Cleanup(func() {
		if n := rc.hits.Load(); n != 0 {
			t.Errorf("receiver hit %d times by invalid attempts", n)
		}
	})
}

// TestAttemptLogs: one record per attempt with the useful fields and none
// of the URL's path or query, the secret, the signature or the body.
func TestAttemptLogs(t *testing.T) {
	t.Parallel()
	const bodyCanary = "RESPONSE-BODY-CANARY"
	rc := newReceiver(t, nil, nil, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, bodyCanary)
	})
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := NewDeliverer(Options{Client: loopbackClient(t, rc.port(t)), Logger: logger})
	msg := testMessage(t)
	res := d.Attempt(t.Context(), rc.srv.URL+"/hook/PATHTOKEN?token=QUERYTOKEN#FRAG", msg, testSigner(t, katSecret))
	if res.Outcome != Retry {
		t.Fatalf("Attempt = %+v", res)
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	sig := rc.got()[0].header.Get("webhook-signature")
	for _, want := range []string{"webhook_id=" + msg.ID, "status=500", "outcome=retry", "event=image.job.succeeded", "host=127.0.0.1:"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, leak := range []string{"PATHTOKEN", "QUERYTOKEN", "FRAG", bodyCanary, "MfKQ9r8G", sig[3:20], string(msg.Body)} {
		if strings.Contains(logs, leak) {
			t.Errorf("log leaks %q:\n%s", leak, logs)
		}
		if strings.Contains(res.Err.Error(), leak) {
			t.Errorf("Err leaks %q: %v", leak, res.Err)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// endless is a response body that never ends, counting what is read.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestDrainIsBounded(t *testing.T) {
	t.Parallel()
	var e endless
	if n := drain(&e); n != MaxResponseBytes {
		t.Fatalf("drain read %d bytes, want %d", n, MaxResponseBytes)
	}
	if e.n > MaxResponseBytes {
		t.Fatalf("drain pulled %d bytes from the body, cap %d", e.n, MaxResponseBytes)
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{Delivered: "delivered", Retry: "retry", Disable: "disable", Fail: "fail", 0: "Outcome(0)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

// TestAttemptNeverFollowsRedirects hands Attempt a guarded client that
// would follow redirects to an allowed port: the delivery still stops at
// the 3xx.
func TestAttemptNeverFollowsRedirects(t *testing.T) {
	t.Parallel()
	target := newReceiver(t, nil, nil, func(http.ResponseWriter, *http.Request, int) {})
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, nil, nil, func(w http.ResponseWriter, r *http.Request, _ int) {
				http.Redirect(w, r, target.srv.URL+"/moved", code)
			})
			following := netguard.New(netguard.Options{
				AllowPrivate: true,
				AllowedPorts: []int{rc.port(t), target.port(t)},
				MaxRedirects: 3,
				Dial:         tripwire(t),
			}).HTTPClient()
			d := NewDeliverer(Options{Client: following})
			res := d.Attempt(t.Context(), rc.srv.URL, testMessage(t), testSigner(t, katSecret))
			if res.Outcome != Retry || res.Status != code {
				t.Fatalf("Attempt = %+v, want Retry with status %d", res, code)
			}
		})
	}
	t.Cleanup(func() {
		if n := target.hits.Load(); n != 0 {
			t.Errorf("redirect target hit %d times", n)
		}
	})
}
