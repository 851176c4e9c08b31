package jobapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
)

// genericConfig describes a JSON job API unlike the reference one: JSON
// submit, HTTP status as the outcome, status strings, a list of objects as
// the result, and an API key from the environment.
func genericConfig(api string) Config {
	return Config{
		Submit: SubmitConfig{
			URL:  api + "/v1/jobs",
			Body: "json",
			Fields: []Field{
				{Name: "prompt", From: "prompt"},
				{Name: "negative", From: "negative_prompt"},
				{Name: "width", From: "width"},
				{Name: "height", From: "height"},
				{Name: "size", From: "size"},
				{Name: "seed", From: "seed", Default: -1},
				{Name: "steps", From: "steps"},
				{Name: "count", From: "n"},
				{Name: "init_images", From: "images"},
				{Name: "version", Value: 3},
			},
			HeaderEnv: map[string]string{"Authorization": "API_KEY"},
		},
		Accept: AcceptConfig{JobIDPath: "id", OKStatus: []int{201}, MessagePath: "error.message"},
		Poll: PollConfig{
			URL:          api + "/v1/jobs/{job_id}",
			StatusPath:   "state",
			ProgressPath: "pct",
			DoneValues:   []string{"succeeded"},
			FailedValues: []string{"failed", "canceled"},
			ResultPath:   "outputs",
			MessagePath:  "error",
			Interval:     time.Second,
		},
		MaxN: 2,
	}
}

// jsonAPI is a scriptable JSON job API for the generic tests.
type jsonAPI struct {
	mu       sync.Mutex
	submits  []map[string]any
	headers  []http.Header
	states   []string // successive poll states; the last repeats
	polls    int
	outputs  string // JSON of the outputs member when succeeded
	errorMsg string
}

func (a *jsonAPI) handler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			t.Errorf("submit body: %v", err)
		}
		a.mu.Lock()
		a.submits = append(a.submits, body)
		a.headers = append(a.headers, r.Header.Clone())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id": 12345678901234567890}`)
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.headers = append(a.headers, r.Header.Clone())
		st := a.states[min(a.polls, len(a.states)-1)]
		a.polls++
		a.mu.Unlock()
		if r.PathValue("id") != "12345678901234567890" {
			t.Errorf("polled id %q", r.PathValue("id"))
		}
		out := `{"state":"` + st + `","pct":50`
		switch st {
		case "succeeded":
			out += `,"outputs":` + a.outputs
		case "failed":
			out += `,"error":` + a.errorMsg
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, out+"}")
	})
	return mux
}

func TestGenericJSONAPI(t *testing.T) {
	t.Parallel()
	// Results live on another host, which must never see the API key.
	var fileHeaders []http.Header
	var fmu sync.Mutex
	png := pngBytes(t, 10, 10)
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmu.Lock()
		fileHeaders = append(fileHeaders, r.Header.Clone())
		fmu.Unlock()
		_, _ = w.Write(png)
	}))
	defer files.Close()
	api := &jsonAPI{states: []string{"queued", "running", "succeeded"},
		outputs: `[{"url":"` + files.URL + `/a.png"},{"url":"` + files.URL + `/b.png"}]`}
	srv := httptest.NewServer(api.handler(t))
	defer srv.Close()

	cfg := genericConfig(srv.URL)
	if err := cfg.ResolveEnv(func(string) (string, bool) { return "Bearer k-123", true }); err != nil {
		t.Fatal(err)
	}
	clock := newVClock()
	p := newTestProvider(t, cfg, clock, Options{})
	if c := p.Capabilities(); !c.TextToImage || !c.ImageToImage || c.MaxInputImages != 4 || !c.Seed || !c.Steps || !c.NegativePrompt || c.MaxN != 2 {
		t.Errorf("capabilities %+v", c)
	}
	req := &provider.Request{JobID: "j", Kind: provider.KindEdit, Prompt: "p", N: 2, Width: 640, Height: 480, Steps: 8,
		Images: []provider.InputImage{{Data: []byte("\x89PNG\r\n\x1a\nxx"), MIME: "image/png"}}}
	var ev events
	res, err := p.Generate(context.Background(), req, ev.emit)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if len(res.Images) != 2 || res.UpstreamID != "12345678901234567890" {
		t.Fatalf("%d images, id %q", len(res.Images), res.UpstreamID)
	}
	want := map[string]any{
		"prompt": "p", "width": float64(640), "height": float64(480), "size": "640x480", "seed": float64(-1),
		"steps": float64(8), "count": float64(2), "version": float64(3),
		"init_images": []any{"data:image/png;base64,iVBORw0KGgp4eA=="},
	}
	if diff := cmp.Diff(want, api.submits[0]); diff != "" {
		t.Errorf("JSON submit (-want +got):\n%s", diff)
	}
	for i, h := range api.headers {
		if h.Get("Authorization") != "Bearer k-123" {
			t.Errorf("API request %d: Authorization %q", i, h.Get("Authorization"))
		}
	}
	for i, h := range fileHeaders {
		if h.Get("Authorization") != "" {
			t.Errorf("result download %d carried the API key", i)
		}
	}
	if api.polls != 3 {
		t.Errorf("%d polls, want 3", api.polls)
	}
	started := 0
	for _, e := range ev.all() {
		if e.Type == provider.EventStarted {
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d started events", started)
	}
}

