package config

import (
	"reflect"
	"sort"

	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/jobapi"
)

// Names of the built-in presets.
const (
	// PresetZImageMrfakename is the community Z-Image-Turbo Space on
	// ZeroGPU whose /generate_image takes free pixel sizes.
	PresetZImageMrfakename = "z-image-turbo-mrfakename"
	// PresetZImageTongyi is the official Z-Image-Turbo Space; it takes a
	// resolution from a fixed list and returns a gallery.
	PresetZImageTongyi = "z-image-turbo-tongyi"
	// PresetFluxSchnell is FLUX.1 [schnell] on its official Space.
	PresetFluxSchnell = "flux-1-schnell"
	// PresetFluxKontextDev is FLUX.1 Kontext [dev], an image-edit model,
	// on its official Space. It serves /v1/images/edits only.
	PresetFluxKontextDev = "flux-1-kontext-dev"
	// PresetAIImageToImage is the reference job-API image-to-image service
	// with its fast model (nano_banana); see jobapi.Preset.
	PresetAIImageToImage = jobapi.PresetAIImageToImage
	// PresetAIImageToImageNanoBanana is the same service, model named.
	PresetAIImageToImageNanoBanana = jobapi.PresetAIImageToImageNanoBanana
	// PresetAIImageToImageStandard is the same service with its standard
	// model.
	PresetAIImageToImageStandard = jobapi.PresetAIImageToImageStandard
)

// tongyiResolutions are the values of the official Space's "Width x Height
// (Ratio)" dropdown, all three resolution categories (1024, 1280, 1536),
// as its app lists them. The gradio backend reads the live choices from the
// Space's /config at run time; this list is only the fallback.
var tongyiResolutions = []string{
	"1024x1024 ( 1:1 )",
	"1152x896 ( 9:7 )",
	"896x1152 ( 7:9 )",
	"1152x864 ( 4:3 )",
	"864x1152 ( 3:4 )",
	"1248x832 ( 3:2 )",
	"832x1248 ( 2:3 )",
	"1280x720 ( 16:9 )",
	"720x1280 ( 9:16 )",
	"1344x576 ( 21:9 )",
	"576x1344 ( 9:21 )",
	"1280x1280 ( 1:1 )",
	"1440x1120 ( 9:7 )",
	"1120x1440 ( 7:9 )",
	"1472x1104 ( 4:3 )",
	"1104x1472 ( 3:4 )",
	"1536x1024 ( 3:2 )",
	"1024x1536 ( 2:3 )",
	"1536x864 ( 16:9 )",
	"864x1536 ( 9:16 )",
	"1680x720 ( 21:9 )",
	"720x1680 ( 9:21 )",
	"1536x1536 ( 1:1 )",
	"1728x1344 ( 9:7 )",
	"1344x1728 ( 7:9 )",
	"1728x1296 ( 4:3 )",
	"1296x1728 ( 3:4 )",
	"1872x1248 ( 3:2 )",
	"1248x1872 ( 2:3 )",
	"2048x1152 ( 16:9 )",
	"1152x2048 ( 9:16 )",
	"2016x864 ( 21:9 )",
	"864x2016 ( 9:21 )",
}

func intp(v int) *int { return &v }

