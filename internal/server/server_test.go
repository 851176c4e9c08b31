package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/logbuf"
	"github.com/easelgw/easel/internal/server"
)

const (
	key1 = "sk-easel_k1abcdef_0123456789abcdefghijklmnopqrstuv"
	key2 = "sk-easel_k2abcdef_zyxwvutsrqponmlkjihgfedcba987654"
)

func keyID(k string) string {
	d := sha256.Sum256([]byte(k))
	return hex.EncodeToString(d[:])[:12]
}

// syncBuffer collects a server log from concurrent writers.
type syncBuffer = logbuf.Buffer

// echo answers with the ids the middleware put in the context.
func echo() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"key_id":     server.KeyID(r.Context()),
			"request_id": server.RequestID(r.Context()),
		})
	})
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("/stale-deadline", func(w http.ResponseWriter, _ *http.Request) {
		// Answer in full, then leave a write deadline in the past behind
		// on the connection, as a finished stream can.
		w.Header().Set("Content-Length", "2")
		_, _ = w.Write([]byte("ok"))
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Unix(1, 0))
	})
	mux.HandleFunc("/panic-late", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("partial"))
		panic("late boom")
	})
	return mux
}

func newServer(t *testing.T, opts server.Options) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Handler == nil {
		opts.Handler = echo()
	}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	s, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, logs
}

func send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	srv, logs := newServer(t, server.Options{
		APIKeys:     []string{key1, key2},
		PublicPaths: []string{"/v1/files/", "/"},
	})
	type tc struct {
		name   string
		path   string
		header []string // Authorization values
		status int
		keyID  string
	}
	cases := []tc{
		{"key 1", "/v1/models", []string{"Bearer " + key1}, 200, keyID(key1)},
		{"key 2", "/v1/models", []string{"Bearer " + key2}, 200, keyID(key2)},
		{"no header", "/v1/models", nil, 401, ""},
		{"wrong secret", "/v1/models", []string{"Bearer " + key1[:len(key1)-1] + "x"}, 401, ""},
		{"unknown key", "/v1/models", []string{"Bearer sk-easel_zzzzzzzz_0123456789abcdefghijklmnopqrstuv"}, 401, ""},
		{"truncated", "/v1/models", []string{"Bearer " + key1[:20]}, 401, ""},
		// A trailing space itself is optional whitespace in HTTP and never
		// reaches a handler; anything after the key does.
		{"key and more", "/v1/models", []string{"Bearer " + key1 + " x"}, 401, ""},
		{"double space", "/v1/models", []string{"Bearer  " + key1}, 401, ""},
		{"lowercase scheme", "/v1/models", []string{"bearer " + key1}, 401, ""},
		{"basic scheme", "/v1/models", []string{"Basic " + key1}, 401, ""},
		{"bare key", "/v1/models", []string{key1}, 401, ""},
		{"empty bearer", "/v1/models", []string{"Bearer "}, 401, ""},
		{"two headers", "/v1/models", []string{"Bearer " + key1, "Bearer " + key1}, 401, ""},
		{"key in query", "/v1/models?api_key=" + key1, nil, 401, ""},
		{"valid header and key in query", "/v1/models?key=" + key1, []string{"Bearer " + key1}, 401, ""},
		{"public prefix", "/v1/files/abc.png", nil, 200, ""},
		{"public prefix ignores bad header", "/v1/files/abc.png", []string{"Bearer nonsense"}, 200, ""},
		{"root exact is public", "/", nil, 200, ""},
		{"root is not a prefix", "/v1/", nil, 401, ""},
		{"prefix needs the slash", "/v1/files", nil, 401, ""},
		{"healthz always public", "/healthz", nil, 200, ""},
	}
	var bodies []string
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
		for _, h := range c.header {
			req.Header.Add("Authorization", h)
		}
		resp, body := send(t, req)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
			continue
		}
		if c.status == 401 {
			bodies = append(bodies, body)
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: content type %q", c.name, resp.Header.Get("Content-Type"))
			}
			continue
		}
		if c.path == "/healthz" {
			if body != `{"status":"ok"}` {
				t.Errorf("healthz body %q", body)
			}
			continue
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got["key_id"] != c.keyID {
			t.Errorf("%s: key id %q, want %q", c.name, got["key_id"], c.keyID)
		}
	}
	// Every failure looks the same, so none tells a prober anything.
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("401 bodies differ:\n%s\n%s", bodies[0], b)
		}
	}
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(bodies[0]), &env); err != nil || env.Error.Code != "invalid_api_key" ||
		env.Error.Type == "" || env.Error.Message == "" || !strings.Contains(bodies[0], `"param":null`) {
		t.Errorf("401 body %s", bodies[0])
	}
	if l := logs.String(); strings.Contains(l, key1) || strings.Contains(l, key2) || strings.Contains(l, key1[:20]) {
		t.Error("a key reached the logs")
	}
}