func TestGenericFailureAndStatusCodes(t *testing.T) {
	t.Parallel()
	api := &jsonAPI{states: []string{"weird", "failed", "succeeded"}, errorMsg: `{"message":"out of <b>credits</b>"}`}
	srv := httptest.NewServer(api.handler(t))
	defer srv.Close()
	cfg := genericConfig(srv.URL)
	cfg.Submit.HeaderEnv = nil
	p := newTestProvider(t, cfg, newVClock(), Options{})
	_, err := p.Generate(context.Background(), &provider.Request{Prompt: "p", N: 1}, nil)
	pe := providerError(t, err)
	if pe.Kind != provider.KindUpstream || !strings.HasSuffix(pe.Message, "failed: out of credits") {
		t.Errorf("error = %v", err)
	}
	// An unknown status counted as running; the first terminal state
	// stuck.
	if api.polls != 2 {
		t.Errorf("%d polls, want 2", api.polls)
	}

	// A 200 is not in ok_status [201]: an unexpected answer.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"prompt too long"}}`)
	}))
	defer refusing.Close()
	p2 := newTestProvider(t, genericConfigNoKey(refusing.URL), newVClock(), Options{})
	_, err = p2.Generate(context.Background(), &provider.Request{Prompt: "p", N: 1}, nil)
	if pe := providerError(t, err); pe.Kind != provider.KindBadRequest || !pe.NotStarted || !strings.Contains(pe.Message, "prompt too long") {
		t.Errorf("400 error = %v", err)
	}
}

func genericConfigNoKey(api string) Config {
	c := genericConfig(api)
	c.Submit.HeaderEnv = nil
	return c
}

func TestSubmitConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p := newTestProvider(t, genericConfigNoKey(url), newVClock(), Options{})
	_, err := p.Generate(context.Background(), &provider.Request{Prompt: "p", N: 1}, nil)
	if pe := providerError(t, err); pe.Kind != provider.KindUnavailable || !pe.NotStarted {
		t.Errorf("error = %v, want a not-started unavailable", err)
	}
}

