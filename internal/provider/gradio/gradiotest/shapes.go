package gradiotest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/gif"  // decoders for edit inputs
	_ "image/jpeg" // decoders for edit inputs
	_ "image/png"  // decoders for edit inputs
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	_ "golang.org/x/image/webp" // decoder for edit inputs
)

// Behavior tunes the built-in endpoint scenarios.
type Behavior struct {
	// Steps is the number of progress frames per event; zero uses the
	// request's own step count.
	Steps int
	// StepDelay is the pause after each progress frame.
	StepDelay time.Duration
	// StartDelay is the pause after process_starts, before the first step
	// (model load, GPU grant).
	StartDelay time.Duration
	// Format is the output image format: "png" (default) or "webp".
	Format string
}

func (b Behavior) format() string {
	if b.Format == "" {
		return "png"
	}
	return b.Format
}

// maxSeed is the largest seed the Spaces' sliders allow (numpy int32 max).
const maxSeed = 2147483647

// steps plays the start delay and the progress frames of one event.
func (b Behavior) steps(ctx context.Context, c *Call, requested float64) error {
	n := b.Steps
	if n <= 0 {
		n = int(requested)
		if n < 1 {
			n = 1
		}
		if n > 100 {
			n = 100
		}
	}
	if err := sleepCtx(ctx, b.StartDelay); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		c.Progress(i, n, "steps")
		if err := sleepCtx(ctx, b.StepDelay); err != nil {
			return err
		}
	}
	return nil
}

// draw is the end of every text-to-image shape: pick the seed, report
// the steps, then render a w×h image for it.
func (b Behavior) draw(ctx context.Context, c *Call, w, h int, steps, seed float64, randomize bool) (FileData, int64, error) {
	s := seedFor(seed, randomize)
	if err := b.steps(ctx, c, steps); err != nil {
		return FileData{}, 0, err
	}
	fd, err := c.Image(w, h, s, b.format())
	if err != nil {
		return FileData{}, 0, err
	}
	return fd, s, nil
}

// seedFor returns the seed an event uses: a fresh random one when asked to
// randomize, else the given one.
func seedFor(seed float64, randomize bool) int64 {
	if randomize {
		return rand.Int64N(maxSeed + 1)
	}
	return int64(seed)
}

func slider(id int, label, name string, value, lo, hi, step float64) Component {
	return Component{ID: id, Type: "slider", Label: label, Name: name, Value: value,
		Props: map[string]any{"minimum": lo, "maximum": hi, "step": step}}
}

// ZImageTurbo is the layout of the mrfakename/Z-Image-Turbo Space:
// toggle_seed (dependency 0), generate_image (1, the button) and
// generate_image_1 (2, prompt submit). generate_image takes
// (prompt, height, width, num_inference_steps, seed, randomize_seed) and
// returns (Image, seed); the image is width x height, so a client that swaps
// the two gets the wrong shape back.
func ZImageTurbo(b Behavior) []Endpoint {
	prompt := Component{ID: 4, Type: "textbox", Label: "Prompt", Name: "prompt",
		Props: map[string]any{"lines": 3, "placeholder": "Describe the image you want to create..."}}
	height := slider(7, "Height", "height", 1024, 512, 2048, 64)
	width := slider(8, "Width", "width", 1024, 512, 2048, 64)
	steps := slider(9, "Inference Steps", "num_inference_steps", 9, 1, 20, 1)
	randomize := Component{ID: 11, Type: "checkbox", Label: "Randomize Seed", Name: "randomize_seed", Value: true}
	seed := Component{ID: 12, Type: "number", Label: "Seed", Name: "seed", Value: 42,
		Props: map[string]any{"precision": 0, "visible": false}}
	image := Component{ID: 16, Type: "image", Label: "Generated Image", Props: map[string]any{"format": b.format(), "type": "pil"}}
	seedOut := Component{ID: 17, Type: "number", Label: "Seed Used", Props: map[string]any{"interactive": false}}
	run := func(ctx context.Context, c *Call) ([]any, error) {
		if _, err := c.String(0); err != nil {
			return nil, err
		}
		h, err := c.Number(1)
		if err != nil {
			return nil, err
		}
		w, err := c.Number(2)
		if err != nil {
			return nil, err
		}
		n, err := c.Number(3)
		if err != nil {
			return nil, err
		}
		sd, err := c.Number(4)
		if err != nil {
			return nil, err
		}
		rnd, err := c.Bool(5)
		if err != nil {
			return nil, err
		}
		fd, s, err := b.draw(ctx, c, int(w), int(h), n, sd, rnd)
		if err != nil {
			return nil, err
		}
		return []any{fd, s}, nil
	}
	inputs := []Component{prompt, height, width, steps, seed, randomize}
	outputs := []Component{image, seedOut}
	return []Endpoint{
		{
			APIName: "toggle_seed", Inputs: []Component{randomize}, Outputs: []Component{seed},
			Trigger: 11, TriggerEvent: "change",
			Run: func(ctx context.Context, c *Call) ([]any, error) {
				rnd, err := c.Bool(0)
				if err != nil {
					return nil, err
				}
				return []any{Update(map[string]any{"visible": !rnd})}, nil
			},
		},
		{APIName: "generate_image", Inputs: inputs, Outputs: outputs, Trigger: 13, Run: run},
		{APIName: "generate_image_1", Inputs: inputs, Outputs: outputs, Trigger: 4, TriggerEvent: "submit", Run: run},
	}
}

