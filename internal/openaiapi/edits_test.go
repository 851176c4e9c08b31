package openaiapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/openaiapi"
	"github.com/easelgw/easel/internal/provider"
)

// inputSummary is what a test compares about an input image.
type inputSummary struct {
	MIME          string
	Width, Height int
}

func summarize(in []provider.InputImage) []inputSummary {
	var out []inputSummary
	for _, i := range in {
		out = append(out, inputSummary{i.MIME, i.Width, i.Height})
	}
	return out
}

// lastCall returns the inputs, mask and kind of the fake's latest call.
func (f *fakeProvider) lastCall(t *testing.T) ([]provider.InputImage, *provider.InputImage, provider.Kind) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.inputs) == 0 {
		t.Fatal("the provider was not called")
	}
	n := len(f.inputs) - 1
	return f.inputs[n], f.masks[n], f.kinds[n]
}

func TestEditsSDKOneFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	src := drawPNG(40, 24)
	resp, err := b.client.Images.Edit(context.Background(), openai.ImageEditParams{
		// A plain reader: the SDK sends "anonymous_file" as
		// application/octet-stream, so the type must come from the bytes.
		Image:  openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(src)},
		Prompt: "make it blue",
		Model:  "z-image-turbo",
		Size:   "48x32",
		// Accepted and ignored.
		Background:    openai.ImageEditParamsBackgroundTransparent,
		InputFidelity: openai.ImageEditParamsInputFidelityHigh,
		Quality:       openai.ImageEditParamsQualityHigh,
		User:          openai.String("u-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 {
		t.Fatalf("%d images", len(resp.Data))
	}
	if cfg := decodePNG(t, resp.Data[0].B64JSON); cfg.Width != 48 || cfg.Height != 32 {
		t.Errorf("result %dx%d, want 48x32", cfg.Width, cfg.Height)
	}
	in, mask, kind := b.fake.lastCall(t)
	if kind != provider.KindEdit || mask != nil {
		t.Errorf("kind %q mask %v", kind, mask)
	}
	if diff := cmp.Diff([]inputSummary{{"image/png", 40, 24}}, summarize(in)); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	if !bytes.Equal(in[0].Data, src) {
		t.Error("the upload changed on its way to the provider")
	}
}

func TestEditsSDKSeveralFilesAndMask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var files []io.Reader
	var want []inputSummary
	for i := range 3 {
		files = append(files, bytes.NewReader(drawPNG(10+i, 20)))
		want = append(want, inputSummary{"image/png", 10 + i, 20})
	}
	mask := drawPNG(10, 20)
	_, err := b.client.Images.Edit(context.Background(), openai.ImageEditParams{
		Image:  openai.ImageEditParamsImageUnion{OfFileArray: files},
		Mask:   bytes.NewReader(mask),
		Prompt: "put them on a sofa",
	})
	if err != nil {
		t.Fatal(err)
	}
	in, gotMask, _ := b.fake.lastCall(t)
	if diff := cmp.Diff(want, summarize(in)); diff != "" {
		t.Errorf("inputs in arrival order (-want +got):\n%s", diff)
	}
	if gotMask == nil || !bytes.Equal(gotMask.Data, mask) || gotMask.Name != "mask.png" {
		t.Errorf("mask = %+v", gotMask)
	}
}

func TestEditsSDKStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.client.Images.EditStreaming(context.Background(), openai.ImageEditParams{
		Image:         openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(drawPNG(8, 8))},
		Prompt:        "preview it",
		PartialImages: openai.Int(2),
		N:             openai.Int(2),
	})
	types := map[string]int{}
	for stream.Next() {
		types[stream.Current().Type]++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if types["image_edit.completed"] != 2 || types["image_edit.partial_image"] != 2 {
		t.Errorf("event types %v", types)
	}
	for typ := range types {
		if !strings.HasPrefix(typ, "image_edit.") {
			t.Errorf("event type %q in an edit stream", typ)
		}
	}
}

// formPart is one part of a hand-built multipart body.
type formPart struct {
	name, filename, value string
	data                  []byte
}

// multipartBody builds a body the way clients do; file parts carry
// application/octet-stream like the SDKs' anonymous files.
func multipartBody(t testing.TB, parts []formPart) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.data == nil {
			if err := w.WriteField(p.name, p.value); err != nil {
				t.Fatal(err)
			}
			continue
		}
		h := textproto.MIMEHeader{}
		fn := p.filename
		if fn == "" {
			fn = "anonymous_file"
		}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.name, fn))
		h.Set("Content-Type", "application/octet-stream")
		pw, err := w.CreatePart(h)
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
	return buf.Bytes(), w.FormDataContentType()
}

