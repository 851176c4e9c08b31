package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fakeHost replaces the fake's random address in golden output.
const fakeHost = "http://gradio.test"

func startFake(t *testing.T, opts gradiotest.Options) *gradiotest.Server {
	t.Helper()
	s, err := gradiotest.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "probe", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestProbeGolden(t *testing.T) {
	t.Parallel()
	b := gradiotest.Behavior{}
	tests := []struct {
		name      string
		version   int
		endpoints []gradiotest.Endpoint
		args      []string
	}{
		{"zimage-turbo", 6, gradiotest.ZImageTurbo(b), nil},
		{"zimage-turbo-one-endpoint", 5, gradiotest.ZImageTurbo(b), []string{"--endpoint", "generate_image"}},
		{"zimage-turbo-not-image", 6, gradiotest.ZImageTurbo(b), []string{"-e", "/toggle_seed"}},
		{"zimage-official", 5, gradiotest.ZImageOfficial(b), nil},
		{"flux-schnell-gradio4", 4, gradiotest.FluxSchnell(b), nil},
		{"image-edit", 6, gradiotest.ImageEdit(b), nil},
		{"stateful", 6, gradiotest.StatefulGenerate(b), nil},
		{"flux-schnell-json", 6, gradiotest.FluxSchnell(b), []string{"--json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, gradiotest.Options{Version: tt.version, Endpoints: tt.endpoints})
			args := append([]string{"probe", "--name", "fake"}, tt.args...)
			out, stderr, err := run(t, nil, append(args, fake.URL)...)
			if err != nil {
				t.Fatalf("probe: %v\n%s", err, stderr)
			}
			checkGolden(t, tt.name, strings.ReplaceAll(out, fake.URL, fakeHost))
		})
	}
}

// probeSnippet runs probe against the fake and returns the printed text.
func probeSnippet(t *testing.T, fake *gradiotest.Server, args ...string) string {
	t.Helper()
	out, stderr, err := run(t, nil, append(append([]string{"probe", "--name", "fake"}, args...), fake.URL)...)
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, stderr)
	}
	return out
}

// writeSnippetConfig writes a config file made of the probe output under
// "backends:" plus a model served by it.
func writeSnippetConfig(t *testing.T, snippet string) string {
	t.Helper()
	body := "backends:\n" + snippet + "models:\n  - id: probed\n    backends: [fake]\n"
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProbeSnippetGenerates loads each printed snippet as configuration and
// runs a real generation through serve against the fake.
func TestProbeSnippetGenerates(t *testing.T) {
	t.Parallel()
	b := gradiotest.Behavior{Steps: 2}
	tests := []struct {
		name          string
		version       int
		endpoints     []gradiotest.Endpoint
		args          []string
		size          string
		wantW, wantH  int
		wantTODOInput bool
	}{
		{"zimage-turbo", 6, gradiotest.ZImageTurbo(b), []string{"--endpoint", "/generate_image"}, "768x512", 768, 512, false},
		// The official layout takes a resolution from a list: 3:2 is the
		// nearest aspect ratio to 768x512.
		{"zimage-official", 5, gradiotest.ZImageOfficial(b), nil, "768x512", 1248, 832, true},
		{"flux-schnell", 4, gradiotest.FluxSchnell(b), nil, "512x384", 512, 384, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, gradiotest.Options{Version: tt.version, Endpoints: tt.endpoints})
			snippet := probeSnippet(t, fake, tt.args...)
			if got := strings.Contains(snippet, "TODO"); got != tt.wantTODOInput {
				t.Errorf("snippet has TODO = %v, want %v:\n%s", got, tt.wantTODOInput, snippet)
			}
			path := writeSnippetConfig(t, snippet)
			cfg, err := config.Load(path, envMap(nil))
			if err != nil {
				t.Fatalf("the snippet does not load as config: %v\n%s", err, snippet)
			}
			if len(cfg.Backends) != 1 || cfg.Backends[0].Gradio == nil || cfg.Backends[0].Gradio.Space != fake.URL {
				t.Fatalf("loaded backends = %+v", cfg.Backends)
			}
			base, logs, _ := startServe(t, nil, "--config", path, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
			var resp struct {
				Data []struct {
					B64JSON string `json:"b64_json"`
				} `json:"data"`
			}
			code := getJSON(t, http.MethodPost, base+"/v1/images/generations", "", map[string]any{
				"model": "probed", "prompt": "a red fox", "size": tt.size, "seed": 7,
			}, &resp)
			if code != http.StatusOK || len(resp.Data) != 1 {
				t.Fatalf("generation = %d with %d images\n%s", code, len(resp.Data), logs.String())
			}
			raw, err := base64.StdEncoding.DecodeString(resp.Data[0].B64JSON)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := png.DecodeConfig(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("result is not a PNG: %v", err)
			}
			if pc.Width != tt.wantW || pc.Height != tt.wantH {
				t.Errorf("result is %dx%d, want %dx%d", pc.Width, pc.Height, tt.wantW, tt.wantH)
			}
			joins := fake.Joins()
			if len(joins) != 1 {
				t.Fatalf("fake saw %d joins, want 1", len(joins))
			}
			if joins[0].Data[0] != "a red fox" {
				t.Errorf("join data = %v", joins[0].Data)
			}
		})
	}
}

