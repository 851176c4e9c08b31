package gradiotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/image/webp"
)

func TestWebPOutput(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageTurbo(Behavior{Steps: 1, Format: "webp"})})
	join(t, s, "w", 1, []any{"p", 512, 576, 1, 3, false})
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=w", nil).all()
	fd := ms[len(ms)-2].m["output"].(map[string]any)["data"].([]any)[0].(map[string]any)
	code, h, b := do(t, http.MethodGet, fd["url"].(string), nil, nil)
	if code != 200 || h.Get("Content-Type") != "image/webp" || !strings.HasSuffix(fd["path"].(string), "/image.webp") {
		t.Fatalf("webp fetch: %d %q %v", code, h.Get("Content-Type"), fd["path"])
	}
	cfg, err := webp.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width != 576 || cfg.Height != 512 {
		t.Fatalf("webp %dx%d: %v", cfg.Width, cfg.Height, err)
	}
}

func TestSeedsGiveDifferentImages(t *testing.T) {
	t.Parallel()
	a, _ := encodeImage(Pattern(64, 48, 1), "png")
	b, _ := encodeImage(Pattern(64, 48, 2), "png")
	c, _ := encodeImage(Pattern(64, 48, 1), "png")
	if bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatal("pattern is not a deterministic function of the seed")
	}
}

func TestImageEditUpload(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ImageEdit(Behavior{Steps: 1})})
	var src bytes.Buffer
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	img.Pix[0], img.Pix[3] = 10, 255
	if err := png.Encode(&src, img); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("files", "blob")
	fw.Write(src.Bytes())
	mw.Close()
	_, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/upload", body.Bytes(), map[string]string{"Content-Type": mw.FormDataContentType()})
	var paths []string
	if err := json.Unmarshal(b, &paths); err != nil || len(paths) != 1 {
		t.Fatalf("upload %s", b)
	}
	input := map[string]any{"path": paths[0], "meta": map[string]any{"_type": "gradio.FileData"}}
	join(t, s, "e", 0, []any{input, "night", 5, false, 4, 2})
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=e", nil).all()
	done := ms[len(ms)-2]
	if done.m["success"] != true {
		t.Fatalf("edit failed: %s", done.raw)
	}
	out := done.m["output"].(map[string]any)["data"].([]any)
	if w, h := pngSize(t, out[0].(map[string]any)["url"].(string), nil); w != 40 || h != 30 {
		t.Fatalf("edit output %dx%d, want 40x30", w, h)
	}
	// A path the app never produced is refused, as Gradio refuses files
	// not uploaded by a user.
	join(t, s, "e2", 0, []any{map[string]any{"path": "/etc/passwd", "meta": map[string]any{"_type": "gradio.FileData"}}, "x", 5, false, 4, 2})
	ms = openStream(t, s.URL+"/gradio_api/queue/data?session_hash=e2", nil).all()
	if done := ms[len(ms)-2]; done.m["success"] != false {
		t.Fatalf("foreign path accepted: %s", done.raw)
	}
}

func TestHookAndProtocolKnob(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	s := start(t, Options{Protocol: "none", Hook: func(w http.ResponseWriter, r *http.Request) bool {
		if hits.Add(1) > 1 {
			return false
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, "<html>Too Many Requests</html>")
		return true
	}})
	if code, _, _ := do(t, http.MethodGet, s.URL+"/config", nil, nil); code != 429 {
		t.Fatalf("hooked request: %d", code)
	}
	code, _, b := do(t, http.MethodGet, s.URL+"/config", nil, nil)
	if code != 200 || strings.Contains(string(b), `"protocol"`) {
		t.Fatalf("protocol none: %d %s", code, b)
	}
	if n := s.Requests("/config"); n != 2 {
		t.Errorf("Requests(/config) = %d", n)
	}
}

