package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// editModel is served by the fake's Qwen-Image-Edit-like endpoint through
// a preset-less gradio backend.
const editModel = "qwen-edit"

// editScenario serves both the Z-Image-Turbo layout (a text-to-image
// model) and the ImageEdit layout from one fake app, and adds the edit
// backend with its inputs spelled out in the configuration. The ImageEdit
// endpoint answers with the input inverted, at the input's size.
func editScenario(extraTop string, env map[string]string) scenario {
	eps := append(gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 3, StepDelay: 5 * time.Millisecond}),
		gradiotest.ImageEdit(gradiotest.Behavior{Steps: 2})...)
	return scenario{
		endpoints: eps,
		extraBackends: `  - name: fake-edit
    type: gradio
    concurrency: 2
    gradio:
      space: $FAKE_URL
      api_name: /infer
      inputs:
        - {from: image}
        - {from: prompt}
        - {from: seed, default: 0}
        - {from: randomize_seed}
        - {value: 4}
        - {from: steps, default: 20}
`,
		extraModels: `  - id: ` + editModel + `
    backends: [fake-edit]
`,
		extraTop: extraTop,
		env:      env,
	}
}

// setupEdit starts easel with editScenario; the edit backend's space is
// the same fake as the main backend.
func setupEdit(t *testing.T, extraTop string, env map[string]string) *bundle {
	t.Helper()
	sc := editScenario(extraTop, env)
	return setup(t, sc)
}

// gradient is a w×h opaque PNG whose pixels differ, so an inverted result
// can be told from a copy.
func gradient(w, h int) ([]byte, *image.NRGBA) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 5), G: uint8(y * 7), B: 30, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes(), img
}

