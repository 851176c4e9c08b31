package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/easelgw/easel/internal/cli"
	"github.com/easelgw/easel/internal/logbuf"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// Credentials of every test server. The API key satisfies easel's key
// rules (20+ characters, 8+ distinct); the token is what the fake Space
// demands, so every generation also proves the token reached it.
const (
	testKey   = "e2e-Kq7Vx2Lm9Rt4Zs8Wn3Yb"
	testToken = "hf_e2eCanaryToken_7f3a9c2d1b"
)

// Model ids the test configuration defines.
const (
	modelID    = "z-image-turbo"
	modelOther = "z-image-turbo-fast"
)

// Timeouts: every wait in this package is bounded by one of these.
const (
	startTimeout = 20 * time.Second
	callTimeout  = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

// scenario is what one test changes about the upstream and the backend; the
// zero value is a healthy mrfakename-shaped Space with quick progress.
type scenario struct {
	// preset is the backend preset (default z-image-turbo-mrfakename).
	preset string
	// endpoints replaces the fake's layout (default ZImageTurbo).
	endpoints []gradiotest.Endpoint
	// run replaces the generate function of the default layout, keeping
	// its inputs and outputs so easel's /info checks still pass.
	run gradiotest.RunFunc
	// fakeConcurrency and fakeMaxQueue set the fake's own queue.
	fakeConcurrency, fakeMaxQueue int
	// hook is the fake's front-door middleware.
	hook func(http.ResponseWriter, *http.Request) bool
	// concurrency is easel's slot count for the backend (default 4).
	concurrency int
	// stallTimeout is the backend's stall_timeout (default 20s).
	stallTimeout time.Duration
	// extraBackends and extraModels are YAML list items appended to the
	// backends and models of the configuration (indented as list items at
	// two spaces; "$FAKE_URL" in extraBackends becomes the fake's URL);
	// extraTop is YAML added at the top level.
	extraBackends, extraModels, extraTop string
	// env adds environment variables for easel.
	env map[string]string
}

// bundle is one running easel server wired to one fake Space.
type bundle struct {
	fake   *gradiotest.Server
	base   string // http://127.0.0.1:port, no trailing slash
	client openai.Client
	// raw is a plain HTTP client sharing the recorder, for what the SDK
	// hides (exact bodies, headers, the SSE terminator).
	raw  *http.Client
	rec  *recorder
	logs *syncBuffer
}

// setup starts a fake Space and `easel serve` in-process against it, and
// stops both when the test ends.
func setup(t *testing.T, sc scenario) *bundle {
	t.Helper()
	if sc.preset == "" {
		sc.preset = "z-image-turbo-mrfakename"
	}
	if sc.endpoints == nil {
		sc.endpoints = gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 3, StepDelay: 5 * time.Millisecond})
		if sc.run != nil {
			for i := range sc.endpoints {
				if strings.HasPrefix(sc.endpoints[i].APIName, "generate_image") {
					sc.endpoints[i].Run = sc.run
				}
			}
		}
	}
	if sc.concurrency == 0 {
		sc.concurrency = 4
	}
	if sc.stallTimeout == 0 {
		sc.stallTimeout = 20 * time.Second
	}
	fake := gradiotest.New(gradiotest.Options{
		Endpoints:   sc.endpoints,
		Concurrency: sc.fakeConcurrency,
		MaxQueue:    sc.fakeMaxQueue,
		Token:       testToken,
		Hook:        sc.hook,
	})

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "easel.yaml")
	yaml := fmt.Sprintf(`log:
  level: error
images:
  url_ttl: 1h
  job_timeout: 60s
backends:
  - name: fake-space
    preset: %s
    concurrency: %d
    gradio:
      space: %s
      stall_timeout: %s
`+strings.ReplaceAll(strings.ReplaceAll(sc.extraBackends, "%", "%%"), "$FAKE_URL", fake.URL)+`models:
  - id: %s
    aliases: [dall-e-3, gpt-image-1]
    backends: [fake-space]
    description: Z-Image-Turbo on a fake Space
  - id: %s
    backends: [fake-space]
%s%s`, sc.preset, sc.concurrency, fake.URL, sc.stallTimeout, modelID, modelOther, sc.extraModels, sc.extraTop)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		fake.Close()
		t.Fatal(err)
	}

	env := map[string]string{"EASEL_API_KEYS": testKey, "HF_TOKEN": testToken}
	for k, v := range sc.env {
		env[k] = v
	}
	logs := &syncBuffer{}
	addrc := make(chan net.Addr, 1)
	root := cli.NewRoot(cli.Options{
		Version:  "v0.0.0-e2e",
		Getenv:   func(k string) string { return env[k] },
		Stdout:   io.Discard,
		Stderr:   logs,
		OnListen: func(a net.Addr) { addrc <- a },
	})
	root.SetArgs([]string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		fake.Close()
		t.Fatalf("easel serve exited before listening: %v\n%s", err, logs.tail())
	case <-time.After(startTimeout):
		cancel()
		fake.Close()
		t.Fatalf("easel serve did not listen within %s\n%s", startTimeout, logs.tail())
	}

	rec := &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
	httpClient := &http.Client{Transport: rec}
	b := &bundle{
		fake: fake,
		base: "http://" + addr.String(),
		raw:  httpClient,
		rec:  rec,
		logs: logs,
	}
	b.client = openai.NewClient(
		option.WithBaseURL(b.base+"/v1/"),
		option.WithAPIKey(testKey),
		option.WithHTTPClient(httpClient),
		// easel's own retry policy is under test; the SDK must not hide it.
		option.WithMaxRetries(0),
		option.WithRequestTimeout(callTimeout),
	)

	t.Cleanup(func() {
		// The fake goes first: closing it ends every run still blocked
		// upstream, so easel's drain does not wait on them.
		fake.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("easel serve returned %v", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("easel serve did not stop within %s of cancellation", stopTimeout)
		}
		rec.base.CloseIdleConnections()
		if t.Failed() {
			t.Logf("easel log (tail):\n%s", logs.tail())
		}
	})
	return b
}