// TestProbeSnippetEdits drives the image-edit snippet through the Gradio
// provider (the server's edits endpoint is separate work): the uploaded
// image must reach the app, which returns its negative.
func TestProbeSnippetEdits(t *testing.T) {
	t.Parallel()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.ImageEdit(gradiotest.Behavior{Steps: 1})})
	snippet := probeSnippet(t, fake)
	cfg, err := config.Load(writeSnippetConfig(t, snippet), envMap(nil))
	if err != nil {
		t.Fatalf("the snippet does not load as config: %v\n%s", err, snippet)
	}
	p, err := gradio.New("fake", *cfg.Backends[0].Gradio, gradio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if caps := p.Capabilities(); !caps.ImageToImage || caps.MaxInputImages != 1 {
		t.Errorf("capabilities = %+v, want image to image with one input", caps)
	}
	src := image.NewNRGBA(image.Rect(0, 0, 6, 4))
	for i := range src.Pix {
		src.Pix[i] = 0xff
	}
	src.SetNRGBA(0, 0, color.NRGBA{R: 0, G: 0, B: 0, A: 0xff})
	var in bytes.Buffer
	if err := png.Encode(&in, src); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Generate(ctx, &provider.Request{
		Kind: provider.KindEdit, Prompt: "invert it", N: 1,
		Images: []provider.InputImage{{Data: in.Bytes(), MIME: "image/png", Name: "in.png", Width: 6, Height: 4}},
	}, func(provider.Event) {})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	out, err := png.Decode(bytes.NewReader(res.Images[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Bounds(); b.Dx() != 6 || b.Dy() != 4 {
		t.Errorf("result is %v, want the input's 6x4", b)
	}
	if r, _, _, _ := out.At(0, 0).RGBA(); r>>8 != 0xff {
		t.Errorf("pixel (0,0) red = %d, want the inverted 255", r>>8)
	}
	if r, _, _, _ := out.At(1, 0).RGBA(); r>>8 != 0 {
		t.Errorf("pixel (1,0) red = %d, want the inverted 0", r>>8)
	}
}

func TestProbeJSONMatchesSnippet(t *testing.T) {
	t.Parallel()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.ZImageOfficial(gradiotest.Behavior{})})
	out, _, err := run(t, nil, "probe", "--json", "--name", "fake", fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	var rep probeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Endpoints) != 1 || !rep.Endpoints[0].Image || rep.Endpoints[0].APIName != "/generate" {
		t.Fatalf("endpoints = %+v", rep.Endpoints)
	}
	ep := rep.Endpoints[0]
	var froms []string
	unmapped := 0
	for _, in := range ep.Inputs {
		froms = append(froms, in.From)
		if !in.Mapped {
			unmapped++
		}
	}
	want := []string{"prompt", "size_choice", "seed", "steps", "", "randomize_seed", ""}
	if diff := cmp.Diff(want, froms); diff != "" {
		t.Errorf("input mapping (-want +got):\n%s", diff)
	}
	if unmapped != 1 || ep.Inputs[4].Name != "shift" || ep.Inputs[4].Mapped {
		t.Errorf("want exactly the shift input unmapped, got %+v", ep.Inputs)
	}
	g, _ := ep.Backend["gradio"].(map[string]any)
	if g == nil || g["api_name"] != "/generate" || g["space"] != fake.URL {
		t.Errorf("backend = %v", ep.Backend)
	}
}

func TestProbeErrors(t *testing.T) {
	t.Parallel()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.FluxSchnell(gradiotest.Behavior{}), Token: "hf_secret_probe_token"})

	_, _, err := run(t, nil, "probe", fake.URL)
	if got := ExitCode(err); got != ExitAuth {
		t.Errorf("probe of a private app without token: exit %d (%v), want %d", got, err, ExitAuth)
	}
	out, _, err := run(t, map[string]string{"HF_TOKEN": "hf_secret_probe_token"}, "probe", fake.URL)
	if err != nil || !strings.Contains(out, "api_name: /infer") {
		t.Errorf("probe with HF_TOKEN = %v\n%s", err, out)
	}
	if strings.Contains(out, "hf_secret_probe_token") {
		t.Error("the token appears in the output")
	}
	_, _, err = run(t, map[string]string{"HF_TOKEN": "hf_secret_probe_token"}, "probe", "--endpoint", "/nope", fake.URL)
	if got := ExitCode(err); got != ExitUsage || !strings.Contains(err.Error(), "/infer") {
		t.Errorf("unknown endpoint: exit %d (%v), want %d naming /infer", got, err, ExitUsage)
	}
	for _, args := range [][]string{{"probe"}, {"probe", "a", "b"}, {"probe", "--bogus", "x/y"}, {"probe", "not a space"}} {
		_, _, err := run(t, nil, args...)
		if got := ExitCode(err); got != ExitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, got, err, ExitUsage)
		}
	}
	// Not a Gradio app.
	notGradio := startFake(t, gradiotest.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>hello</html>"))
		return true
	}})
	_, _, err = run(t, nil, "probe", notGradio.URL)
	var ee *ExitError
	if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "not the JSON of a Gradio app") {
		t.Errorf("probe of a non-Gradio server = %v", err)
	}
}