// ZImageResolutions are the resolution choices of the official Z-Image
// Space, "WxH ( ratio )".
var ZImageResolutions = []string{
	"1024x1024 ( 1:1 )", "1152x896 ( 9:7 )", "896x1152 ( 7:9 )", "1152x864 ( 4:3 )", "864x1152 ( 3:4 )",
	"1248x832 ( 3:2 )", "832x1248 ( 2:3 )", "1280x720 ( 16:9 )", "720x1280 ( 9:16 )", "1344x576 ( 21:9 )",
	"576x1344 ( 9:21 )", "1280x1280 ( 1:1 )", "1536x864 ( 16:9 )", "864x1536 ( 9:16 )",
}

// ZImageOfficial is the layout of the official Tongyi-MAI/Z-Image-Turbo
// Space: generate(prompt, resolution, seed, steps, shift, random_seed,
// gallery_images) returning (Gallery, seed string, seed number). The
// resolution must be one of ZImageResolutions; the gallery input is the
// output gallery itself, and the new image comes first.
func ZImageOfficial(b Behavior) []Endpoint {
	prompt := Component{ID: 103, Type: "textbox", Label: "Prompt", Name: "prompt", Props: map[string]any{"lines": 3}}
	res := Component{ID: 105, Type: "dropdown", Label: "Width x Height (Ratio)", Name: "resolution", Value: ZImageResolutions[0],
		Props: map[string]any{"choices": ZImageResolutions}}
	seed := Component{ID: 106, Type: "number", Label: "Seed", Name: "seed", Value: 42, Props: map[string]any{"precision": 0}}
	steps := slider(108, "Steps", "steps", 8, 1, 100, 1)
	shift := slider(109, "Time Shift", "shift", 3, 1, 10, 0.1)
	random := Component{ID: 110, Type: "checkbox", Label: "Random Seed", Name: "random_seed", Value: true}
	gallery := Component{ID: 112, Type: "gallery", Label: "Generated Images", Name: "gallery_images", Value: []any{},
		Props: map[string]any{"columns": 2, "format": b.format()}}
	seedUsed := Component{ID: 113, Type: "textbox", Label: "Seed Used", Props: map[string]any{"interactive": false}}
	run := func(ctx context.Context, c *Call) ([]any, error) {
		if _, err := c.String(0); err != nil {
			return nil, err
		}
		r, err := c.String(1)
		if err != nil {
			return nil, err
		}
		w, h, err := parseResolution(r)
		if err != nil {
			return nil, err
		}
		sd, err := c.Number(2)
		if err != nil {
			return nil, err
		}
		n, err := c.Number(3)
		if err != nil {
			return nil, err
		}
		if _, err := c.Number(4); err != nil {
			return nil, err
		}
		rnd, err := c.Bool(5)
		if err != nil {
			return nil, err
		}
		fd, s, err := b.draw(ctx, c, w, h, n, sd, rnd)
		if err != nil {
			return nil, err
		}
		items := []any{GalleryItem(fd, nil)}
		if prev, ok := c.Input(6).([]any); ok {
			items = append(items, prev...)
		}
		return []any{items, strconv.FormatInt(s, 10), s}, nil
	}
	return []Endpoint{{
		APIName: "generate", Inputs: []Component{prompt, res, seed, steps, shift, random, gallery},
		Outputs: []Component{gallery, seedUsed, seed}, Trigger: 115, Run: run,
	}}
}

