package openaiapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fuzzRequest drives the full handler chain in process and checks what
// must hold for any body: no panic, no 5xx, and every error in the OpenAI
// envelope with all four keys.
func fuzzRequest(t *testing.T, h http.Handler, path string, body []byte) {
	fuzzRequestType(t, h, path, "", body)
}

// fuzzRequestType is fuzzRequest with a Content-Type header (none when
// empty).
func fuzzRequestType(t *testing.T, h http.Handler, path, contentType string, body []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
	}
	ct := rec.Header().Get("Content-Type")
	if rec.Code == 200 {
		if ct != "application/json" && ct != "text/event-stream" {
			t.Fatalf("200 with content type %q", ct)
		}
		if ct == "text/event-stream" && strings.Contains(rec.Body.String(), "event: error") {
			t.Fatalf("stream failed for %q: %s", body, rec.Body.String())
		}
		return
	}
	if ct != "application/json" {
		t.Fatalf("status %d with content type %q", rec.Code, ct)
	}
	var env struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("error body is not JSON: %s", rec.Body.String())
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := env.Error[k]; !ok {
			t.Fatalf("error lacks %q: %s", k, rec.Body.String())
		}
	}
}

func FuzzGenerations(f *testing.F) {
	for _, seed := range []string{
		`{"model": "z-image-turbo", "prompt": "a lighthouse at dusk, oil painting", "n": 2, "size": "24x36", "response_format": "b64_json"}`,
		`{"prompt":"otter","n":1,"model":"dall-e-3","size":"16x16"}`,
		`{"prompt":"otter","partial_images":1,"stream":true}`,
		`{"model":"z-image-turbo","prompt":"otter","n":1,"size":"auto","quality":"low","output_format":"png"}`,
		`{"model":"z-image-turbo","prompt":"x","negative_prompt":"y","image_size":"32x32","batch_size":2,"seed":5,"num_inference_steps":4}`,
		`{"prompt":"x","response_format":"url","output_format":"jpeg"}`,
		`{"prompt":"\ud83d\ude00","n":1e309}`,
		`{"prompt":"x","Prompt":"y"}`,
		`[1,2]`, `{"prompt":"x"} trailing`, `null`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	b := setup(f, setupOpts{plain: true})
	h := b.srv.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzRequest(t, h, "/v1/images/generations", body)
	})
}

func FuzzChat(f *testing.F) {
	for _, seed := range []string{
		`{"model":"z-image-turbo","messages":[{"role":"user","content":"a cat"}]}`,
		`{"model":"z-image-turbo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"auto"}}]}]}`,
		`{"messages":[{"role":"developer","content":"x"},{"role":"user","content":null}],"temperature":0.5,"top_p":1,"max_tokens":10}`,
		`{"messages":"hi"}`, `{"messages":[]}`, `{"messages":[{"role":"user","content":"\u0000"}]}`,
	} {
		f.Add([]byte(seed))
	}
	b := setup(f, setupOpts{plain: true})
	h := b.srv.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzRequest(t, h, "/v1/chat/completions", body)
	})
}

// fuzzBoundary is the multipart boundary of every FuzzEdits input.
const fuzzBoundary = "easelfuzzboundary"

func FuzzEdits(f *testing.F) {
	img := drawPNG(6, 4)
	seeds := [][]formPart{
		{{name: "prompt", value: "x"}, {name: "image", data: img}},
		{{name: "model", value: "z-image-turbo"}, {name: "prompt", value: "sofa"}, {name: "n", value: "2"}, {name: "size", value: "16x16"},
			{name: "image[]", data: img}, {name: "image[]", data: img}, {name: "mask", data: img}},
		{{name: "prompt", value: "x"}, {name: "stream", value: "true"}, {name: "partial_images", value: "1"}, {name: "image[0]", data: img}},
		{{name: "prompt", value: "x"}, {name: "image", data: bombPNG(30000, 30000)}},
		{{name: "prompt", value: "x"}, {name: "image", data: svgBytes}},
		{{name: "prompt", value: "x"}, {name: "seed", value: "-1"}, {name: "steps", value: "4"}, {name: "negative_prompt", value: "y"},
			{name: "aspect_ratio", value: "16:9"}, {name: "background", value: "transparent"}, {name: "image", data: img}},
		{{name: "Prompt", value: "x"}, {name: "image", data: img}},
	}
	for _, parts := range seeds {
		f.Add(fuzzMultipart(f, parts))
	}
	f.Add([]byte("--" + fuzzBoundary + "--\r\n"))
	f.Add([]byte("garbage"))
	b := setup(f, setupOpts{plain: true})
	h := b.srv.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzRequestType(t, h, "/v1/images/edits", "multipart/form-data; boundary="+fuzzBoundary, body)
	})
}

// fuzzMultipart builds a seed body with the fixed fuzz boundary.
func fuzzMultipart(t testing.TB, parts []formPart) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(fuzzBoundary); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if p.data == nil {
			if err := w.WriteField(p.name, p.value); err != nil {
				t.Fatal(err)
			}
			continue
		}
		pw, err := w.CreateFormFile(p.name, "anonymous_file")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