func TestSpaceNames(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, space, name string }{
		{"Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image-Turbo", "z-image-turbo"},
		{"https://huggingface.co/spaces/black-forest-labs/FLUX.1-schnell/", "black-forest-labs/FLUX.1-schnell", "flux.1-schnell"},
		{"https://mrfakename-z-image-turbo.hf.space/", "https://mrfakename-z-image-turbo.hf.space", "mrfakename-z-image-turbo"},
		{"http://127.0.0.1:7860", "http://127.0.0.1:7860", "127.0.0.1"},
	}
	for _, tt := range tests {
		space, err := normalizeSpace(tt.in)
		if err != nil || space != tt.space {
			t.Errorf("normalizeSpace(%q) = %q, %v; want %q", tt.in, space, err, tt.space)
		}
		if got := backendNameFor(space); got != tt.name {
			t.Errorf("backendNameFor(%q) = %q, want %q", space, got, tt.name)
		}
	}
}

// FuzzProbeMapping feeds arbitrary /config and /info documents to the
// endpoint mapping and the snippet writer: they must not panic, and every
// snippet must be YAML that loads back.
func FuzzProbeMapping(f *testing.F) {
	for _, eps := range [][]gradiotest.Endpoint{
		gradiotest.ZImageTurbo(gradiotest.Behavior{}),
		gradiotest.ZImageOfficial(gradiotest.Behavior{}),
		gradiotest.ImageEdit(gradiotest.Behavior{}),
		gradiotest.StatefulGenerate(gradiotest.Behavior{}),
	} {
		fake := gradiotest.New(gradiotest.Options{Endpoints: eps})
		cfg, info := fetchForSeed(f, fake.URL+"/config"), fetchForSeed(f, fake.URL+fake.Prefix()+"/info")
		fake.Close()
		f.Add(cfg, info)
	}
	f.Add([]byte(`{"components":[{"id":1,"type":""}],"dependencies":[{"api_name":"x","inputs":[1,1,7],"outputs":[1]}]}`), []byte(`{"named_endpoints":{"/x":{"parameters":[{}],"returns":[{"component":"Image"}]}}}`))
	// Labels and names with line breaks must not break out of comments.
	f.Add([]byte(`{"components":[{"id":1,"type":"textbox","props":{"label":"a\nb: c"}},{"id":2,"type":"image"}],"dependencies":[{"api_name":"x\ny","inputs":[1,1],"outputs":[2]}]}`),
		[]byte(`{"named_endpoints":{"/x\ny":{"parameters":[{"label":"p\r\n- from: 1","parameter_name":"prompt\nz","parameter_has_default":true,"parameter_default":"\n"},{"label":"q","component":"Tex\ntbox"}],"returns":[{"label":"#\n","component":"Image"}]}}}`))
	f.Fuzz(func(t *testing.T, cfgBody, infoBody []byte) {
		var ac probeAppConfig
		if json.Unmarshal(cfgBody, &ac) != nil {
			return
		}
		var info probeAPIInfo
		infop := &info
		if json.Unmarshal(infoBody, &info) != nil {
			infop = nil
		}
		rep := &probeReport{Space: "owner/name"}
		rep.addEndpoints(&ac, infop)
		var chosen []*probeEndpoint
		for i := range rep.Endpoints {
			ep := &rep.Endpoints[i]
			if err := ep.buildSnippet("b", "owner/name"); err != nil {
				t.Fatalf("buildSnippet: %v", err)
			}
			chosen = append(chosen, ep)
		}
		var out bytes.Buffer
		if err := writeProbeText(&out, rep, chosen); err != nil {
			t.Fatalf("writeProbeText: %v", err)
		}
		var back struct {
			Backends []config.Backend `yaml:"backends"`
		}
		if err := yaml.Unmarshal([]byte("backends:\n"+out.String()), &back); err != nil {
			t.Fatalf("snippet is not YAML: %v\n%s", err, out.String())
		}
		if len(back.Backends) != len(chosen) {
			t.Fatalf("%d backends read back, want %d", len(back.Backends), len(chosen))
		}
	})
}

