package jobapitest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// submit posts the reference multipart form; a nil image leaves it out.
func submit(t *testing.T, srv *jobapitest.Server, img []byte, fields map[string]string) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if img != nil {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", `form-data; name="image"; filename="in.png"`)
		h.Set("Content-Type", "image/png")
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(img)
	}
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	_ = mw.Close()
	resp, err := http.Post(srv.SubmitURL(), mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(t, resp.Body)
}

func decode(t *testing.T, r io.Reader) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("decoding answer: %v", err)
	}
	return m
}

func poll(t *testing.T, srv *jobapitest.Server, id string) map[string]any {
	t.Helper()
	resp, err := http.Get(srv.URL + jobapitest.PollPath + "?job_id=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poll: HTTP %d", resp.StatusCode)
	}
	return decode(t, resp.Body)
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(0, 0)}
	srv := jobapitest.New(jobapitest.Options{JobDuration: 10 * time.Second, Progress: true, Now: c.Now})
	defer srv.Close()

	_, ans := submit(t, srv, pngOf(t, 40, 30), map[string]string{"prompt": "p", "negative_prompt": "", "model_type": "nano_banana", "aspect_ratio": "16:9"})
	if ans["code"] != float64(200) || ans["message"] != "success" {
		t.Fatalf("submit answer %v", ans)
	}
	id, _ := ans["result"].(map[string]any)["job_id"].(string)
	if !strings.HasPrefix(id, "job_") {
		t.Fatalf("job id %q", id)
	}
	_, ans2 := submit(t, srv, pngOf(t, 40, 30), map[string]string{"model_type": "standard"})
	id2 := ans2["result"].(map[string]any)["job_id"].(string)
	if id2 == id {
		t.Fatal("two submits got the same job id")
	}

	c.Advance(4 * time.Second)
	res := poll(t, srv, id)["result"].(map[string]any)
	if res["status"] != "processing" || res["progress"] != float64(40) || res["image_url"] != nil {
		t.Fatalf("running answer %v", res)
	}
	c.Advance(6 * time.Second)
	res = poll(t, srv, id)["result"].(map[string]any)
	urls, _ := res["image_url"].([]any)
	if res["status"] != "completed" || len(urls) != 1 {
		t.Fatalf("done answer %v", res)
	}
	resp, err := http.Get(urls[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cfg, err := png.DecodeConfig(resp.Body)
	if err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	if cfg.Width != 256 || cfg.Height != 144 {
		t.Errorf("16:9 result is %dx%d, want 256x144", cfg.Width, cfg.Height)
	}
	if srv.Submits() != 2 || srv.Polls(id) != 2 || srv.Polls(id2) != 0 || srv.Fetches() != 1 {
		t.Errorf("counters: %d submits, %d/%d polls, %d fetches", srv.Submits(), srv.Polls(id), srv.Polls(id2), srv.Fetches())
	}
	if got := poll(t, srv, "nope"); got["code"] != float64(404) {
		t.Errorf("unknown job: %v", got)
	}
}

func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{})
	defer srv.Close()
	cases := []struct {
		name   string
		img    []byte
		fields map[string]string
		msg    string
	}{
		{"missing image", nil, map[string]string{"model_type": "nano_banana"}, "image is required"},
		{"unknown model", pngOf(t, 8, 8), map[string]string{"model_type": "turbo"}, `invalid model_type "turbo"`},
		{"missing model", pngOf(t, 8, 8), map[string]string{}, `invalid model_type ""`},
		{"unknown ratio", pngOf(t, 8, 8), map[string]string{"model_type": "standard", "aspect_ratio": "5:1"}, `invalid aspect_ratio "5:1"`},
		{"not an image", []byte("hello"), map[string]string{"model_type": "standard"}, "image could not be read"},
	}
	for _, tc := range cases {
		status, ans := submit(t, srv, tc.img, tc.fields)
		if status != http.StatusOK || ans["code"] != float64(400) || ans["message"] != tc.msg {
			t.Errorf("%s: HTTP %d %v, want body code 400 %q", tc.name, status, ans, tc.msg)
		}
	}
	if len(srv.JobIDs()) != 0 {
		t.Errorf("refused submits created jobs %v", srv.JobIDs())
	}
	if n := len(srv.SubmitLog()); n != len(cases) {
		t.Errorf("%d submits recorded, want %d", n, len(cases))
	}
}