func (b *bundle) postForm(t *testing.T, parts []formPart) (*http.Response, []byte) {
	t.Helper()
	body, ct := multipartBody(t, parts)
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/images/edits", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", ct)
	return do(t, req)
}

func TestEditsPartNames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	img := func(w int) []byte { return drawPNG(w, 4) }
	cases := []struct {
		name  string
		parts []formPart
	}{
		{"image repeated", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img(5)}, {name: "image", data: img(6)}}},
		{"image[]", []formPart{{name: "image[]", data: img(5)}, {name: "prompt", value: "x"}, {name: "image[]", data: img(6)}}},
		{"image[N]", []formPart{{name: "image[0]", data: img(5)}, {name: "image[1]", data: img(6)}, {name: "prompt", value: "x"}}},
		{"mixed", []formPart{{name: "image", data: img(5)}, {name: "image[]", data: img(6)}, {name: "prompt", value: "x"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := b.postForm(t, c.parts)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			in, _, _ := b.fake.lastCall(t)
			want := []inputSummary{{"image/png", 5, 4}, {"image/png", 6, 4}}
			if diff := cmp.Diff(want, summarize(in)); diff != "" {
				t.Errorf("inputs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEditsFields(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.postForm(t, []formPart{
		{name: "image", data: drawPNG(8, 8)},
		{name: "prompt", value: "seeded"},
		{name: "n", value: "2"},
		{name: "size", value: "32x16"},
		{name: "response_format", value: "url"},
		{name: "output_format", value: "jpeg"},
		{name: "seed", value: "42"},
		{name: "moderation", value: "low"},
		{name: "output_compression", value: "50"},
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Data []struct {
			URL string `json:"url"`
		} `json:"data"`
		OutputFormat string `json:"output_format"`
		Size         string `json:"size"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != 2 || got.Data[0].URL == "" || got.OutputFormat != "jpeg" || got.Size != "32x16" {
		t.Errorf("response %s", body)
	}
}

// svgBytes is an SVG image: text, which easel never accepts as an input.
var svgBytes = []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`)

func TestEditsRequestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{textOnly: true})
	img := drawPNG(8, 8)
	seventeen := []formPart{{name: "prompt", value: "x"}}
	for range 17 {
		seventeen = append(seventeen, formPart{name: "image[]", data: img})
	}
	manyParts := []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}}
	for i := range 70 {
		manyParts = append(manyParts, formPart{name: "extra" + strconv.Itoa(i), value: "v"})
	}
	cases := []struct {
		name   string
		parts  []formPart
		status int
		param  string
		code   string
	}{
		{"no image", []formPart{{name: "prompt", value: "x"}}, 400, "image", "missing_required_parameter"},
		{"no prompt", []formPart{{name: "image", data: img}}, 400, "prompt", "missing_required_parameter"},
		{"17 images", seventeen, 400, "image", "too_many_images"},
		{"too many parts", manyParts, 400, "", "too_many_parts"},
		{"svg", []formPart{{name: "prompt", value: "x"}, {name: "image", filename: "a.png", data: svgBytes}}, 400, "image", "invalid_image_format"},
		{"text", []formPart{{name: "prompt", value: "x"}, {name: "image", data: []byte("hello, world")}}, 400, "image", "invalid_image_format"},
		{"heic", []formPart{{name: "prompt", value: "x"}, {name: "image", data: append([]byte("\x00\x00\x00\x18ftypheic"), make([]byte, 32)...)}}, 400, "image", "invalid_image_format"},
		{"bomb side", []formPart{{name: "prompt", value: "x"}, {name: "image", data: bombPNG(30000, 30000)}}, 400, "image", "image_too_large"},
		{"bomb pixels", []formPart{{name: "prompt", value: "x"}, {name: "image", data: bombPNG(7000, 7000)}}, 400, "image", "image_too_large"},
		{"svg mask", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "mask", data: svgBytes}}, 400, "mask", "invalid_image_format"},
		{"two masks", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "mask", data: img}, {name: "mask", data: img}}, 400, "mask", "duplicate_key"},
		{"markup", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "markup", data: img}}, 400, "markup", "unsupported_value"},
		{"bad n", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "n", value: "two"}}, 400, "n", "invalid_type"},
		{"n too big", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "n", value: "11"}}, 400, "n", "invalid_value"},
		{"bad stream", []formPart{{name: "prompt", value: "x"}, {name: "image", data: img}, {name: "stream", value: "yes"}}, 400, "stream", "invalid_type"},
		{"duplicate prompt", []formPart{{name: "prompt", value: "x"}, {name: "prompt", value: "y"}, {name: "image", data: img}}, 400, "prompt", "duplicate_key"},
		{"case variant", []formPart{{name: "Prompt", value: "x"}, {name: "image", data: img}}, 400, "prompt", "invalid_value"},
		{"nul in prompt", []formPart{{name: "prompt", value: "a\x00b"}, {name: "image", data: img}}, 400, "prompt", "invalid_value"},
		{"invalid utf-8", []formPart{{name: "prompt", value: "a\xffb"}, {name: "image", data: img}}, 400, "prompt", "invalid_encoding"},
		{"long field", []formPart{{name: "prompt", value: strings.Repeat("a", 129<<10)}, {name: "image", data: img}}, 400, "prompt", "string_above_max_length"},
		{"text-only model", []formPart{{name: "prompt", value: "x"}, {name: "model", value: textOnlyModel}, {name: "image", data: img}}, 400, "image", "unsupported_value"},
		{"unknown model", []formPart{{name: "prompt", value: "x"}, {name: "model", value: "nope"}, {name: "image", data: img}}, 404, "model", "model_not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, body := b.postForm(t, c.parts)
			checkError(t, resp, body, c.status, c.param)
			if code := errorCode(t, body); code != c.code {
				t.Errorf("code %q, want %q: %s", code, c.code, body)
			}
			if strings.HasPrefix(c.name, "bomb") && time.Since(start) > 2*time.Second {
				t.Errorf("the bomb took %s to refuse", time.Since(start))
			}
		})
	}
	t.Run("text-only message", func(t *testing.T) {
		resp, body := b.postForm(t, []formPart{{name: "prompt", value: "x"}, {name: "model", value: textOnlyModel}, {name: "image", data: img}})
		if resp.StatusCode != 400 || !strings.Contains(string(body), "does not support image edits") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
	if n := b.fake.Calls(); n != 0 {
		t.Errorf("bad requests reached the provider %d times", n)
	}
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var env struct {
		Error struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error.Code == nil {
		return ""
	}
	return *env.Error.Code
}

func TestEditsSizeLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A file one byte over the default 20 MiB cap: 413 naming the part.
	big := append(drawPNG(4, 4), make([]byte, 20<<20)...)
	resp, body := b.postForm(t, []formPart{{name: "prompt", value: "x"}, {name: "image[]", data: big}})
	checkError(t, resp, body, 413, "image")
	if !strings.Contains(string(body), "'image[]'") {
		t.Errorf("the message does not name the part: %s", body)
	}
	// A body over the 50 MiB total: refused from its Content-Length.
	huge := make([]byte, 51<<20)
	resp, body = b.postForm(t, []formPart{{name: "prompt", value: "x"}, {name: "image", data: huge}})
	checkError(t, resp, body, 413, "")
	if n := b.fake.Calls(); n != 0 {
		t.Errorf("oversized requests reached the provider %d times", n)
	}
}

func TestEditsTotalLimitWithoutLength(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxImageBytes: 1 << 20, maxUploadBytes: 2 << 20})
	parts := []formPart{{name: "prompt", value: "x"}}
	for range 3 {
		parts = append(parts, formPart{name: "image[]", data: append(drawPNG(4, 4), make([]byte, 900<<10)...)})
	}
	body, ct := multipartBody(t, parts)
	// A reader without a length makes the client stream it chunked, so
	// only the running cap can stop it.
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/images/edits", io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", ct)
	resp, data := do(t, req)
	checkError(t, resp, data, 413, "")
}