// TestHugeResults checks that result bodies go through the size limit: a
// declared size over the cap is refused before reading, an endless body is
// cut at the cap.
func TestHugeResults(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared.png":
			w.Header().Set("Content-Length", "2147483648")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n"))
		case "/endless.png":
			chunk := make([]byte, 32<<10)
			copy(chunk, "\x89PNG\r\n\x1a\n")
			n := 0
			for n < 64*limit { // bounded: far past the cap
				if _, err := w.Write(chunk); err != nil {
					break
				}
				n += len(chunk)
			}
		}
	}))
	defer files.Close()
	for _, name := range []string{"declared", "endless"} {
		t.Run(name, func(t *testing.T) {
			api := &jsonAPI{states: []string{"succeeded"}, outputs: `"` + files.URL + `/` + name + `.png"`}
			srv := httptest.NewServer(api.handler(t))
			defer srv.Close()
			cfg := genericConfigNoKey(srv.URL)
			cfg.Fetch.MaxBytes = limit
			p := newTestProvider(t, cfg, newVClock(), Options{})
			start := time.Now()
			_, err := p.Generate(context.Background(), &provider.Request{Prompt: "p", N: 1}, nil)
			pe := providerError(t, err)
			if pe.Kind != provider.KindProtocol || !strings.Contains(pe.Message, "too large") {
				t.Errorf("error = %v, want a too-large protocol error", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestSubmitHTTPStatuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status     int
		header     string
		body       string
		kind       provider.ErrorKind
		notStarted bool
		retryAfter time.Duration
		contains   string
	}{
		{401, "", `{"error":{"message":"bad key"}}`, provider.KindConfig, true, 0, "bad key"},
		{404, "", "nope", provider.KindConfig, true, 0, "submit.url"},
		{413, "", "<h1>Too big</h1>", provider.KindBadRequest, true, 0, "Too big"},
		{503, "12", "busy", provider.KindUnavailable, true, 12 * time.Second, "HTTP 503"},
		{502, "", "bad gateway", provider.KindUnavailable, false, 0, "HTTP 502"},
		{418, "", "teapot", provider.KindUpstream, false, 0, "HTTP 418"},
		{200, "", `{"id": ""}`, provider.KindProtocol, false, 0, "not a usable id"},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}))
		cfg := genericConfigNoKey(srv.URL)
		cfg.Accept.OKStatus = nil
		p := newTestProvider(t, cfg, newVClock(), Options{})
		_, err := p.Generate(context.Background(), &provider.Request{Prompt: "p", N: 1}, nil)
		srv.Close()
		pe := providerError(t, err)
		if pe.Kind != tc.kind || pe.NotStarted != tc.notStarted || pe.RetryAfter != tc.retryAfter || !strings.Contains(pe.Message, tc.contains) {
			t.Errorf("HTTP %d: %v (kind %v, not started %v, retry after %v), want %v %v %v containing %q",
				tc.status, err, pe.Kind, pe.NotStarted, pe.RetryAfter, tc.kind, tc.notStarted, tc.retryAfter, tc.contains)
		}
	}
}

// TestSendAuthSameOriginOnly: with fetch.send_auth, a result on the API's
// own host gets the key, a result elsewhere still does not.
func TestSendAuthSameOriginOnly(t *testing.T) {
	t.Parallel()
	png := pngBytes(t, 4, 4)
	var mu sync.Mutex
	auth := map[string]string{}
	serveFile := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth[r.Host+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		_, _ = w.Write(png)
	}
	other := httptest.NewServer(http.HandlerFunc(serveFile))
	defer other.Close()
	// The first URL is relative: it resolves against the poll URL.
	api := &jsonAPI{states: []string{"succeeded"}, outputs: `["/files/own.png", "` + other.URL + `/files/other.png"]`}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.handler(t))
	mux.HandleFunc("GET /files/", serveFile)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := genericConfig(srv.URL)
	cfg.Fetch.SendAuth = true
	if err := cfg.ResolveEnv(func(string) (string, bool) { return "Bearer k", true }); err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(t, cfg, newVClock(), Options{})
	res, err := p.Generate(context.Background(), &provider.Request{Prompt: "p", N: 2}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if len(res.Images) != 2 {
		t.Fatalf("%d images", len(res.Images))
	}
	own := strings.TrimPrefix(srv.URL, "http://") + "/files/own.png"
	far := strings.TrimPrefix(other.URL, "http://") + "/files/other.png"
	if diff := cmp.Diff(map[string]string{own: "Bearer k", far: ""}, auth); diff != "" {
		t.Errorf("Authorization per result (-want +got):\n%s", diff)
	}
}