// checkInverted decodes a result PNG and checks it is src's negative.
func checkInverted(t *testing.T, data []byte, src *image.NRGBA) {
	t.Helper()
	cfg := decodePNG(t, data)
	b := src.Bounds()
	if cfg.Width != b.Dx() || cfg.Height != b.Dy() {
		t.Fatalf("result %dx%d, want the input's %dx%d", cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	out, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []image.Point{{0, 0}, {b.Dx() - 1, b.Dy() - 1}, {b.Dx() / 2, b.Dy() / 3}} {
		r, g, _, _ := out.At(p.X, p.Y).RGBA()
		s := src.NRGBAAt(p.X, p.Y)
		if uint8(r>>8) != 255-s.R || uint8(g>>8) != 255-s.G {
			t.Errorf("pixel %v = %d,%d; want the negative of %d,%d", p, r>>8, g>>8, s.R, s.G)
		}
	}
}

func TestEditsEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupEdit(t, "", nil)
	src, srcImg := gradient(40, 24)

	t.Run("one file", func(t *testing.T) {
		resp, err := b.client.Images.Edit(testCtx(t), openai.ImageEditParams{
			Image:  openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(src)},
			Prompt: "invert it",
			Model:  editModel,
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(resp.Data[0].B64JSON)
		if err != nil {
			t.Fatal(err)
		}
		checkInverted(t, raw, srcImg)
	})

	t.Run("with mask", func(t *testing.T) {
		_, err := b.client.Images.Edit(testCtx(t), openai.ImageEditParams{
			Image:  openai.ImageEditParamsImageUnion{OfFileArray: []io.Reader{bytes.NewReader(src)}},
			Mask:   bytes.NewReader(src),
			Prompt: "invert it",
			Model:  editModel,
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		stream := b.client.Images.EditStreaming(testCtx(t), openai.ImageEditParams{
			Image:  openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(src)},
			Prompt: "invert it",
			Model:  editModel,
		})
		var completed int
		for stream.Next() {
			ev := stream.Current()
			if ev.Type == "image_edit.completed" {
				completed++
				raw, err := base64.StdEncoding.DecodeString(ev.B64JSON)
				if err != nil {
					t.Fatal(err)
				}
				checkInverted(t, raw, srcImg)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if completed != 1 {
			t.Errorf("%d completed events", completed)
		}
	})

	t.Run("json form with a data URL", func(t *testing.T) {
		resp, data := b.postJSON(t, "/v1/images/edits", map[string]any{
			"model":  editModel,
			"prompt": "invert it",
			"images": []map[string]string{{"image_url": "data:image/png;base64," + base64.StdEncoding.EncodeToString(src)}},
		})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		var got struct {
			Data []struct {
				B64JSON string `json:"b64_json"`
			} `json:"data"`
		}
		if err := json.Unmarshal(data, &got); err != nil || len(got.Data) != 1 {
			t.Fatalf("response %s (%v)", data, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(got.Data[0].B64JSON)
		checkInverted(t, raw, srcImg)
	})

	t.Run("chat with a data URL", func(t *testing.T) {
		resp, data := b.postJSON(t, "/v1/chat/completions", chatWithImage(editModel, "data:image/png;base64,"+base64.StdEncoding.EncodeToString(src)))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		u := chatImageURL(t, data)
		status, _, body := b.fetchImage(t, u)
		if status != 200 {
			t.Fatalf("result status %d", status)
		}
		checkInverted(t, body, srcImg)
	})
}

func chatWithImage(model, u string) map[string]any {
	return map[string]any{
		"model": model,
		"messages": []any{
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": "invert it"},
				map[string]any{"type": "image_url", "image_url": map[string]any{"url": u}},
			}},
		},
	}
}

// chatImageURL reads the first image URL of a chat completion.
func chatImageURL(t *testing.T, data []byte) string {
	t.Helper()
	var c struct {
		Choices []struct {
			Message struct {
				Images []struct {
					ImageURL struct {
						URL string `json:"url"`
					} `json:"image_url"`
				} `json:"images"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &c); err != nil || len(c.Choices) == 0 || len(c.Choices[0].Message.Images) == 0 {
		t.Fatalf("no image in %s (%v)", data, err)
	}
	return c.Choices[0].Message.Images[0].ImageURL.URL
}

// bombPNG is a PNG header declaring w×h pixels with almost nothing behind
// it: decoding it would allocate w*h*4 bytes.
func bombPNG(w, h int) []byte {
	var buf bytes.Buffer
	_ = png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	put := func(at int, v uint32) {
		b[at], b[at+1], b[at+2], b[at+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	put(16, uint32(w))
	put(20, uint32(h))
	put(29, crc32IEEE(b[12:29]))
	return b
}

func crc32IEEE(p []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range p {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// postEdit sends a multipart edit built from name/bytes pairs.
func (b *bundle) postEdit(t *testing.T, model string, files []struct {
	name string
	data []byte
}) (*http.Response, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("model", model)
	_ = w.WriteField("prompt", "invert it")
	for _, f := range files {
		pw, err := w.CreateFormFile(f.name, "anonymous_file")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = pw.Write(f.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, b.base+"/v1/images/edits", &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := b.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

type errorEnvelope struct {
	Error struct {
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func checkEditError(t *testing.T, resp *http.Response, data []byte, status int, param, code string) errorEnvelope {
	t.Helper()
	var env errorEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("status %d, body not JSON: %s", resp.StatusCode, data)
	}
	gotParam, gotCode := "", ""
	if env.Error.Param != nil {
		gotParam = *env.Error.Param
	}
	if env.Error.Code != nil {
		gotCode = *env.Error.Code
	}
	if resp.StatusCode != status || gotParam != param || (code != "" && gotCode != code) {
		t.Errorf("got %d param %q code %q, want %d %q %q: %s", resp.StatusCode, gotParam, gotCode, status, param, code, data)
	}
	return env
}

func TestEditsEndToEndRefusals(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(internal.Close)
	b := setupEdit(t, "", nil)
	src, _ := gradient(16, 16)
	type file = struct {
		name string
		data []byte
	}
	joinsBefore := len(b.fake.Joins())

	t.Run("several files to a one-image backend", func(t *testing.T) {
		resp, data := b.postEdit(t, editModel, []file{{"image[]", src}, {"image[]", src}})
		checkEditError(t, resp, data, 400, "image", "")
	})
	t.Run("17 images", func(t *testing.T) {
		var fs []file
		for range 17 {
			fs = append(fs, file{"image[]", src})
		}
		resp, data := b.postEdit(t, editModel, fs)
		checkEditError(t, resp, data, 400, "image", "too_many_images")
	})
	t.Run("file over 20 MiB", func(t *testing.T) {
		big := append(append([]byte(nil), src...), make([]byte, 20<<20)...)
		resp, data := b.postEdit(t, editModel, []file{{"image", big}})
		env := checkEditError(t, resp, data, 413, "image", "")
		if !strings.Contains(env.Error.Message, "'image'") {
			t.Errorf("message does not name the part: %q", env.Error.Message)
		}
	})
	t.Run("svg", func(t *testing.T) {
		resp, data := b.postEdit(t, editModel, []file{{"image", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)}})
		checkEditError(t, resp, data, 400, "image", "invalid_image_format")
	})
	t.Run("png bomb", func(t *testing.T) {
		start := time.Now()
		resp, data := b.postEdit(t, editModel, []file{{"image", bombPNG(30000, 30000)}})
		checkEditError(t, resp, data, 400, "image", "image_too_large")
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusing the bomb took %s", d)
		}
	})
	t.Run("text-to-image model given images", func(t *testing.T) {
		resp, data := b.postEdit(t, modelID, []file{{"image", src}})
		env := checkEditError(t, resp, data, 400, "image", "")
		if !strings.Contains(env.Error.Message, "does not support image edits") {
			t.Errorf("message %q", env.Error.Message)
		}
		resp, data = b.postJSON(t, "/v1/chat/completions", chatWithImage(modelID, "data:image/png;base64,"+base64.StdEncoding.EncodeToString(src)))
		checkEditError(t, resp, data, 400, "messages", "")
	})
	t.Run("private image URL refused by default", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1/", internal.URL + "/a.png"} {
			resp, data := b.postJSON(t, "/v1/chat/completions", chatWithImage(editModel, u))
			env := checkEditError(t, resp, data, 400, "messages", "image_url_blocked")
			if strings.Contains(env.Error.Message, "127.0.0.1") {
				t.Errorf("message reveals the address: %q", env.Error.Message)
			}
		}
		if hits.Load() != 0 {
			t.Errorf("the internal server saw %d requests", hits.Load())
		}
	})
	if n := len(b.fake.Joins()) - joinsBefore; n != 0 {
		t.Errorf("refused requests reached the Space %d times", n)
	}
}

func TestChatImageURLOnLAN(t *testing.T) {
	t.Parallel()
	src, srcImg := gradient(20, 30)
	var hits atomic.Int64
	imgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(src)
	}))
	t.Cleanup(imgSrv.Close)
	u, err := url.Parse(imgSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The LAN setting from the environment, the image server's port from
	// the file: both are needed to reach it.
	b := setupEdit(t, fmt.Sprintf("fetch:\n  allowed_ports: [%s]\n", u.Port()),
		map[string]string{"EASEL_FETCH_ALLOW_PRIVATE": "true"})
	resp, data := b.postJSON(t, "/v1/chat/completions", chatWithImage(editModel, imgSrv.URL+"/cat.png"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	status, _, body := b.fetchImage(t, chatImageURL(t, data))
	if status != 200 {
		t.Fatalf("result status %d", status)
	}
	checkInverted(t, body, srcImg)
	if hits.Load() != 1 {
		t.Errorf("image server hits = %d, want 1", hits.Load())
	}
	// Link-local stays closed with the LAN setting on.
	resp, data = b.postJSON(t, "/v1/chat/completions", chatWithImage(editModel, "http://169.254.169.254:"+u.Port()+"/"))
	checkEditError(t, resp, data, 400, "messages", "image_url_blocked")
}