// ctx is a context bounded by callTimeout and cancelled at test end.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// do sends a raw request. key "" sends no Authorization header.
func (b *bundle) do(t *testing.T, method, path, key string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.base + path
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := b.raw.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, path, err)
	}
	return resp, data
}

// postJSON sends v as JSON with the test key.
func (b *bundle) postJSON(t *testing.T, path string, v any) (*http.Response, []byte) {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, http.MethodPost, path, testKey, body)
}

// generateJoins is the fake's record of generation events (the seed
// toggle endpoint and other dependencies are left out).
func (b *bundle) generateJoins() []gradiotest.Join {
	var out []gradiotest.Join
	for _, j := range b.fake.Joins() {
		if j.APIName == "generate_image" || j.APIName == "generate" {
			out = append(out, j)
		}
	}
	return out
}

// waitFor polls cond until it holds or d passes. It is only used where the
// fake offers no channel to wait on (its request journal).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// decodePNG checks data is a PNG and returns its dimensions.
func decodePNG(t *testing.T, data []byte) image.Config {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("result is not a PNG (starts %q)", data[:min(len(data), 8)])
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decoding PNG header: %v", err)
	}
	// A header alone could hide a truncated file; decode the pixels too.
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Fatalf("decoding PNG: %v", err)
	}
	return cfg
}

// decodeB64PNG decodes a b64_json value and checks it is a PNG.
func decodeB64PNG(t *testing.T, s string) image.Config {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("b64_json is not base64: %v", err)
	}
	return decodePNG(t, raw)
}

// fetchImage GETs a result URL without any credential and returns its
// status, content type and body.
func (b *bundle) fetchImage(t *testing.T, u string) (int, string, []byte) {
	t.Helper()
	if !strings.HasPrefix(u, b.base+"/v1/files/") {
		t.Fatalf("result URL %q is not under %s/v1/files/", u, b.base)
	}
	resp, body := b.do(t, http.MethodGet, u, "", nil)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// apiError asserts err is an OpenAI API error with the given status.
func apiError(t *testing.T, err error, status int) *openai.Error {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want an *openai.Error with status %d", err, err, status)
	}
	if ae.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", ae.StatusCode, status, ae.RawJSON())
	}
	return ae
}

// envelope is the OpenAI error body, with param and code kept as raw JSON
// so null and absent can be told apart.
type envelope struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// checkEnvelope asserts body is an OpenAI error envelope with every key
// present and the given type, param and code ("" meaning null).
func checkEnvelope(t *testing.T, body []byte, typ, param, code string) envelope {
	t.Helper()
	var keys struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &keys); err != nil || keys.Error == nil {
		t.Fatalf("body is not an error envelope: %v\n%s", err, body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := keys.Error[k]; !ok {
			t.Errorf("error envelope lacks %q: %s", k, body)
		}
	}
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Error.Message == "" {
		t.Errorf("error message is empty: %s", body)
	}
	if typ != "" && e.Error.Type != typ {
		t.Errorf("error type = %q, want %q", e.Error.Type, typ)
	}
	if got := nullableString(e.Error.Param); got != param {
		t.Errorf("error param = %s, want %q", e.Error.Param, param)
	}
	if code != "*" {
		if got := nullableString(e.Error.Code); got != code {
			t.Errorf("error code = %s, want %q", e.Error.Code, code)
		}
	}
	return e
}

func nullableString(raw json.RawMessage) string {
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return ""
	}
	return *s
}

// recorder is an http.RoundTripper that keeps a copy of every response
// header and of every body byte the client reads, to prove a secret never
// reached the client. It tees as the client reads, so streams stay live.
type recorder struct {
	base *http.Transport

	mu        sync.Mutex
	seen      bytes.Buffer
	truncated bool
}

// maxRecorded bounds what one test server's recorder keeps.
const maxRecorded = 256 << 20

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	var hb bytes.Buffer
	fmt.Fprintf(&hb, "%s\n", resp.Status)
	_ = resp.Header.Write(&hb)
	r.add(hb.Bytes())
	resp.Body = &teeBody{rc: resp.Body, r: r}
	return resp, nil
}

func (r *recorder) add(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen.Len()+len(p) > maxRecorded {
		r.truncated = true
		return
	}
	r.seen.Write(p)
}

// contains reports whether s appeared in anything recorded so far, and
// whether the record is complete.
func (r *recorder) contains(s string) (found, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.seen.Bytes(), []byte(s)), !r.truncated
}

type teeBody struct {
	rc io.ReadCloser
	r  *recorder
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.r.add(p[:n])
	}
	return n, err
}

func (b *teeBody) Close() error { return b.rc.Close() }

// syncBuffer collects the server log from concurrent writers.
type syncBuffer struct{ logbuf.Buffer }

// tail is the end of the log, enough to diagnose a failure.
func (s *syncBuffer) tail() string {
	const keep = 16 << 10
	out := s.String()
	if len(out) > keep {
		out = "…" + out[len(out)-keep:]
	}
	return out
}