func TestAuthOff(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, server.Options{})
	resp, body := send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/models", nil))
	if resp.StatusCode != 200 || !strings.Contains(body, `"key_id":""`) {
		t.Errorf("auth off: %d %s", resp.StatusCode, body)
	}
}

func mustReq(t *testing.T, method, url string, hdr map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed = "https://app.example"
	others := []string{"null", "https://app.example.evil.test", "http://app.example", "https://evilapp.example", "https://app.example:8443"}

	t.Run("default has none", func(t *testing.T) {
		t.Parallel()
		srv, _ := newServer(t, server.Options{APIKeys: []string{key1}})
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			req := mustReq(t, method, srv.URL+"/v1/models", map[string]string{
				"Origin": allowed, "Authorization": "Bearer " + key1, "Access-Control-Request-Method": "POST",
			})
			resp, _ := send(t, req)
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("%s: ACAO %q with no CORS config", method, v)
			}
		}
	})

	t.Run("allowlist", func(t *testing.T) {
		t.Parallel()
		srv, _ := newServer(t, server.Options{APIKeys: []string{key1}, CORSOrigins: []string{allowed}})
		for _, withKey := range []bool{true, false} {
			hdr := map[string]string{"Origin": allowed}
			if withKey {
				hdr["Authorization"] = "Bearer " + key1
			}
			resp, _ := send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/models", hdr))
			if resp.Header.Get("Access-Control-Allow-Origin") != allowed || !cmp.Equal(resp.Header.Values("Vary"), []string{"Origin"}) {
				t.Errorf("allowed origin (key %v, status %d): ACAO %q Vary %q", withKey, resp.StatusCode,
					resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Values("Vary"))
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed")
			}
			if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "x-request-id") {
				t.Errorf("expose headers %q", resp.Header.Get("Access-Control-Expose-Headers"))
			}
		}
		for _, o := range others {
			resp, _ := send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/models", map[string]string{"Origin": o, "Authorization": "Bearer " + key1}))
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("origin %q got ACAO %q", o, v)
			}
			if resp.StatusCode != 200 {
				t.Errorf("origin %q: status %d (CORS must not block non-browser use)", o, resp.StatusCode)
			}
		}

		// Preflight: no key needed, requested headers echoed.
		pre := mustReq(t, http.MethodOptions, srv.URL+"/v1/images/generations", map[string]string{
			"Origin": allowed, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "Authorization, Content-Type, X-Stainless-OS, x-stainless-retry-count",
		})
		resp, _ := send(t, pre)
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != allowed {
			t.Fatalf("preflight: %d ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		if got := resp.Header.Get("Access-Control-Allow-Headers"); got != "authorization, content-type, x-stainless-os, x-stainless-retry-count" {
			t.Errorf("allow headers %q", got)
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("allow methods %q", resp.Header.Get("Access-Control-Allow-Methods"))
		}
		for _, o := range others {
			pre := mustReq(t, http.MethodOptions, srv.URL+"/v1/images/generations", map[string]string{
				"Origin": o, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization",
			})
			resp, _ := send(t, pre)
			for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("preflight from %q: %s %q", o, h, v)
				}
			}
		}
		// Odd header names are not reflected.
		pre = mustReq(t, http.MethodOptions, srv.URL+"/v1/models", map[string]string{
			"Origin": allowed, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x<script>, authorization",
		})
		resp, _ = send(t, pre)
		if got := resp.Header.Get("Access-Control-Allow-Headers"); got != "authorization" {
			t.Errorf("allow headers %q", got)
		}
	})

	t.Run("wildcard", func(t *testing.T) {
		t.Parallel()
		srv, _ := newServer(t, server.Options{APIKeys: []string{key1}, CORSOrigins: []string{"*"}})
		resp, _ := send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/models", map[string]string{"Origin": "https://any.example"}))
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("wildcard: ACAO %q", resp.Header.Get("Access-Control-Allow-Origin"))
		}
		resp, _ = send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/models", map[string]string{"Origin": "null"}))
		if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
			t.Errorf("null origin got %q", v)
		}
	})

	t.Run("bad configs", func(t *testing.T) {
		t.Parallel()
		for _, origins := range [][]string{
			{"*", allowed}, {"null"}, {""}, {"https://app.example/"}, {"https://app.example/path"},
			{"app.example"}, {"ftp://app.example"}, {"https://app.example?x=1"},
		} {
			if _, err := server.New(server.Options{Handler: echo(), CORSOrigins: origins}); err == nil {
				t.Errorf("origins %q accepted", origins)
			}
		}
	})
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, server.Options{})
	cases := []struct {
		in   string
		kept bool
	}{
		{"abc-123_X.y", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"has space", false},
		{"semi;colon", false},
		{"", false},
	}
	for _, c := range cases {
		req := mustReq(t, http.MethodGet, srv.URL+"/x", nil)
		if c.in != "" {
			req.Header.Set("X-Request-Id", c.in)
		}
		resp, body := send(t, req)
		got := resp.Header.Get("X-Request-Id")
		if c.kept && got != c.in {
			t.Errorf("%q: header %q", c.in, got)
		}
		if !c.kept && (got == c.in || !strings.HasPrefix(got, "req_")) {
			t.Errorf("%q: header %q, want a generated id", c.in, got)
		}
		var ids map[string]string
		_ = json.Unmarshal([]byte(body), &ids)
		if ids["request_id"] != got {
			t.Errorf("context id %q, header %q", ids["request_id"], got)
		}
	}
}