func TestEditsJSONForm(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{textOnly: true})
	dataURL := "data:image/png;base64," + base64.StdEncoding.EncodeToString(drawPNG(12, 10))
	body := `{"prompt":"watercolor","size":"32x32","images":[{"image_url":"` + dataURL + `"},{"image_url":"` + dataURL + `"}],"mask":{"image_url":"` + dataURL + `"},"input_fidelity":"high","quality":"low"}`
	resp, data := b.post(t, "/v1/images/edits", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	in, mask, kind := b.fake.lastCall(t)
	if diff := cmp.Diff([]inputSummary{{"image/png", 12, 10}, {"image/png", 12, 10}}, summarize(in)); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	if mask == nil || kind != provider.KindEdit {
		t.Errorf("mask %v kind %q", mask, kind)
	}

	cases := []struct {
		name, body, param string
		status            int
	}{
		{"file_id", `{"prompt":"x","images":[{"file_id":"file-123"}]}`, "images[0].file_id", 400},
		{"no images", `{"prompt":"x"}`, "images", 400},
		{"empty images", `{"prompt":"x","images":[]}`, "images", 400},
		{"images not array", `{"prompt":"x","images":{"image_url":"` + dataURL + `"}}`, "images", 400},
		{"17 images", `{"prompt":"x","images":[` + strings.Repeat(`{"image_url":"`+dataURL+`"},`, 16) + `{"image_url":"` + dataURL + `"}]}`, "images", 400},
		{"svg data url", `{"prompt":"x","images":[{"image_url":"data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="}]}`, "images[0]", 400},
		{"png label, svg bytes", `{"prompt":"x","images":[{"image_url":"data:image/png;base64,` + base64.StdEncoding.EncodeToString(svgBytes) + `"}]}`, "images[0]", 400},
		{"bomb", `{"prompt":"x","images":[{"image_url":"data:image/png;base64,` + base64.StdEncoding.EncodeToString(bombPNG(30000, 30000)) + `"}]}`, "images[0]", 400},
		{"ftp url", `{"prompt":"x","images":[{"image_url":"ftp://example.org/a.png"}]}`, "images[0]", 400},
		{"text-only model", `{"prompt":"x","model":"` + textOnlyModel + `","images":[{"image_url":"` + dataURL + `"}]}`, "images", 400},
		{"wrong content type", "prompt=x", "", 415},
	}
	calls := b.fake.Calls()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var resp *http.Response
			var data []byte
			if c.status == 415 {
				req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/images/edits", strings.NewReader(c.body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, data = do(t, req)
			} else {
				resp, data = b.post(t, "/v1/images/edits", c.body)
			}
			checkError(t, resp, data, c.status, c.param)
		})
	}
	if n := b.fake.Calls(); n != calls {
		t.Errorf("bad requests reached the provider %d times", n-calls)
	}
}