func TestOutputHelpersEncodeInOrder(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: []Endpoint{{
		APIName: "mixed",
		Outputs: []Component{{Type: "image"}, {Type: "image"}, {Type: "gallery"}},
		Run: func(ctx context.Context, c *Call) ([]any, error) {
			caption := "hi"
			return []any{
				ExternalFile("https://cdn.example/x.png", "x.png"),
				DataURLFile("image/svg+xml", []byte("<svg/>")),
				[]any{GalleryItem(c.StoreFile("a.jpg", []byte("jpeg")), &caption)},
			}, nil
		},
	}}})
	join(t, s, "m", 0, []any{})
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=m", nil).all()
	raw := ms[len(ms)-2].raw
	for _, want := range []string{
		`{"path":"https://cdn.example/x.png","url":"https://cdn.example/x.png","size":null,"orig_name":"x.png","mime_type":null,"is_stream":false,"meta":{"_type":"gradio.FileData"}}`,
		`{"path":null,"url":"data:image/svg+xml;base64,PHN2Zy8+","size":null,"orig_name":null,`,
		`[{"image":{"path":"/tmp/gradio/`,
		`"caption":"hi"}]`,
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("output lacks %s:\n%s", want, raw)
		}
	}
}

func TestSweepForgetsUnreadSessions(t *testing.T) {
	t.Parallel()
	ran := make(chan struct{})
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("echo", func(ctx context.Context, c *Call) ([]any, error) {
		defer close(ran)
		return []any{"ok"}, nil
	})}})
	join(t, s, "never-read", 0, []any{"x"})
	<-ran
	for i := 0; i < 1000 && s.Running() != 0; i++ {
		time.Sleep(time.Millisecond) // bounded wait for finish to run
	}
	s.sweep(time.Now())
	if st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=never-read", nil); len(st.all()) != 4 {
		t.Fatal("fresh session swept")
	}
	join(t, s, "never-read-2", 0, []any{"x"})
	for i := 0; i < 1000 && (s.Running() != 0 || s.QueueSize() != 0); i++ {
		time.Sleep(time.Millisecond)
	}
	s.sweep(time.Now().Add(sessionTTL + time.Second))
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=never-read-2", nil).all()
	if len(ms) != 1 || ms[0].m["session_not_found"] != true {
		t.Fatalf("stale session kept: %v", msgs(ms))
	}
}

func FuzzJoinBody(f *testing.F) {
	f.Add([]byte(`{"data":["a",1,null],"fn_index":0,"session_hash":"s"}`))
	f.Add([]byte(`{"data":3}`))
	f.Add([]byte(`[]`))
	s := New(Options{Endpoints: []Endpoint{textEndpoint("echo", func(ctx context.Context, c *Call) ([]any, error) {
		v, err := c.String(0)
		return []any{v}, err
	})}, NoRecord: true})
	f.Cleanup(s.Close)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/gradio_api/queue/join", bytes.NewReader(body))
		s.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 422, 500, 503:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

func TestGeneratingAndZeroGPUFrames(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("gen", func(ctx context.Context, c *Call) ([]any, error) {
		c.Log("info", "ZeroGPU queue", "Waiting for a GPU to become available")
		c.ProgressFloat(0.4, "ZeroGPU init")
		c.Generating([]any{"a"})
		c.Generating([]any{"ab"})
		c.Generating([]any{"ab"})
		return []any{"abc"}, nil
	})}})
	id := join(t, s, "g", 0, []any{"x"})
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=g", nil).all()
	want := []string{
		`{"msg":"log","event_id":"%s","log":"Waiting for a GPU to become available","level":"info","duration":10,"visible":true,"title":"ZeroGPU queue"}`,
		`{"msg":"progress","event_id":"%s","progress_data":[{"index":null,"length":null,"unit":"steps","progress":0.4,"desc":"ZeroGPU init"}]}`,
		`{"msg":"process_generating","event_id":"%s","output":{"data":["a"],"is_generating":true,"duration":null,"average_duration":null,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`,
		`{"msg":"process_generating","event_id":"%s","output":{"data":[[["replace",[],"ab"]]],"is_generating":true,"duration":null,"average_duration":null,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`,
		`{"msg":"process_generating","event_id":"%s","output":{"data":[[]],"is_generating":true,"duration":null,"average_duration":null,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`,
	}
	if len(ms) != 9 {
		t.Fatalf("transcript %v", msgs(ms))
	}
	for i, w := range want {
		if got := ms[2+i].raw; got != fmt.Sprintf(w, id) {
			t.Errorf("frame %d\n got %s\nwant %s", 2+i, got, fmt.Sprintf(w, id))
		}
	}
	if data := ms[7].m["output"].(map[string]any)["data"].([]any); data[0] != "abc" {
		t.Errorf("final data %v", data)
	}
}