func TestFaultSwitches(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{})
	defer srv.Close()
	get := func(route jobapitest.Route) *http.Response {
		t.Helper()
		u := srv.URL + jobapitest.PollPath + "?job_id=x"
		if route == jobapitest.RouteResult {
			u = srv.URL + "/files/r1.png"
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	cases := []struct {
		fault       jobapitest.Fault
		status      int
		contentType string
		body        string
	}{
		{jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.BodyCode429, Times: 1}, 200, "application/json", `"code":429`},
		{jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP429HTML, Times: 1, RetryAfter: "9"}, 429, "text/html; charset=UTF-8", "error code: 1015"},
		{jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP500, Times: 1}, 500, "text/plain; charset=utf-8", "Internal Server Error"},
		{jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.MalformedJSON, Times: 1}, 200, "application/json", `"job_id": "job_trunc`},
		{jobapitest.Fault{Route: jobapitest.RouteResult, Kind: jobapitest.NotFound, Times: 1}, 404, "text/plain; charset=utf-8", "404"},
		{jobapitest.Fault{Route: jobapitest.RouteResult, Kind: jobapitest.Forbidden, Times: 1}, 403, "application/xml", "AccessDenied"},
	}
	for _, tc := range cases {
		srv.Inject(tc.fault)
		resp := get(tc.fault.Route)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.contentType || !strings.Contains(string(body), tc.body) {
			t.Errorf("fault %v: HTTP %d %q %q", tc.fault.Kind, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if tc.fault.RetryAfter != "" && resp.Header.Get("Retry-After") != tc.fault.RetryAfter {
			t.Errorf("fault %v: Retry-After %q", tc.fault.Kind, resp.Header.Get("Retry-After"))
		}
	}
	// Times: 1 faults are used up; the route answers normally again.
	resp := get(jobapitest.RoutePoll)
	ans := decode(t, resp.Body)
	resp.Body.Close()
	if ans["code"] != float64(404) {
		t.Errorf("after the faults: %v", ans)
	}
	if srv.TotalPolls() != 5 {
		t.Errorf("%d poll requests counted, want 5", srv.TotalPolls())
	}
}

func TestSlowResponseEndsWithClient(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RoutePoll, Kind: jobapitest.SlowResponse, Delay: time.Hour}}})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+jobapitest.PollPath+"?job_id=x", nil)
	start := time.Now()
	_, err := http.DefaultClient.Do(req)
	if err == nil {
		t.Fatal("a slow answer arrived before the client's timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestJobOutcomes(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(0, 0)}
	srv := jobapitest.New(jobapitest.Options{JobDuration: time.Second, Now: c.Now, FailMessage: "flagged"})
	defer srv.Close()
	_, a := submit(t, srv, pngOf(t, 8, 8), map[string]string{"model_type": "standard"})
	failing := a["result"].(map[string]any)["job_id"].(string)
	srv.SetFailMessage("")
	srv.SetNeverFinish(true)
	_, b := submit(t, srv, pngOf(t, 3000, 1500), map[string]string{"model_type": "standard"})
	never := b["result"].(map[string]any)["job_id"].(string)
	srv.SetNeverFinish(false)
	_, d := submit(t, srv, pngOf(t, 3000, 1500), map[string]string{"model_type": "standard"})
	big := d["result"].(map[string]any)["job_id"].(string)
	c.Advance(time.Hour)
	if got := poll(t, srv, failing); got["message"] != "flagged" || got["result"].(map[string]any)["status"] != "failed" {
		t.Errorf("failing job: %v", got)
	}
	if got := poll(t, srv, never); got["result"].(map[string]any)["status"] != "processing" {
		t.Errorf("never-finishing job: %v", got)
	}
	res := poll(t, srv, big)["result"].(map[string]any)
	resp, err := http.Get(res["image_url"].([]any)[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cfg, err := png.DecodeConfig(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// match_input_image keeps the input's ratio, capped at 2048.
	if cfg.Width != 2048 || cfg.Height != 1024 {
		t.Errorf("result %dx%d, want 2048x1024", cfg.Width, cfg.Height)
	}
}