// imageServer serves one PNG at /img.png, 404 elsewhere, and a body larger
// than any test cap at /big; it counts requests.
func imageServer(t *testing.T, png []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/img.png":
			// A misleading type: the bytes decide.
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(png)
		case "/big":
			_, _ = w.Write(append(append([]byte(nil), png...), make([]byte, 2<<20)...))
		case "/svg":
			w.Header().Set("Content-Type", "image/svg+xml")
			_, _ = w.Write(svgBytes)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// lanFetcher is the guarded client with the LAN setting on, allowed to
// reach srv's port.
func lanFetcher(t *testing.T, srv *httptest.Server) openaiapi.Fetcher {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return netguard.New(netguard.Options{AllowPrivate: true, AllowedPorts: []int{port}, MaxBytes: 1 << 20, Timeout: 5 * time.Second})
}

func TestChatImageURLFetched(t *testing.T) {
	t.Parallel()
	png := drawPNG(30, 20)
	srv, hits := imageServer(t, png)
	b := setup(t, setupOpts{fetcher: lanFetcher(t, srv), textOnly: true})

	resp, data := b.post(t, "/v1/chat/completions", imageBody(srv.URL+"/img.png"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	in, _, kind := b.fake.lastCall(t)
	if kind != provider.KindEdit || len(in) != 1 || !bytes.Equal(in[0].Data, png) || in[0].MIME != "image/png" {
		t.Errorf("kind %q inputs %v", kind, summarize(in))
	}
	if hits.Load() != 1 {
		t.Errorf("image server hits = %d, want 1", hits.Load())
	}

	// The same URL through the edits JSON form.
	resp, data = b.post(t, "/v1/images/edits", `{"prompt":"x","images":[{"image_url":"`+srv.URL+`/img.png"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("edits: status %d: %s", resp.StatusCode, data)
	}

	calls := b.fake.Calls()
	before := hits.Load()
	cases := []struct {
		name, url, body, code string
		status                int
	}{
		{"404", srv.URL + "/missing.png", "", "image_url_fetch_failed", 400},
		{"too big", srv.URL + "/big", "", "payload_too_large", 413},
		{"svg", srv.URL + "/svg", "", "invalid_image_format", 400},
		{"credentials", strings.Replace(srv.URL, "http://", "http://u:p@", 1) + "/img.png", "", "invalid_value", 400},
		{"port not allowed", "http://127.0.0.1:1/img.png", "", "image_url_blocked", 400},
		{"link-local", "http://169.254.169.254/latest/meta-data/", "", "image_url_blocked", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, data := b.post(t, "/v1/chat/completions", imageBody(c.url))
			checkError(t, resp, data, c.status, "messages")
			if code := errorCode(t, data); code != c.code {
				t.Errorf("code %q, want %q: %s", code, c.code, data)
			}
			if c.name == "404" && !strings.Contains(string(data), "HTTP 404") {
				t.Errorf("message: %s", data)
			}
		})
	}
	if got := hits.Load() - before; got != 3 {
		t.Errorf("image server hits = %d, want 3 (404, big, svg)", got)
	}
	// A text-only model is refused before any download.
	before = hits.Load()
	body := strings.Replace(imageBody(srv.URL+"/img.png"), `{"messages"`, `{"model":"`+textOnlyModel+`","messages"`, 1)
	resp, data = b.post(t, "/v1/chat/completions", body)
	checkError(t, resp, data, 400, "messages")
	if hits.Load() != before {
		t.Error("the image was fetched for a model that cannot use it")
	}
	if n := b.fake.Calls(); n != calls {
		t.Errorf("refused requests reached the provider %d times", n-calls)
	}
}

func TestImageURLRefusedByDefault(t *testing.T) {
	t.Parallel()
	srv, hits := imageServer(t, drawPNG(8, 8))
	// The API's own default fetcher: no private networks, ports 80/443.
	b := setup(t, setupOpts{defaultFetcher: true})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"http://127.0.0.1/", srv.URL + "/img.png", "http://[::1]:" + u.Port() + "/img.png", "http://localhost:" + u.Port() + "/img.png"} {
		t.Run(target, func(t *testing.T) {
			resp, data := b.post(t, "/v1/chat/completions", imageBody(target))
			checkError(t, resp, data, 400, "messages")
			if code := errorCode(t, data); code != "image_url_blocked" {
				t.Errorf("code %q: %s", code, data)
			}
			if strings.Contains(string(data), "127.0.0.1") || strings.Contains(string(data), "::1") {
				t.Errorf("the error reveals an address: %s", data)
			}
			resp, data = b.post(t, "/v1/images/edits", `{"prompt":"x","images":[{"image_url":"`+target+`"}]}`)
			checkError(t, resp, data, 400, "images[0]")
		})
	}
	if hits.Load() != 0 {
		t.Errorf("the internal server saw %d requests", hits.Load())
	}
	if n := b.fake.Calls(); n != 0 {
		t.Errorf("refused requests reached the provider %d times", n)
	}
}

// stubFetcher answers every fetch with err, to check the error mapping of
// failures a loopback server cannot produce on demand.
type stubFetcher struct{ err error }

func (s stubFetcher) Get(ctx context.Context, u string) (*netguard.Response, error) {
	return nil, s.err
}

func TestFetchErrorMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"timeout", fmt.Errorf("wrapped: %w", netguard.ErrTimeout), 400, "image_url_timeout"},
		{"redirects", netguard.ErrTooManyRedirects, 400, "image_url_fetch_failed"},
		{"network", errors.New("connection refused"), 400, "image_url_fetch_failed"},
		{"blocked", &netguard.BlockedError{Reason: "private", Addr: "10.1.2.3:80"}, 400, "image_url_blocked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{fetcher: stubFetcher{c.err}})
			resp, data := b.post(t, "/v1/chat/completions", imageBody("https://images.example/a.png"))
			checkError(t, resp, data, c.status, "messages")
			if code := errorCode(t, data); code != c.code {
				t.Errorf("code %q, want %q: %s", code, c.code, data)
			}
			if strings.Contains(string(data), "10.1.2.3") || strings.Contains(string(data), "refused") {
				t.Errorf("the error leaks the cause: %s", data)
			}
		})
	}
}
