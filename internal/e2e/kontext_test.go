package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// kontextModel is served by the flux-1-kontext-dev preset.
const kontextModel = "flux-kontext"

// kontextCall is what the fake Kontext endpoint received, after its own
// checks passed.
type kontextCall struct {
	width, height int
	prompt        string
	seed          float64
	randomize     bool
	guidance      float64
	steps         float64
}

// kontextFake is an endpoint laid out like the FLUX.1-Kontext-Dev Space:
// infer(input_image, prompt, seed, randomize_seed, guidance_scale, steps)
// → (Image, seed, a button update). It refuses any call whose values do
// not have the types of those positions, so a preset whose inputs are
// shifted by one fails here. The result has the input's size.
type kontextFake struct {
	mu    sync.Mutex
	calls []kontextCall
}

func (k *kontextFake) endpoint() gradiotest.Endpoint {
	slider := func(id int, label, name string, value, lo, hi, step float64) gradiotest.Component {
		return gradiotest.Component{ID: id, Type: "slider", Label: label, Name: name, Value: value,
			Props: map[string]any{"minimum": lo, "maximum": hi, "step": step}}
	}
	input := gradiotest.Component{ID: 401, Type: "image", Label: "Upload the image for editing", Name: "input_image", Props: map[string]any{"type": "pil"}}
	prompt := gradiotest.Component{ID: 402, Type: "textbox", Label: "Prompt", Name: "prompt", Props: map[string]any{"max_lines": 1}}
	seed := slider(403, "Seed", "seed", 0, 0, 2147483647, 1)
	randomize := gradiotest.Component{ID: 404, Type: "checkbox", Label: "Randomize seed", Name: "randomize_seed", Value: true}
	guidance := slider(405, "Guidance Scale", "guidance_scale", 2.5, 1, 10, 0.1)
	steps := slider(406, "Steps", "steps", 28, 1, 30, 1)
	result := gradiotest.Component{ID: 407, Type: "image", Label: "Result", Props: map[string]any{"format": "png"}}
	reuse := gradiotest.Component{ID: 408, Type: "button", Label: "Reuse this image", Value: "Reuse this image"}
	return gradiotest.Endpoint{
		APIName: "infer",
		Inputs:  []gradiotest.Component{input, prompt, seed, randomize, guidance, steps},
		Outputs: []gradiotest.Component{result, seed, reuse},
		Run:     k.run,
	}
}

func (k *kontextFake) run(_ context.Context, c *gradiotest.Call) ([]any, error) {
	if len(c.Data) != 6 {
		return nil, fmt.Errorf("infer takes 6 inputs, got %d", len(c.Data))
	}
	src, err := c.File(0)
	if err != nil {
		return nil, fmt.Errorf("input_image: %w", err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("input_image is not an image: %w", err)
	}
	var call kontextCall
	call.width, call.height = cfg.Width, cfg.Height
	var ok bool
	if call.prompt, ok = c.Data[1].(string); !ok || call.prompt == "" {
		return nil, fmt.Errorf("prompt is %T %v, want a non-empty string", c.Data[1], c.Data[1])
	}
	if call.seed, ok = c.Data[2].(float64); !ok {
		return nil, fmt.Errorf("seed is %T, want a number", c.Data[2])
	}
	if call.randomize, ok = c.Data[3].(bool); !ok {
		return nil, fmt.Errorf("randomize_seed is %T, want a bool", c.Data[3])
	}
	if call.guidance, ok = c.Data[4].(float64); !ok {
		return nil, fmt.Errorf("guidance_scale is %T, want a number", c.Data[4])
	}
	if call.steps, ok = c.Data[5].(float64); !ok || call.steps < 1 || call.steps > 30 {
		return nil, fmt.Errorf("steps is %T %v, want a number in 1..30", c.Data[5], c.Data[5])
	}
	k.mu.Lock()
	k.calls = append(k.calls, call)
	k.mu.Unlock()
	used := int64(call.seed)
	if call.randomize {
		used = 424242
	}
	return []any{c.PNG(cfg.Width, cfg.Height, used), used, map[string]any{"__type__": "update", "visible": true}}, nil
}

func (k *kontextFake) last(t *testing.T) kontextCall {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.calls) == 0 {
		t.Fatal("the fake Kontext endpoint was never called")
	}
	return k.calls[len(k.calls)-1]
}

// TestKontextPreset runs edits through the flux-1-kontext-dev preset
// against an endpoint of the Space's exact input layout: the preset's
// positions, types and constants line up with it, and the official SDK's
// edit comes back with the input's size.
func TestKontextPreset(t *testing.T) {
	t.Parallel()
	k := &kontextFake{}
	eps := append(gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 2, StepDelay: 5 * time.Millisecond}), k.endpoint())
	b := setup(t, scenario{
		endpoints: eps,
		extraBackends: `  - name: kontext
    preset: flux-1-kontext-dev
    gradio:
      space: $FAKE_URL
`,
		extraModels: "  - id: " + kontextModel + "\n    backends: [kontext]\n",
	})
	src, _ := gradient(48, 32)

	t.Run("SDK edit with the preset's defaults", func(t *testing.T) {
		resp, err := b.client.Images.Edit(testCtx(t), openai.ImageEditParams{
			Image:  openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(src)},
			Prompt: "add a hat",
			Model:  kontextModel,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 1 {
			t.Fatalf("%d images", len(resp.Data))
		}
		if cfg := decodeB64PNG(t, resp.Data[0].B64JSON); cfg.Width != 48 || cfg.Height != 32 {
			t.Errorf("result %dx%d, want the input's 48x32", cfg.Width, cfg.Height)
		}
		got := k.last(t)
		want := kontextCall{width: 48, height: 32, prompt: "add a hat", seed: 0, randomize: true, guidance: 2.5, steps: 28}
		if got != want {
			t.Errorf("endpoint received %+v, want %+v", got, want)
		}
	})

	t.Run("seed and steps reach their positions", func(t *testing.T) {
		resp, data := b.postJSON(t, "/v1/images/edits", map[string]any{
			"model":  kontextModel,
			"prompt": "make it night",
			"seed":   7,
			"steps":  12,
			"images": []map[string]string{{"image_url": "data:image/png;base64," + base64.StdEncoding.EncodeToString(src)}},
		})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		var out struct {
			Data []struct {
				B64JSON string `json:"b64_json"`
			} `json:"data"`
		}
		if err := json.Unmarshal(data, &out); err != nil || len(out.Data) != 1 {
			t.Fatalf("response %s (%v)", data, err)
		}
		decodeB64PNG(t, out.Data[0].B64JSON)
		got := k.last(t)
		want := kontextCall{width: 48, height: 32, prompt: "make it night", seed: 7, randomize: false, guidance: 2.5, steps: 12}
		if got != want {
			t.Errorf("endpoint received %+v, want %+v", got, want)
		}
	})

	t.Run("a text-only request is refused", func(t *testing.T) {
		_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Prompt: "a hat", Model: kontextModel})
		apiError(t, err, http.StatusBadRequest)
	})
}
