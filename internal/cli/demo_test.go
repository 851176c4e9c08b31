package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"
)

// TestServeDemoEdit checks that --demo serves an image-to-image model whose
// answer is computed from the uploaded image (its negative, at its size),
// so the studio's upload flow has a faithful backend without the network.
func TestServeDemoEdit(t *testing.T) {
	t.Parallel()
	base, logs, _ := startServe(t, nil, "--demo", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())

	var model struct {
		ID    string `json:"id"`
		Easel struct {
			Demo         bool `json:"demo"`
			Capabilities struct {
				TextToImage  bool `json:"text_to_image"`
				ImageToImage bool `json:"image_to_image"`
				Steps        bool `json:"steps"`
				DefaultSteps int  `json:"default_steps"`
			} `json:"capabilities"`
		} `json:"easel"`
	}
	if code := getJSON(t, http.MethodGet, base+"/v1/models/demo-image-edit", "", nil, &model); code != http.StatusOK {
		t.Fatalf("GET /v1/models/demo-image-edit = %d", code)
	}
	c := model.Easel.Capabilities
	if !model.Easel.Demo || !c.ImageToImage || c.TextToImage || !c.Steps || c.DefaultSteps != 8 {
		t.Errorf("model = %+v", model)
	}

	src := image.NewNRGBA(image.Rect(0, 0, 24, 16))
	for y := range 16 {
		for x := range 24 {
			src.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 10), G: uint8(y * 15), B: 40, A: 255})
		}
	}
	var in bytes.Buffer
	if err := png.Encode(&in, src); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range map[string]string{"model": "demo-image-edit", "prompt": "invert it"} {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("image", "in.png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(in.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/images/edits", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("edit = %d %s\n%s", resp.StatusCode, data, logs.String())
	}
	var out struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &out); err != nil || len(out.Data) != 1 {
		t.Fatalf("edit answer %v: %s", err, data)
	}
	raw, err := base64.StdEncoding.DecodeString(out.Data[0].B64JSON)
	if err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	if b := got.Bounds(); b.Dx() != 24 || b.Dy() != 16 {
		t.Fatalf("result is %dx%d, want the input's 24x16", b.Dx(), b.Dy())
	}
	for _, p := range []image.Point{{0, 0}, {23, 15}, {7, 9}} {
		r, g, _, _ := got.At(p.X, p.Y).RGBA()
		s := src.NRGBAAt(p.X, p.Y)
		if uint8(r>>8) != 255-s.R || uint8(g>>8) != 255-s.G {
			t.Errorf("pixel %v = %d,%d; want the negative of %d,%d", p, r>>8, g>>8, s.R, s.G)
		}
	}
}