// parseResolution reads "1024x768 ( 4:3 )" as width 1024, height 768.
func parseResolution(r string) (int, int, error) {
	head, _, _ := strings.Cut(strings.TrimSpace(r), " ")
	ws, hs, ok := strings.Cut(head, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("invalid resolution %q", r)
	}
	return w, h, nil
}

// FluxSchnell is the layout of black-forest-labs/FLUX.1-schnell: one
// dependency infer(prompt, seed, randomize_seed, width, height,
// num_inference_steps) → (Image, seed) triggered by the button and by
// prompt submit.
func FluxSchnell(b Behavior) []Endpoint {
	prompt := Component{ID: 203, Type: "textbox", Label: "Prompt", Name: "prompt", Props: map[string]any{"max_lines": 1, "show_label": false}}
	seed := slider(209, "Seed", "seed", 0, 0, maxSeed, 1)
	randomize := Component{ID: 210, Type: "checkbox", Label: "Randomize seed", Name: "randomize_seed", Value: true}
	width := slider(212, "Width", "width", 1024, 256, 2048, 32)
	height := slider(213, "Height", "height", 1024, 256, 2048, 32)
	steps := slider(215, "Number of inference steps", "num_inference_steps", 4, 1, 50, 1)
	result := Component{ID: 206, Type: "image", Label: "Result", Props: map[string]any{"format": b.format(), "show_label": false}}
	run := func(ctx context.Context, c *Call) ([]any, error) {
		if _, err := c.String(0); err != nil {
			return nil, err
		}
		sd, err := c.Number(1)
		if err != nil {
			return nil, err
		}
		rnd, err := c.Bool(2)
		if err != nil {
			return nil, err
		}
		w, err := c.Number(3)
		if err != nil {
			return nil, err
		}
		h, err := c.Number(4)
		if err != nil {
			return nil, err
		}
		n, err := c.Number(5)
		if err != nil {
			return nil, err
		}
		fd, s, err := b.draw(ctx, c, int(w), int(h), n, sd, rnd)
		if err != nil {
			return nil, err
		}
		return []any{fd, s}, nil
	}
	return []Endpoint{{
		APIName: "infer", Inputs: []Component{prompt, seed, randomize, width, height, steps},
		Outputs: []Component{result, seed}, Trigger: 205, AlsoOn: []Trigger{{ID: 203, Event: "submit"}}, Run: run,
	}}
}