func TestRecoverAndAccessLog(t *testing.T) {
	t.Parallel()
	srv, logs := newServer(t, server.Options{APIKeys: []string{key1}})
	resp, body := send(t, mustReq(t, http.MethodGet, srv.URL+"/panic", map[string]string{"Authorization": "Bearer " + key1}))
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"type":"server_error"`) {
		t.Errorf("panic: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "boom") {
		t.Error("panic value leaked to the client")
	}
	resp, body = send(t, mustReq(t, http.MethodGet, srv.URL+"/panic-late", map[string]string{"Authorization": "Bearer " + key1}))
	if resp.StatusCode != 200 || body != "partial" {
		t.Errorf("late panic: %d %q", resp.StatusCode, body)
	}

	const secretSig = "SIGNATURE-CANARY"
	send(t, mustReq(t, http.MethodGet, srv.URL+"/v1/files/a.png?exp=1&sig="+secretSig, map[string]string{"Authorization": "Bearer " + key1}))

	var sawPanic, sawAccess bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == "panic serving request" && strings.Contains(rec["stack"].(string), "server_test") {
			sawPanic = true
		}
		if rec["msg"] == "http request" && rec["path"] == "/v1/files/a.png" {
			sawAccess = true
			for _, k := range []string{"method", "status", "bytes", "duration", "request_id", "key_id"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("access log lacks %s: %s", k, line)
				}
			}
			if rec["key_id"] != keyID(key1) {
				t.Errorf("access log key_id %v", rec["key_id"])
			}
		}
	}
	if !sawPanic || !sawAccess {
		t.Errorf("panic logged %v, access logged %v:\n%s", sawPanic, sawAccess, logs.String())
	}
	if l := logs.String(); strings.Contains(l, secretSig) || strings.Contains(l, key1) {
		t.Error("a signature or key reached the logs")
	}
}

func TestServeAndShutdown(t *testing.T) {
	t.Parallel()
	s, err := server.New(server.Options{Handler: echo()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	resp, body := send(t, mustReq(t, http.MethodGet, "http://"+ln.Addr().String()+"/healthz", nil))
	if resp.StatusCode != 200 || body != `{"status":"ok"}` {
		t.Errorf("healthz %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
}

func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	s, err := server.New(server.Options{Handler: echo()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	req := mustReq(t, http.MethodGet, "http://"+ln.Addr().String()+"/x", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 100<<10))
	resp, _ := send(t, req)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: %d, want 431", resp.StatusCode)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]server.Options{
		"no handler":     {},
		"empty key":      {Handler: echo(), APIKeys: []string{""}},
		"spaced key":     {Handler: echo(), APIKeys: []string{" sk-x"}},
		"relative path":  {Handler: echo(), PublicPaths: []string{"files/"}},
		"negative value": {Handler: echo(), IdleTimeout: -time.Second},
	} {
		if _, err := server.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestWriteDeadlineDoesNotLeak guards the per-request deadlines handlers
// set (SSE, JSON writes): one left behind must not break the next request
// on the same kept-alive connection.
func TestWriteDeadlineDoesNotLeak(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, server.Options{})
	client := srv.Client()
	var reused []bool
	for _, path := range []string{"/stale-deadline", "/x", "/x"} {
		req := mustReq(t, http.MethodGet, srv.URL+path, nil)
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
	}
	if !cmp.Equal(reused, []bool{false, true, true}) {
		t.Errorf("connection reuse %v: the test did not exercise a kept-alive connection", reused)
	}
}