func fetchForSeed(f *testing.F, u string) []byte {
	f.Helper()
	resp, err := http.Get(u)
	if err != nil {
		f.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func TestMapInputsHeuristics(t *testing.T) {
	t.Parallel()
	comps := map[int]probeComponent{
		1:  {ID: 1, Type: "textbox", Props: map[string]any{"label": "Text"}},
		2:  {ID: 2, Type: "textbox", Props: map[string]any{"label": "Negative Prompt", "value": ""}},
		3:  {ID: 3, Type: "dropdown", Props: map[string]any{"label": "Aspect ratio", "value": "1344 x 768 (16:9)", "choices": []any{"1024 x 1024 (1:1)", "1344 x 768 (16:9)", "768X1344 (9:16)"}}},
		4:  {ID: 4, Type: "image", Props: map[string]any{"label": "Reference"}},
		5:  {ID: 5, Type: "image", Props: map[string]any{"label": "Style reference"}},
		6:  {ID: 6, Type: "gallery", Props: map[string]any{"label": "More references"}},
		7:  {ID: 7, Type: "checkbox", Props: map[string]any{"label": "Random seed", "value": false}},
		8:  {ID: 8, Type: "number", Props: map[string]any{"label": "Seed", "value": 1234}},
		9:  {ID: 9, Type: "slider", Props: map[string]any{"label": "Sampling steps", "value": 28, "minimum": 1, "maximum": 60, "step": 1}},
		10: {ID: 10, Type: "textbox", Props: map[string]any{"label": "Style"}},
		11: {ID: 11, Type: "dropdown", Props: map[string]any{"label": "Sampler", "value": "euler", "choices": []any{"euler", "dpm"}}},
		20: {ID: 20, Type: "gallery", Props: map[string]any{"label": "Results"}},
		21: {ID: 21, Type: "textbox", Props: map[string]any{"label": "Seed used"}},
	}
	// Numbers in props come from JSON.
	for _, c := range comps {
		for k, v := range c.Props {
			if n, ok := v.(int); ok {
				c.Props[k] = float64(n)
			}
		}
	}
	ep := probeEndpoint{APIName: "/run", dep: probeDep{Inputs: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, Outputs: []int{20, 21}}, outIdx: -1}
	ep.fill(comps, nil, nil)

	var froms []string
	var todos []int
	for i, in := range ep.Inputs {
		froms = append(froms, in.From)
		if !in.Mapped {
			todos = append(todos, i+1)
		}
	}
	want := []string{"prompt", "negative_prompt", "size_choice", "image", "", "images", "randomize_seed", "seed", "steps", "", ""}
	if diff := cmp.Diff(want, froms); diff != "" {
		t.Errorf("mapping (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{5, 10, 11}, todos); diff != "" {
		t.Errorf("unmapped inputs (-want +got):\n%s", diff)
	}
	if !strings.Contains(ep.mapped[4].todo, `input 5 "Style reference" (Image, no default); sent as null`) {
		t.Errorf("todo for the second image = %q", ep.mapped[4].todo)
	}
	if !strings.Contains(ep.mapped[10].todo, `input 11 "Sampler" (Dropdown, default "euler"); sent as its default`) || ep.mapped[10].in.Value != "euler" {
		t.Errorf("todo for the sampler = %q, value %v", ep.mapped[10].todo, ep.mapped[10].in.Value)
	}
	if !ep.Image || ep.outIdx != 0 {
		t.Errorf("image output = %v at %d, want the gallery at 0", ep.Image, ep.outIdx)
	}
	if err := ep.buildSnippet("x", "o/n"); err != nil {
		t.Fatal(err)
	}
	g := ep.Backend["gradio"].(map[string]any)
	wantSize := map[string]any{"default_width": 1344, "default_height": 768, "min": 768, "max": 1344, "multiple": 64}
	if diff := cmp.Diff(wantSize, g["size"]); diff != "" {
		t.Errorf("size (-want +got):\n%s", diff)
	}
	wantSteps := map[string]any{"default": 28, "min": 1, "max": 60}
	if diff := cmp.Diff(wantSteps, g["steps"]); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	wantOut := map[string]any{"index": 0, "kind": "gallery", "seed_index": 1}
	if diff := cmp.Diff(wantOut, g["output"]); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