// ImageEdit is a Qwen-Image-Edit-like layout: infer(image, prompt, seed,
// randomize_seed, true_guidance_scale, num_inference_steps) → (Image,
// seed). The output has the input image's size (its colours inverted), so
// tests can prove the upload reached the app.
func ImageEdit(b Behavior) []Endpoint {
	input := Component{ID: 304, Type: "image", Label: "Input Image", Name: "image", Props: map[string]any{"type": "pil", "format": "png"}}
	prompt := Component{ID: 306, Type: "textbox", Label: "Prompt", Name: "prompt", Props: map[string]any{"max_lines": 1}}
	seed := slider(311, "Seed", "seed", 0, 0, maxSeed, 1)
	randomize := Component{ID: 312, Type: "checkbox", Label: "Randomize seed", Name: "randomize_seed", Value: true}
	guidance := slider(314, "True guidance scale", "true_guidance_scale", 4, 1, 10, 0.1)
	steps := slider(315, "Number of inference steps", "num_inference_steps", 50, 1, 50, 1)
	result := Component{ID: 308, Type: "image", Label: "Result", Props: map[string]any{"format": b.format(), "type": "pil"}}
	run := func(ctx context.Context, c *Call) ([]any, error) {
		src, err := c.File(0)
		if err != nil {
			return nil, err
		}
		if _, err := c.String(1); err != nil {
			return nil, err
		}
		sd, err := c.Number(2)
		if err != nil {
			return nil, err
		}
		rnd, err := c.Bool(3)
		if err != nil {
			return nil, err
		}
		if _, err := c.Number(4); err != nil {
			return nil, err
		}
		n, err := c.Number(5)
		if err != nil {
			return nil, err
		}
		out, err := invert(src)
		if err != nil {
			return nil, err
		}
		s := seedFor(sd, rnd)
		if err := b.steps(ctx, c, n); err != nil {
			return nil, err
		}
		data, err := encodeImage(out, b.format())
		if err != nil {
			return nil, err
		}
		return []any{c.StoreFile("image."+b.format(), data), s}, nil
	}
	return []Endpoint{{
		APIName: "infer", Inputs: []Component{input, prompt, seed, randomize, guidance, steps},
		Outputs: []Component{result, seed}, Trigger: 307, AlsoOn: []Trigger{{ID: 306, Event: "submit"}}, Run: run,
	}}
}

// invert decodes an image (bounded in size) and returns its negative.
func invert(src []byte) (*image.NRGBA, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("cannot identify image file: %w", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > maxSide || cfg.Height > maxSide {
		return nil, fmt.Errorf("image size %dx%d out of range", cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	bnd := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, bnd.Dx(), bnd.Dy()))
	for y := 0; y < bnd.Dy(); y++ {
		for x := 0; x < bnd.Dx(); x++ {
			r, g, bl, a := img.At(bnd.Min.X+x, bnd.Min.Y+y).RGBA()
			o := y*out.Stride + x*4
			out.Pix[o] = 255 - byte(r>>8)
			out.Pix[o+1] = 255 - byte(g>>8)
			out.Pix[o+2] = 255 - byte(bl>>8)
			out.Pix[o+3] = byte(a >> 8)
		}
	}
	return out, nil
}

// StatefulGenerate is a small app whose endpoint takes a gr.State input:
// generate(prompt, history (State, skip_api), width, height) → (Image,
// history). /info lists three parameters while queue/join needs four
// values (null at the State position); the server keeps the history per
// session and the config asks for the heartbeat connection.
func StatefulGenerate(b Behavior) []Endpoint {
	prompt := Component{ID: 402, Type: "textbox", Label: "Prompt", Name: "prompt"}
	history := Component{ID: 403, Type: "state", Name: "history"}
	width := slider(405, "Width", "width", 512, 256, 1024, 64)
	height := slider(406, "Height", "height", 512, 256, 1024, 64)
	image := Component{ID: 408, Type: "image", Label: "Image", Props: map[string]any{"format": b.format()}}
	run := func(ctx context.Context, c *Call) ([]any, error) {
		p, err := c.String(0)
		if err != nil {
			return nil, err
		}
		hist, _ := c.Input(1).([]any)
		w, err := c.Number(2)
		if err != nil {
			return nil, err
		}
		h, err := c.Number(3)
		if err != nil {
			return nil, err
		}
		if err := b.steps(ctx, c, 4); err != nil {
			return nil, err
		}
		fd, err := c.Image(int(w), int(h), int64(len(hist)), b.format())
		if err != nil {
			return nil, err
		}
		return []any{fd, append(append([]any{}, hist...), p)}, nil
	}
	return []Endpoint{{
		APIName: "generate", Inputs: []Component{prompt, history, width, height},
		Outputs: []Component{image, history}, Trigger: 409, Run: run,
	}}
}