// Presets returns the built-in backend presets by name. Each call returns
// fresh values that the caller may modify.
//
// The input orders and bounds come from copies of the Spaces' apps (the
// Spaces themselves are not public repositories); the gradio backend
// checks them against the live /info at run time.
func Presets() map[string]Backend {
	presets := map[string]Backend{
		// The function is generate_image(prompt, height, width,
		// num_inference_steps, seed, randomize_seed): height comes before
		// width. The app's sliders run 512..2048 in steps of 64 (default
		// 1024) and 1..20 steps (default 9, which the app describes as 8
		// transformer passes); these bounds are an assumption read from a
		// port of the app, not from the live Space.
		PresetZImageMrfakename: {
			Name:        PresetZImageMrfakename,
			Type:        backendTypeGradio,
			Concurrency: DefaultGradioConcurrency,
			MaxQueue:    DefaultBackendMaxQueue,
			Gradio: &gradio.Config{
				Space:   "mrfakename/Z-Image-Turbo",
				APIName: "/generate_image",
				Inputs: []gradio.Input{
					{From: "prompt"},
					{From: "height", Type: "int"},
					{From: "width", Type: "int"},
					{From: "steps", Type: "int", Default: 9},
					{From: "seed", Type: "int", Default: 42},
					{From: "randomize_seed", Type: "bool"},
				},
				Output: gradio.Output{Index: intp(0), Kind: "image", SeedIndex: intp(1)},
				Size:   gradio.SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024, Min: 512, Max: 2048, Multiple: 64},
				Steps:  gradio.StepsConfig{Default: 9, Min: 1, Max: 20},
			},
		},
		// generate(prompt, resolution, seed, steps, shift, random_seed,
		// gallery_images) returns (gallery, seed as text, seed as number).
		// The steps slider runs 1..100 (default 8); shift is the app's
		// default 3; the gallery input only feeds the UI's history, so it
		// is sent empty.
		PresetZImageTongyi: {
			Name:        PresetZImageTongyi,
			Type:        backendTypeGradio,
			Concurrency: DefaultGradioConcurrency,
			MaxQueue:    DefaultBackendMaxQueue,
			Gradio: &gradio.Config{
				Space:   "Tongyi-MAI/Z-Image-Turbo",
				APIName: "/generate",
				Inputs: []gradio.Input{
					{From: "prompt"},
					{From: "size_choice", Choices: append([]string(nil), tongyiResolutions...)},
					{From: "seed", Type: "int", Default: 42},
					{From: "steps", Type: "int", Default: 8},
					{Value: 3},
					{From: "randomize_seed", Type: "bool"},
					{Value: []any{}},
				},
				Output: gradio.Output{Index: intp(0), Kind: "gallery", SeedIndex: intp(2)},
				Size:   gradio.SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024, Min: 576, Max: 2048, Multiple: 16},
				Steps:  gradio.StepsConfig{Default: 8, Min: 1, Max: 100},
			},
		},
		// infer(prompt, seed, randomize_seed, width, height,
		// num_inference_steps) returns (image, seed). Sizes 256..2048 in
		// steps of 32, 1..50 steps (default 4).
		PresetFluxSchnell: {
			Name:        PresetFluxSchnell,
			Type:        backendTypeGradio,
			Concurrency: DefaultGradioConcurrency,
			MaxQueue:    DefaultBackendMaxQueue,
			Gradio: &gradio.Config{
				Space:   "black-forest-labs/FLUX.1-schnell",
				APIName: "/infer",
				Inputs: []gradio.Input{
					{From: "prompt"},
					{From: "seed", Type: "int", Default: 0},
					{From: "randomize_seed", Type: "bool"},
					{From: "width", Type: "int"},
					{From: "height", Type: "int"},
					{From: "steps", Type: "int", Default: 4},
				},
				Output: gradio.Output{Index: intp(0), Kind: "image", SeedIndex: intp(1)},
				Size:   gradio.SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024, Min: 256, Max: 2048, Multiple: 32},
				Steps:  gradio.StepsConfig{Default: 4, Min: 1, Max: 50},
			},
		},
		// infer(input_image, prompt, seed, randomize_seed, guidance_scale,
		// steps) returns (image, seed, an update that shows a button). The
		// result keeps the input's aspect ratio, so there is no size input
		// and no size bounds. Guidance 2.5 and 28 steps are the app's
		// defaults; the 1..30 steps range is an assumption read from copies
		// of the app, and the gradio backend checks the input count against
		// the live /info.
		PresetFluxKontextDev: {
			Name:        PresetFluxKontextDev,
			Type:        backendTypeGradio,
			Concurrency: DefaultGradioConcurrency,
			MaxQueue:    DefaultBackendMaxQueue,
			Gradio: &gradio.Config{
				Space:   "black-forest-labs/FLUX.1-Kontext-Dev",
				APIName: "/infer",
				Inputs: []gradio.Input{
					{From: "image"},
					{From: "prompt"},
					{From: "seed", Type: "int", Default: 0},
					{From: "randomize_seed", Type: "bool"},
					{Value: 2.5},
					{From: "steps", Type: "int", Default: 28},
				},
				Output: gradio.Output{Index: intp(0), Kind: "image", SeedIndex: intp(1)},
				Steps:  gradio.StepsConfig{Default: 28, Min: 1, Max: 30},
			},
		},
	}
	for _, name := range jobapi.PresetNames() {
		cfg, _ := jobapi.Preset(name)
		presets[name] = Backend{
			Name:        name,
			Type:        backendTypeJobAPI,
			Concurrency: DefaultJobAPIConcurrency,
			MaxQueue:    DefaultBackendMaxQueue,
			JobAPI:      &cfg,
		}
	}
	return presets
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	p := Presets()
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// mergePreset fills b from the named preset: every field b leaves at its
// zero value takes the preset's. Inputs and Choices are replaced whole,
// never merged position by position, because inputs are positional.
func mergePreset(b *Backend, p Backend) {
	if b.Type == "" {
		b.Type = p.Type
	}
	if b.Concurrency == 0 {
		b.Concurrency = p.Concurrency
	}
	if b.MaxQueue == 0 {
		b.MaxQueue = p.MaxQueue
	}
	if b.QueueTimeout == 0 {
		b.QueueTimeout = p.QueueTimeout
	}
	if b.Type != "" && b.Type != p.Type {
		return
	}
	if p.JobAPI != nil {
		if b.JobAPI == nil {
			b.JobAPI = &jobapi.Config{}
		}
		mergeZero(reflect.ValueOf(b.JobAPI).Elem(), reflect.ValueOf(p.JobAPI).Elem())
	}
	if p.Gradio == nil {
		return
	}
	if b.Gradio == nil {
		b.Gradio = &gradio.Config{}
	}
	g, pg := b.Gradio, p.Gradio
	if g.Space == "" {
		g.Space = pg.Space
	}
	// An endpoint chosen explicitly (by name or index) replaces the
	// preset's whole selection.
	if g.APIName == "" && g.FnIndex == nil {
		g.APIName = pg.APIName
		g.FnIndex = pg.FnIndex
	}
	if g.TokenEnv == "" {
		g.TokenEnv = pg.TokenEnv
	}
	if len(g.Inputs) == 0 {
		g.Inputs = pg.Inputs
	}
	if g.Output.Index == nil {
		g.Output.Index = pg.Output.Index
	}
	if g.Output.Kind == "" {
		g.Output.Kind = pg.Output.Kind
	}
	if g.Output.SeedIndex == nil {
		g.Output.SeedIndex = pg.Output.SeedIndex
	}
	mergeInt(&g.Size.DefaultWidth, pg.Size.DefaultWidth)
	mergeInt(&g.Size.DefaultHeight, pg.Size.DefaultHeight)
	mergeInt(&g.Size.Min, pg.Size.Min)
	mergeInt(&g.Size.Max, pg.Size.Max)
	mergeInt(&g.Size.Multiple, pg.Size.Multiple)
	mergeInt(&g.Steps.Default, pg.Steps.Default)
	mergeInt(&g.Steps.Min, pg.Steps.Min)
	mergeInt(&g.Steps.Max, pg.Steps.Max)
	if g.StallTimeout == 0 {
		g.StallTimeout = pg.StallTimeout
	}
	if g.RequestTimeout == 0 {
		g.RequestTimeout = pg.RequestTimeout
	}
	if g.ConfigTTL == 0 {
		g.ConfigTTL = pg.ConfigTTL
	}
	if g.MaxResultBytes == 0 {
		g.MaxResultBytes = pg.MaxResultBytes
	}
}

// mergeZero fills every zero field of dst from src, descending into
// nested structs, so that a backend overrides a preset key by key. Lists
// and maps are replaced whole (a field list is ordered, a header map is
// one set), and a false bool inherits the preset's value.
func mergeZero(dst, src reflect.Value) {
	for i := range dst.NumField() {
		d, s := dst.Field(i), src.Field(i)
		if !d.CanSet() {
			continue
		}
		if d.Kind() == reflect.Struct {
			mergeZero(d, s)
			continue
		}
		if d.IsZero() {
			d.Set(s)
		}
	}
}

func mergeInt(dst *int, v int) {
	if *dst == 0 {
		*dst = v
	}
}
