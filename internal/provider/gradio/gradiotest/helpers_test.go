package gradiotest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// do sends a request and returns status, headers and body.
func do(t *testing.T, method, url string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil && hdr["Content-Type"] == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}

func mustJSONT(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// join posts queue/join and returns the event id.
func join(t *testing.T, s *Server, session string, fn int, data []any) string {
	t.Helper()
	body := mustJSONT(t, map[string]any{"data": data, "event_data": nil, "fn_index": fn, "trigger_id": nil, "session_hash": session})
	code, _, b := do(t, http.MethodPost, s.URL+s.Prefix()+"/queue/join?", body, map[string]string{"x-gradio-user": "api"})
	if code != http.StatusOK {
		t.Fatalf("join: %d %s", code, b)
	}
	var r struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.EventID) != 32 {
		t.Fatalf("join response %s: %v", b, err)
	}
	return r.EventID
}

// sse is an open event stream read frame by frame.
type sse struct {
	t      *testing.T
	resp   *http.Response
	frames chan string
	errc   chan error
	cancel context.CancelFunc
}

// openStream opens an SSE URL and reads raw frames (the text between blank
// lines) in the background.
func openStream(t *testing.T, url string, hdr map[string]string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	st := &sse{t: t, resp: resp, frames: make(chan string, 1024), errc: make(chan error, 1), cancel: cancel}
	t.Cleanup(st.close)
	go func() {
		defer close(st.frames)
		br := bufio.NewReader(resp.Body)
		var cur strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if cur.Len() > 0 || line != "" {
					st.errc <- fmt.Errorf("stream ended mid-frame: %q", cur.String()+line)
				}
				return
			}
			if line == "\n" {
				st.frames <- cur.String()
				cur.Reset()
				continue
			}
			cur.WriteString(line)
		}
	}()
	return st
}

func (st *sse) close() {
	st.cancel()
	st.resp.Body.Close()
}

// next returns the next raw frame, or ok=false at end of stream.
func (st *sse) next() (string, bool) {
	st.t.Helper()
	select {
	case f, ok := <-st.frames:
		return f, ok
	case <-time.After(testTimeout):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		st.t.Fatalf("timed out waiting for a frame\n%s", buf[:n])
		return "", false
	}
}

// message is one decoded queue/data frame with its key order.
type message struct {
	raw  string
	keys []string
	m    map[string]any
}

func (m message) msg() string { s, _ := m.m["msg"].(string); return s }

// nextMsg reads one queue/data frame, checking it is a single "data: " line.
func (st *sse) nextMsg() (message, bool) {
	st.t.Helper()
	f, ok := st.next()
	if !ok {
		return message{}, false
	}
	if !strings.HasPrefix(f, "data: ") || strings.Count(f, "\n") != 1 {
		st.t.Fatalf("frame is not one data line: %q", f)
	}
	raw := strings.TrimSuffix(strings.TrimPrefix(f, "data: "), "\n")
	return decodeMessage(st.t, raw), true
}

// nextNonHeartbeat skips heartbeats.
func (st *sse) nextNonHeartbeat() (message, bool) {
	st.t.Helper()
	for {
		m, ok := st.nextMsg()
		if !ok || m.msg() != "heartbeat" {
			return m, ok
		}
	}
}

// until reads messages up to and including the end of the stream.
func (st *sse) all() []message {
	st.t.Helper()
	var out []message
	for {
		m, ok := st.nextNonHeartbeat()
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

func decodeMessage(t *testing.T, raw string) message {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("frame %q: %v", raw, err)
	}
	return message{raw: raw, keys: topKeys(t, raw), m: m}
}

// topKeys returns the top-level keys of a JSON object in wire order.
func topKeys(t *testing.T, raw string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func msgs(ms []message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.msg()
	}
	return out
}

// pngSize fetches url and returns the decoded PNG's size.
func pngSize(t *testing.T, url string, hdr map[string]string) (int, int) {
	t.Helper()
	code, h, b := do(t, http.MethodGet, url, nil, hdr)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, b)
	}
	if ct := h.Get("Content-Type"); ct != "image/png" {
		t.Fatalf("content type %q", ct)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding png: %v", err)
	}
	return cfg.Width, cfg.Height
}

// gate is a RunFunc that blocks until released or cancelled, reporting
// starts and cancellations.
type gate struct {
	started  chan string
	release  chan struct{}
	canceled chan string
}

func newGate() *gate {
	return &gate{started: make(chan string, 16), release: make(chan struct{}), canceled: make(chan string, 16)}
}

func (g *gate) run(ctx context.Context, c *Call) ([]any, error) {
	g.started <- c.EventID
	select {
	case <-g.release:
		return []any{"done"}, nil
	case <-ctx.Done():
		g.canceled <- c.EventID
		return nil, ctx.Err()
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func textEndpoint(name string, run RunFunc) Endpoint {
	return Endpoint{
		APIName: name,
		Inputs:  []Component{{Type: "textbox", Label: "Prompt", Name: "prompt"}},
		Outputs: []Component{{Type: "textbox", Label: "Out"}},
		Run:     run,
	}
}
