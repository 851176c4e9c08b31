package gradio_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"

	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "golang.org/x/image/webp" // decodes the webp-format Space results

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// testTimeout bounds every Generate in these tests, so a regression shows
// as a failure rather than a hung test binary.
const testTimeout = 20 * time.Second

// --- app shapes (the layouts the protocol spec documents) ---

// turboEndpoints is the mrfakename Z-Image-Turbo layout: a seed toggle at
// fn_index 0, then generate_image(prompt, height, width, steps, seed,
// randomize_seed) → (Image, seed).
func turboEndpoints(run gradiotest.RunFunc) []gradiotest.Endpoint {
	return []gradiotest.Endpoint{
		{
			APIName: "toggle_seed",
			Inputs:  []gradiotest.Component{{ID: 11, Type: "checkbox", Label: "Randomize seed", Value: true}},
			Outputs: []gradiotest.Component{{ID: 12, Type: "number", Label: "Seed", Value: 42}},
		},
		{
			APIName: "generate_image",
			Inputs: []gradiotest.Component{
				{Type: "textbox", Label: "Prompt", Name: "prompt", Value: ""},
				{Type: "slider", Label: "Height", Name: "height", Value: 1024, Props: map[string]any{"minimum": 64, "maximum": 2048, "step": 16}},
				{Type: "slider", Label: "Width", Name: "width", Value: 1024, Props: map[string]any{"minimum": 64, "maximum": 2048, "step": 16}},
				{Type: "slider", Label: "Steps", Name: "num_inference_steps", Value: 9, Props: map[string]any{"minimum": 1, "maximum": 20, "step": 1, "precision": 0}},
				{ID: 12, Type: "number", Label: "Seed", Value: 42},
				{ID: 11, Type: "checkbox", Label: "Randomize seed", Value: true},
			},
			Outputs: []gradiotest.Component{
				{Type: "image", Label: "Generated Image", Props: map[string]any{"format": "png"}},
				{Type: "number", Label: "Seed Used"},
			},
			Run: run,
		},
	}
}

// turboRun renders width x height from positions 2 and 1 after emitting
// one progress frame per step.
func turboRun(ctx context.Context, c *gradiotest.Call) ([]any, error) {
	h, err := c.Number(1)
	if err != nil {
		return nil, err
	}
	w, err := c.Number(2)
	if err != nil {
		return nil, err
	}
	steps, err := c.Number(3)
	if err != nil {
		return nil, err
	}
	seed, err := c.Number(4)
	if err != nil {
		return nil, err
	}
	if rnd, _ := c.Bool(5); rnd {
		seed = 987654
	}
	for i := 1; i <= int(steps); i++ {
		c.Progress(i, int(steps), "steps")
	}
	return []any{c.PNG(int(w), int(h), int64(seed)), seed}, nil
}

func turboConfig(url string) gradio.Config {
	seedIdx := 1
	return gradio.Config{
		Space:   url,
		APIName: "/generate_image",
		Inputs: []gradio.Input{
			{From: "prompt"}, {From: "height"}, {From: "width"}, {From: "steps"},
			{From: "seed", Default: 42}, {From: "randomize_seed"},
		},
		Output: gradio.Output{SeedIndex: &seedIdx},
		Size:   gradio.SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024, Min: 64, Max: 2048, Multiple: 16},
		Steps:  gradio.StepsConfig{Default: 4, Min: 1, Max: 20},
	}
}

var officialChoices = []any{"1024x1024 ( 1:1 )", "1280x720 ( 16:9 )", "720x1280 ( 9:16 )", "832x1248 ( 2:3 )"}

// officialEndpoints is the Tongyi-MAI layout: generate(prompt, resolution
// dropdown, seed, steps, shift, random_seed, gallery_images) → (Gallery,
// seed string, seed number).
func officialEndpoints() []gradiotest.Endpoint {
	return []gradiotest.Endpoint{{
		APIName: "generate",
		Inputs: []gradiotest.Component{
			{Type: "textbox", Label: "Prompt", Name: "prompt"},
			{Type: "dropdown", Label: "Resolution", Name: "resolution", Value: "1024x1024 ( 1:1 )", Props: map[string]any{"choices": officialChoices}},
			{Type: "number", Label: "Seed", Name: "seed", Value: 42},
			{Type: "slider", Label: "Steps", Name: "steps", Value: 8},
			{Type: "slider", Label: "Time Shift", Name: "shift", Value: 3},
			{Type: "checkbox", Label: "Random Seed", Name: "random_seed", Value: true},
			{Type: "gallery", Label: "Gallery", Name: "gallery_images"},
		},
		Outputs: []gradiotest.Component{
			{Type: "gallery", Label: "Generated Images"},
			{Type: "textbox", Label: "Seed Used"},
			{Type: "number", Label: "Seed"},
		},
		Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			res, err := c.String(1)
			if err != nil {
				return nil, err
			}
			found := false
			for _, ch := range officialChoices {
				found = found || ch == res
			}
			if !found {
				return nil, &gradiotest.AppError{Message: fmt.Sprintf("Value: %s is not in the list of choices", res), Title: "Error"}
			}
			var w, h int
			if _, err := fmt.Sscanf(res, "%dx%d", &w, &h); err != nil {
				return nil, err
			}
			seed, _ := c.Number(2)
			return []any{[]any{gradiotest.GalleryItem(c.PNG(w, h, int64(seed)), nil)}, fmt.Sprint(int64(seed)), seed}, nil
		},
	}}
}

func officialConfig(url string) gradio.Config {
	seedIdx := 2
	return gradio.Config{
		Space:   url,
		APIName: "generate",
		Inputs: []gradio.Input{
			{From: "prompt"}, {From: "size_choice"}, {From: "seed", Default: 42}, {From: "steps"},
			{Value: 3}, {From: "randomize_seed"}, {Value: []any{}},
		},
		Output: gradio.Output{Kind: "gallery", SeedIndex: &seedIdx},
		Steps:  gradio.StepsConfig{Default: 8},
	}
}

// editEndpoints has an Image-input edit endpoint and a Gallery-input one.
func editEndpoints() []gradiotest.Endpoint {
	return []gradiotest.Endpoint{
		{
			APIName: "infer",
			Inputs: []gradiotest.Component{
				{Type: "image", Label: "Input", Name: "input_image"},
				{Type: "textbox", Label: "Prompt", Name: "prompt"},
			},
			Outputs: []gradiotest.Component{{Type: "image", Label: "Result", Props: map[string]any{"format": "png"}}},
			Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
				in, err := c.File(0)
				if err != nil {
					return nil, err
				}
				cfg, err := png.DecodeConfig(bytes.NewReader(in))
				if err != nil {
					return nil, &gradiotest.AppError{Message: "not a png: " + err.Error()}
				}
				return []any{c.PNG(cfg.Width*2, cfg.Height*2, 1)}, nil
			},
		},
		{
			APIName: "infer_multi",
			Inputs: []gradiotest.Component{
				{Type: "gallery", Label: "Images", Name: "images"},
				{Type: "textbox", Label: "Prompt", Name: "prompt"},
			},
			Outputs: []gradiotest.Component{{Type: "gallery", Label: "Result"}},
			Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
				items, _ := c.Input(0).([]any)
				var out []any
				for _, it := range items {
					m, _ := it.(map[string]any)
					if _, ok := m["image"].(map[string]any); !ok || m["caption"] != nil {
						return nil, &gradiotest.AppError{Message: "bad gallery item"}
					}
					out = append(out, gradiotest.GalleryItem(c.PNG(8, 8, int64(len(out))), nil))
				}
				return []any{out}, nil
			},
		},
	}
}

// --- harness ---

type recorder struct {
	mu     sync.Mutex
	events []provider.Event
	ch     chan provider.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan provider.Event, 1024)} }

func (r *recorder) emit(ev provider.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.ch <- ev:
	default:
	}
}

func (r *recorder) types() []provider.EventType {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]provider.EventType, len(r.events))
	for i, e := range r.events {
		out[i] = e.Type
	}
	return out
}

// waitFor blocks until an event of type t arrives.
func (r *recorder) waitFor(t *testing.T, typ provider.EventType) provider.Event {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-r.ch:
			if ev.Type == typ {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s event", typ)
		}
	}
}

func newFake(t *testing.T, opts gradiotest.Options) *gradiotest.Server {
	t.Helper()
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 50 * time.Millisecond
	}
	s := gradiotest.New(opts)
	t.Cleanup(s.Close)
	return s
}

func newProvider(t *testing.T, cfg gradio.Config) *gradio.Provider {
	t.Helper()
	p, err := gradio.New("test", cfg, gradio.Options{UserAgent: "easel-test/1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func generate(t *testing.T, p *gradio.Provider, req *provider.Request, rec *recorder) (*provider.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if req.N == 0 {
		req.N = 1
	}
	if rec == nil {
		rec = newRecorder()
	}
	return p.Generate(ctx, req, rec.emit)
}

func decodeSize(t *testing.T, img provider.Image) (int, int) {
	t.Helper()
	if img.MIME != "image/png" {
		t.Fatalf("MIME %q, want image/png", img.MIME)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img.Data))
	if err != nil {
		t.Fatalf("decoding result: %v", err)
	}
	return cfg.Width, cfg.Height
}

func wantKind(t *testing.T, err error, kind provider.ErrorKind) *provider.Error {
	t.Helper()
	pe, ok := provider.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	if pe.Kind != kind {
		t.Fatalf("kind %v (%v), want %v", pe.Kind, err, kind)
	}
	return pe
}

func seed(v int64) *int64 { return &v }

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// --- tests ---

func TestGenerateTurboNonSquare(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(turboRun)})
	p := newProvider(t, turboConfig(fake.URL))
	rec := newRecorder()
	res, err := generate(t, p, &provider.Request{JobID: "j1", Prompt: "a red fox", Width: 1280, Height: 720, Steps: 3, Seed: seed(7), Index: 2}, rec)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if len(res.Images) != 1 {
		t.Fatalf("%d images", len(res.Images))
	}
	if w, h := decodeSize(t, res.Images[0]); w != 1280 || h != 720 {
		t.Errorf("image is %dx%d, want 1280x720 (height/width order)", w, h)
	}
	if s := res.Images[0].Seed; s == nil || *s != 7 {
		t.Errorf("seed %v, want 7", s)
	}
	joins := fake.Joins()
	if len(joins) != 1 {
		t.Fatalf("%d joins", len(joins))
	}
	j := joins[0]
	if res.UpstreamID != j.EventID {
		t.Errorf("UpstreamID %q, join event %q", res.UpstreamID, j.EventID)
	}
	if diff := cmp.Diff([]any{"a red fox", 720.0, 1280.0, 3.0, 7.0, false}, j.Data); diff != "" {
		t.Errorf("join data (-want +got):\n%s", diff)
	}
	if j.FnIndex != 1 || len(j.SessionHash) < 10 {
		t.Errorf("fn_index %d, session %q", j.FnIndex, j.SessionHash)
	}
	if !bytes.Contains(j.Body, []byte(`["a red fox",720,1280,3,7,false]`)) {
		t.Errorf("numbers not sent as JSON integers: %s", j.Body)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(j.Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"data", "event_data", "fn_index", "trigger_id", "session_hash"} {
		if _, ok := body[k]; !ok {
			t.Errorf("join body lacks %q: %s", k, j.Body)
		}
	}
	if got := j.Header.Get("x-gradio-user"); got != "api" {
		t.Errorf("x-gradio-user %q", got)
	}
	if got := j.Header.Get("User-Agent"); got != "easel-test/1" {
		t.Errorf("User-Agent %q", got)
	}

	// Event order: accepted (with the join's event id), queued, started,
	// then progress with rising steps.
	types := rec.types()
	if len(types) < 4 || types[0] != provider.EventAccepted || types[1] != provider.EventQueued || types[2] != provider.EventStarted {
		t.Fatalf("events %v", types)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if a := rec.events[0]; a.UpstreamID != j.EventID || a.Index != 2 {
		t.Errorf("accepted event %+v, want upstream id %q", a, j.EventID)
	}
	q := rec.events[1]
	if q.Position != 1 || q.Source != "upstream" || q.Index != 2 {
		t.Errorf("queued event %+v", q)
	}
	last := 0
	for _, ev := range rec.events[3:] {
		if ev.Type != provider.EventProgress {
			t.Errorf("unexpected %s after progress", ev.Type)
			continue
		}
		if ev.Total != 3 || ev.Step < last || ev.Index != 2 || ev.Unit != "steps" {
			t.Errorf("progress %+v after step %d", ev, last)
		}
		last = ev.Step
	}
	if last != 3 {
		t.Errorf("last progress step %d, want 3", last)
	}
}

func TestGenerateTurboRandomSeed(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(turboRun)})
	p := newProvider(t, turboConfig(fake.URL))
	res, err := generate(t, p, &provider.Request{Prompt: "cat"}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if w, h := decodeSize(t, res.Images[0]); w != 1024 || h != 1024 {
		t.Errorf("default size %dx%d", w, h)
	}
	if s := res.Images[0].Seed; s == nil || *s != 987654 {
		t.Errorf("seed %v, want the app's random 987654", s)
	}
	if diff := cmp.Diff([]any{"cat", 1024.0, 1024.0, 4.0, 42.0, true}, fake.Joins()[0].Data); diff != "" {
		t.Errorf("join data (-want +got):\n%s", diff)
	}
	// The cached /config serves the second job.
	if _, err := generate(t, p, &provider.Request{Prompt: "dog"}, nil); err != nil {
		t.Fatal(err)
	}
	if n := fake.Requests("/config"); n != 1 {
		t.Errorf("/config fetched %d times, want 1 (cached)", n)
	}
	js := fake.Joins()
	if js[0].SessionHash == js[1].SessionHash {
		t.Error("session hash reused across jobs")
	}
}

func TestGenerateGallerySizeChoice(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Endpoints: officialEndpoints()})
	p := newProvider(t, officialConfig(fake.URL))
	tests := []struct {
		w, h   int
		choice string
	}{
		{1920, 1080, "1280x720 ( 16:9 )"},
		{720, 1280, "720x1280 ( 9:16 )"},
		{1024, 1536, "832x1248 ( 2:3 )"},
		{0, 0, "1024x1024 ( 1:1 )"},
	}
	for i, tt := range tests {
		res, err := generate(t, p, &provider.Request{Prompt: "x", Width: tt.w, Height: tt.h, Seed: seed(5)}, nil)
		if err != nil {
			t.Fatalf("%dx%d: %v", tt.w, tt.h, err)
		}
		data := fake.Joins()[i].Data
		if data[1] != tt.choice {
			t.Errorf("%dx%d: sent %v, want %q", tt.w, tt.h, data[1], tt.choice)
		}
		if diff := cmp.Diff([]any{"x", tt.choice, 5.0, 8.0, 3.0, false, []any{}}, data); diff != "" {
			t.Errorf("join data (-want +got):\n%s", diff)
		}
		var cw, ch int
		fmt.Sscanf(tt.choice, "%dx%d", &cw, &ch)
		if w, h := decodeSize(t, res.Images[0]); w != cw || h != ch {
			t.Errorf("image %dx%d, want %dx%d", w, h, cw, ch)
		}
		if s := res.Images[0].Seed; s == nil || *s != 5 {
			t.Errorf("seed %v", s)
		}
	}
	caps := p.Capabilities()
	if diff := cmp.Diff([]string{"1024x1024", "1280x720", "720x1280", "832x1248"}, caps.Size.Choices); diff != "" {
		t.Errorf("choices from the live config (-want +got):\n%s", diff)
	}
}

func TestGenerateImageEditUpload(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Endpoints: editEndpoints()})
	p := newProvider(t, gradio.Config{Space: fake.URL, APIName: "infer", Inputs: []gradio.Input{{From: "image"}, {From: "prompt"}}})
	in := pngBytes(t, 10, 6)
	res, err := generate(t, p, &provider.Request{Kind: provider.KindEdit, Prompt: "sharpen", Images: []provider.InputImage{{Data: in, MIME: "image/png", Name: "photo"}}}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if w, h := decodeSize(t, res.Images[0]); w != 20 || h != 12 {
		t.Errorf("result %dx%d, want 20x12", w, h)
	}
	ups := fake.Uploads()
	if len(ups) != 1 || ups[0].Name != "photo.png" || !bytes.Equal(ups[0].Data, in) {
		t.Fatalf("uploads %+v", ups)
	}
	fd, ok := fake.Joins()[0].Data[0].(map[string]any)
	if !ok {
		t.Fatalf("image input %T", fake.Joins()[0].Data[0])
	}
	want := map[string]any{"path": ups[0].Path, "orig_name": "photo.png", "meta": map[string]any{"_type": "gradio.FileData"}}
	if diff := cmp.Diff(want, fd); diff != "" {
		t.Errorf("FileData (-want +got):\n%s", diff)
	}

	// A text-only request to an edit backend is refused before any call.
	_, err = generate(t, p, &provider.Request{Prompt: "no image"}, nil)
	wantKind(t, err, provider.KindBadRequest)
}

func TestGenerateGalleryInput(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Endpoints: editEndpoints()})
	p := newProvider(t, gradio.Config{Space: fake.URL, APIName: "infer_multi", Inputs: []gradio.Input{{From: "images"}, {From: "prompt"}}})
	imgs := []provider.InputImage{{Data: pngBytes(t, 2, 2), MIME: "image/png", Name: "a.png"}, {Data: pngBytes(t, 3, 3), MIME: "image/png", Name: "b.png"}}
	res, err := generate(t, p, &provider.Request{Kind: provider.KindEdit, Prompt: "merge", Images: imgs}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if len(res.Images) != 1 {
		t.Errorf("%d images, want N=1", len(res.Images))
	}
	gal, _ := fake.Joins()[0].Data[0].([]any)
	if len(gal) != 2 || len(fake.Uploads()) != 2 {
		t.Fatalf("gallery %v, uploads %d", gal, len(fake.Uploads()))
	}
}

func TestTokenOnEveryRequest(t *testing.T) {
	t.Parallel()
	const token = "hf_secret_token_value"
	var mu sync.Mutex
	seen := map[string]string{}
	hook := func(w http.ResponseWriter, r *http.Request) bool {
		key := r.URL.Path
		if i := strings.Index(key, "/file="); i >= 0 {
			key = key[:i+len("/file=")]
		}
		mu.Lock()
		seen[key] = r.Header.Get("Authorization")
		mu.Unlock()
		return false
	}
	eps := append(editEndpoints(), gradiotest.Endpoint{
		APIName: "slow",
		Inputs:  []gradiotest.Component{{Type: "textbox", Label: "Prompt"}},
		Outputs: []gradiotest.Component{{Type: "image", Label: "Out"}},
		Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			c.Progress(0, 1, "steps")
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	fake := newFake(t, gradiotest.Options{Endpoints: eps, Token: token, Hook: hook})
	cfg := gradio.Config{Space: fake.URL, APIName: "infer", Token: token, Inputs: []gradio.Input{{From: "image"}, {From: "prompt"}}}
	p := newProvider(t, cfg)
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	_, err := generate(t, p, &provider.Request{Kind: provider.KindEdit, Prompt: "x", Images: []provider.InputImage{{Data: pngBytes(t, 4, 4), MIME: "image/png", Name: "i.png"}}}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	// Cancel and reset carry it too.
	slow := newProvider(t, gradio.Config{Space: fake.URL, APIName: "slow", Token: token, Inputs: []gradio.Input{{From: "prompt"}}})
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := slow.Generate(ctx, &provider.Request{Prompt: "x", N: 1}, rec.emit)
		done <- err
	}()
	rec.waitFor(t, provider.EventProgress)
	cancel()
	select {
	case err := <-done:
		wantKind(t, err, provider.KindCanceled)
		if strings.Contains(err.Error(), token) {
			t.Error("error text contains the token")
		}
	case <-time.After(testTimeout):
		t.Fatal("Generate did not return after cancel")
	}
	mu.Lock()
	prefix := "/gradio_api"
	for _, path := range []string{"/config", prefix + "/info", prefix + "/upload", prefix + "/queue/join", prefix + "/queue/data", prefix + "/file=", prefix + "/cancel", prefix + "/reset"} {
		if got, ok := seen[path]; !ok || got != "Bearer "+token {
			t.Errorf("%s: Authorization %q (seen %v)", path, got, ok)
		}
	}
	mu.Unlock()

	// A wrong token is a configuration error, and the token is never echoed.
	bad := newProvider(t, gradio.Config{Space: fake.URL, APIName: "infer", Token: "hf_wrong", Inputs: cfg.Inputs})
	err = bad.Check(context.Background())
	pe := wantKind(t, err, provider.KindConfig)
	if strings.Contains(err.Error(), "hf_wrong") || strings.Contains(pe.Message, "hf_wrong") {
		t.Errorf("error echoes the token: %v", err)
	}
}

func TestPrefixless4x(t *testing.T) {
	t.Parallel()
	fake := newFake(t, gradiotest.Options{Version: 4, Endpoints: turboEndpoints(turboRun)})
	p := newProvider(t, turboConfig(fake.URL))
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	res, err := generate(t, p, &provider.Request{Prompt: "x", Width: 512, Height: 768}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if w, h := decodeSize(t, res.Images[0]); w != 512 || h != 768 {
		t.Errorf("image %dx%d", w, h)
	}
	if n := fake.Requests("/gradio_api/queue/join"); n != 0 {
		t.Errorf("%d prefixed joins on a 4.x app", n)
	}
	if j := fake.Joins(); len(j) != 1 || j[0].Path != "/queue/join" {
		t.Errorf("joins %+v", j)
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return turboRun(ctx, c)
	}
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(run), Concurrency: 1, MaxQueue: 1})
	p := newProvider(t, turboConfig(fake.URL))

	type outcome struct {
		res *provider.Result
		err error
	}
	start := func(rec *recorder) chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			r, err := p.Generate(ctx, &provider.Request{Prompt: "x", Width: 64, Height: 64, N: 1}, rec.emit)
			ch <- outcome{r, err}
		}()
		return ch
	}
	recA, recB := newRecorder(), newRecorder()
	a := start(recA)
	recA.waitFor(t, provider.EventStarted)
	b := start(recB)
	recB.waitFor(t, provider.EventQueued)

	_, err := generate(t, p, &provider.Request{Prompt: "x", Width: 64, Height: 64}, nil)
	pe := wantKind(t, err, provider.KindUnavailable)
	// Gradio's 503 carries no Retry-After: the provider leaves it to the
	// runner's backoff rather than inventing one.
	if !pe.NotStarted || pe.RetryAfter != 0 || pe.Message != "backend queue is full" {
		t.Errorf("queue full error %+v", pe)
	}
	close(release)
	for _, ch := range []chan outcome{a, b} {
		if o := <-ch; o.err != nil || len(o.res.Images) != 1 {
			t.Errorf("queued job: %v", o.err)
		}
	}
}

func TestCompletionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		err   error
		kind  provider.ErrorKind
		msg   string
		title string
		retry time.Duration
	}{
		{"zerogpu quota", gradiotest.QuotaError(14*time.Minute + 33*time.Second), provider.KindRateLimited, "", "ZeroGPU quota exceeded", 14*time.Minute + 33*time.Second},
		{"hidden", gradiotest.ErrHidden, provider.KindUpstream, "upstream error (details hidden by the Space)", "Error", 0},
		{"app error", &gradiotest.AppError{Message: "<b>Prompt</b> refused &amp; logged", Title: "Safety"}, provider.KindUpstream, "Prompt refused & logged", "Safety", 0},
		{"stream dropped", gradiotest.ErrDropStream, provider.KindUpstream, "stream closed before completion", "", 0},
		{"server stopped", gradiotest.ErrServerStopped, provider.KindUnavailable, "Server stopped unexpectedly.", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) { return nil, tt.err }
			fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(run)})
			p := newProvider(t, turboConfig(fake.URL))
			_, err := generate(t, p, &provider.Request{Prompt: "x"}, nil)
			pe := wantKind(t, err, tt.kind)
			if tt.msg != "" && pe.Message != tt.msg {
				t.Errorf("message %q, want %q", pe.Message, tt.msg)
			}
			if pe.Title != tt.title || pe.RetryAfter != tt.retry {
				t.Errorf("title %q retry %v, want %q %v", pe.Title, pe.RetryAfter, tt.title, tt.retry)
			}
			if pe.NotStarted {
				t.Error("a failure after join is marked NotStarted")
			}
		})
	}
}

func TestStallTimeout(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		c.SilenceHeartbeats()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(run), Heartbeat: 40 * time.Millisecond})
	cfg := turboConfig(fake.URL)
	cfg.StallTimeout = 300 * time.Millisecond
	p := newProvider(t, cfg)
	start := time.Now()
	_, err := generate(t, p, &provider.Request{Prompt: "x"}, nil)
	pe := wantKind(t, err, provider.KindTimeout)
	if !strings.Contains(pe.Message, "upstream sent nothing for 300ms") {
		t.Errorf("message %q", pe.Message)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stall detected after %v", d)
	}
	if c := fake.Cancels(); len(c) != 1 {
		t.Errorf("%d cancels after a stall, want 1", len(c))
	}
}

func TestHeartbeatsKeepAlive(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		select {
		case <-time.After(900 * time.Millisecond): // the job's own run time, not synchronisation
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return turboRun(ctx, c)
	}
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(run), Heartbeat: 40 * time.Millisecond})
	cfg := turboConfig(fake.URL)
	cfg.StallTimeout = 300 * time.Millisecond
	p := newProvider(t, cfg)
	if _, err := generate(t, p, &provider.Request{Prompt: "x", Width: 64, Height: 64, Steps: 1}, nil); err != nil {
		t.Fatalf("heartbeats did not keep the stream alive: %v", err)
	}
}

func TestCancelViaContext(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		c.Progress(0, 9, "steps")
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(run)})
	p := newProvider(t, turboConfig(fake.URL))
	rec := newRecorder()
	cause := errors.New("client went away")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Generate(ctx, &provider.Request{Prompt: "x", N: 1}, rec.emit)
		done <- err
	}()
	rec.waitFor(t, provider.EventProgress)
	cancel(cause)
	var err error
	select {
	case err = <-done:
	case <-time.After(testTimeout):
		t.Fatal("Generate did not return after cancel")
	}
	wantKind(t, err, provider.KindCanceled)
	if !errors.Is(err, cause) {
		t.Errorf("error %v does not wrap the context's cause", err)
	}
	cs := fake.Cancels()
	if len(cs) != 1 {
		t.Fatalf("%d cancels", len(cs))
	}
	j := fake.Joins()[0]
	if cs[0].SessionHash != j.SessionHash || cs[0].FnIndex != j.FnIndex || cs[0].EventID != j.EventID {
		t.Errorf("cancel %+v does not match join %+v", cs[0], j)
	}
	var body map[string]any
	if err := json.Unmarshal(cs[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 3 {
		t.Errorf("cancel body %s", cs[0].Body)
	}
	if n := fake.Requests("/reset"); n != 1 {
		t.Errorf("%d resets", n)
	}
}

// driftHook makes the first /config answer disagree with the app: mutate
// edits the decoded config. Later requests see the real app.
// fetches counts the client's /config requests (the fake's own counter
// also sees the hook's inner call).
func driftHook(fake **gradiotest.Server, fetches *atomic.Int32, mutate func(cfg map[string]any)) func(http.ResponseWriter, *http.Request) bool {
	var inner atomic.Bool
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/config" || inner.Load() {
			return false
		}
		if fetches.Add(1) > 1 {
			return false
		}
		inner.Store(true)
		defer inner.Store(false)
		rec := httptest.NewRecorder()
		(*fake).ServeHTTP(rec, r)
		var cfg map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &cfg); err != nil {
			http.Error(w, err.Error(), 500)
			return true
		}
		mutate(cfg)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cfg)
		return true
	}
}

func TestEndpointDrift(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		preload bool // cache the stale config through Check first
		mutate  func(cfg map[string]any)
	}{
		{"stale fn_index gives join 500", false, func(cfg map[string]any) {
			for _, d := range cfg["dependencies"].([]any) {
				m := d.(map[string]any)
				m["id"] = m["id"].(float64) + 10
			}
		}},
		{"api_name missing from cached config", true, func(cfg map[string]any) {
			for _, d := range cfg["dependencies"].([]any) {
				m := d.(map[string]any)
				if m["api_name"] == "generate_image" {
					m["api_name"] = "generate_image_old"
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var fake *gradiotest.Server
			var fetches atomic.Int32
			fake = newFake(t, gradiotest.Options{Endpoints: turboEndpoints(turboRun), Hook: driftHook(&fake, &fetches, tt.mutate)})
			p := newProvider(t, turboConfig(fake.URL))
			if tt.preload {
				wantKind(t, p.Check(context.Background()), provider.KindConfig)
			}
			if _, err := generate(t, p, &provider.Request{Prompt: "x", Width: 64, Height: 64}, nil); err != nil {
				t.Fatalf("Generate after drift: %v", err)
			}
			if n := fetches.Load(); n != 2 {
				t.Errorf("/config fetched %d times, want 2", n)
			}
			if j := fake.Joins(); len(j) != 1 || j[0].FnIndex != 1 {
				t.Errorf("joins %+v", j)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  gradiotest.Options
		edit  func(*gradio.Config)
		kind  provider.ErrorKind
		valid bool
	}{
		{"ok", gradiotest.Options{}, nil, 0, true},
		{"websocket app", gradiotest.Options{Protocol: "ws"}, nil, provider.KindConfig, false},
		{"no protocol", gradiotest.Options{Protocol: "none"}, nil, provider.KindConfig, false},
		{"legacy sse", gradiotest.Options{Protocol: "sse"}, nil, provider.KindConfig, false},
		{"unknown api name", gradiotest.Options{}, func(c *gradio.Config) { c.APIName = "nope" }, provider.KindConfig, false},
		{"fn_index", gradiotest.Options{}, func(c *gradio.Config) { c.APIName = ""; one := 1; c.FnIndex = &one }, 0, true},
		{"too few inputs", gradiotest.Options{}, func(c *gradio.Config) { c.Inputs = c.Inputs[:5] }, provider.KindConfig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Endpoints = turboEndpoints(turboRun)
			fake := newFake(t, tt.opts)
			cfg := turboConfig(fake.URL)
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			err := newProvider(t, cfg).Check(context.Background())
			if tt.valid {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			wantKind(t, err, tt.kind)
		})
	}
}

func TestJoinHTTPErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		kind   provider.ErrorKind
		retry  time.Duration
	}{
		{"429 html", 429, http.Header{"Retry-After": {"17"}, "Content-Type": {"text/html"}}, "<html><body><h1>429 Too Many Requests</h1></body></html>", provider.KindRateLimited, 17 * time.Second},
		{"429 date", 429, http.Header{"Retry-After": {"in-2m"}}, "slow down", provider.KindRateLimited, 2 * time.Minute},
		{"503 html sleeping", 503, nil, "<html>Space is sleeping</html>", provider.KindUnavailable, 0},
		{"401", 401, nil, "<html>Unauthorized</html>", provider.KindConfig, 0},
		{"500 twice", 500, nil, "Internal Server Error", provider.KindConfig, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hook := func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/queue/join") {
					return false
				}
				for k, v := range tt.header {
					if v[0] == "in-2m" { // an HTTP date two minutes after the answer
						v = []string{time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)}
					}
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
				return true
			}
			fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(turboRun), Hook: hook})
			p := newProvider(t, turboConfig(fake.URL))
			_, err := generate(t, p, &provider.Request{Prompt: "x"}, nil)
			pe := wantKind(t, err, tt.kind)
			if !pe.NotStarted {
				t.Error("join refusal not marked NotStarted")
			}
			if d := pe.RetryAfter - tt.retry; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("RetryAfter %v, want about %v", pe.RetryAfter, tt.retry)
			}
		})
	}
}

func TestJoinValidation422(t *testing.T) {
	t.Parallel()
	eps := turboEndpoints(turboRun)
	eps[1].Validate = func(data []any) []gradiotest.Invalid {
		return []gradiotest.Invalid{{Parameter: "prompt", Message: "Prompt too long"}}
	}
	fake := newFake(t, gradiotest.Options{Endpoints: eps})
	p := newProvider(t, turboConfig(fake.URL))
	_, err := generate(t, p, &provider.Request{Prompt: "x"}, nil)
	pe := wantKind(t, err, provider.KindBadRequest)
	if !strings.Contains(pe.Message, "prompt: Prompt too long") {
		t.Errorf("message %q", pe.Message)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProvider(t, turboConfig("http://"+addr))
	_, err = generate(t, p, &provider.Request{Prompt: "x"}, nil)
	pe := wantKind(t, err, provider.KindUnavailable)
	if !pe.NotStarted {
		t.Error("refused connection not marked NotStarted")
	}
}

func TestOutputVariants(t *testing.T) {
	t.Parallel()
	external := pngBytes(t, 5, 3)
	var extAuth sync.Map
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		extAuth.Store("auth", r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(external)
	}))
	t.Cleanup(ext.Close)
	// Runs after the parallel subtests: the token must not leave the app's host.
	t.Cleanup(func() {
		if v, ok := extAuth.Load("auth"); !ok || v.(string) != "" {
			t.Errorf("external host got Authorization %q (requested: %v)", v, ok)
		}
	})
	small := pngBytes(t, 7, 7)
	tests := []struct {
		name    string
		out     func(c *gradiotest.Call) any
		w, h    int
		kind    provider.ErrorKind
		wantErr bool
		maxSize int64
	}{
		{"data URI", func(c *gradiotest.Call) any {
			return map[string]any{"path": nil, "url": "data:image/png;base64," + b64(small), "meta": map[string]any{"_type": "gradio.FileData"}}
		}, 7, 7, 0, false, 0},
		{"relative url", func(c *gradiotest.Call) any {
			fd := c.StoreFile("r.png", small)
			return map[string]any{"path": fd["path"], "url": "/gradio_api/file=" + fd["path"].(string), "meta": map[string]any{"_type": "gradio.FileData"}}
		}, 7, 7, 0, false, 0},
		{"path only", func(c *gradiotest.Call) any {
			fd := c.StoreFile("p.png", small)
			return map[string]any{"path": fd["path"], "url": nil, "meta": map[string]any{"_type": "gradio.FileData"}}
		}, 7, 7, 0, false, 0},
		{"external host", func(c *gradiotest.Call) any {
			return map[string]any{"path": ext.URL + "/x.png", "url": ext.URL + "/x.png", "meta": map[string]any{"_type": "gradio.FileData"}}
		}, 5, 3, 0, false, 0},
		{"not an image", func(c *gradiotest.Call) any { return c.StoreFile("notes.txt", []byte("hello, not an image")) }, 0, 0, provider.KindProtocol, true, 0},
		{"over size limit", func(c *gradiotest.Call) any { return c.PNG(64, 64, 1) }, 0, 0, provider.KindUpstream, true, 100},
		{"expired file", func(c *gradiotest.Call) any {
			return map[string]any{"path": "/tmp/gradio/gone/image.png", "url": c.FileURL("/tmp/gradio/gone/image.png"), "meta": map[string]any{"_type": "gradio.FileData"}}
		}, 0, 0, provider.KindUpstream, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eps := []gradiotest.Endpoint{{
				APIName: "gen",
				Inputs:  []gradiotest.Component{{Type: "textbox", Label: "Prompt"}},
				Outputs: []gradiotest.Component{{Type: "json", Label: "Info"}, {Type: "image", Label: "Out"}},
				Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
					return []any{map[string]any{"ok": true}, tt.out(c)}, nil
				},
			}}
			fake := newFake(t, gradiotest.Options{Endpoints: eps, Token: "hf_tok"})
			p := newProvider(t, gradio.Config{Space: fake.URL, APIName: "gen", Token: "hf_tok", Inputs: []gradio.Input{{From: "prompt"}}, MaxResultBytes: tt.maxSize})
			res, err := generate(t, p, &provider.Request{Prompt: "x"}, nil)
			if tt.wantErr {
				wantKind(t, err, tt.kind)
				return
			}
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if w, h := decodeSize(t, res.Images[0]); w != tt.w || h != tt.h {
				t.Errorf("image %dx%d, want %dx%d", w, h, tt.w, tt.h)
			}
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestShapes runs one job on each of the fake's Space layouts, with the
// input mapping an operator would configure for the real Space.
func TestShapes(t *testing.T) {
	t.Parallel()
	idx := func(i int) *int { return &i }
	editImg := pngBytes(t, 24, 40)
	tests := []struct {
		name      string
		endpoints []gradiotest.Endpoint
		version   int
		cfg       gradio.Config
		req       provider.Request
		w, h      int
		mime      string
		seed      int64
		data      []any // expected join data, when checked
	}{
		{
			name:      "z-image turbo",
			endpoints: gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 3}),
			cfg: gradio.Config{APIName: "generate_image", Output: gradio.Output{SeedIndex: idx(1)},
				Inputs: []gradio.Input{{From: "prompt"}, {From: "height"}, {From: "width"}, {From: "steps", Default: 9}, {From: "seed", Default: 42}, {From: "randomize_seed"}}},
			req: provider.Request{Prompt: "fox", Width: 1280, Height: 768, Seed: seed(11)}, w: 1280, h: 768, mime: "image/png", seed: 11,
			data: []any{"fox", 768.0, 1280.0, 9.0, 11.0, false},
		},
		{
			name:      "z-image official webp, 5.x",
			endpoints: gradiotest.ZImageOfficial(gradiotest.Behavior{Format: "webp"}),
			version:   5,
			cfg: gradio.Config{APIName: "/generate", Output: gradio.Output{Kind: "gallery", SeedIndex: idx(2)},
				Inputs: []gradio.Input{{From: "prompt"}, {From: "size_choice"}, {From: "seed", Default: 42}, {From: "steps", Default: 8}, {Value: 3}, {From: "randomize_seed"}, {Value: []any{}}}},
			req: provider.Request{Prompt: "fox", Width: 1344, Height: 576, Seed: seed(3)}, w: 1344, h: 576, mime: "image/webp", seed: 3,
			data: []any{"fox", "1344x576 ( 21:9 )", 3.0, 8.0, 3.0, false, []any{}},
		},
		{
			name:      "flux schnell, image by index",
			endpoints: gradiotest.FluxSchnell(gradiotest.Behavior{Steps: 2}),
			cfg: gradio.Config{APIName: "infer", Output: gradio.Output{Index: idx(0), Kind: "image", SeedIndex: idx(1)},
				Inputs: []gradio.Input{{From: "prompt"}, {From: "seed"}, {From: "randomize_seed"}, {From: "width"}, {From: "height"}, {From: "steps"}},
				Size:   gradio.SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024}, Steps: gradio.StepsConfig{Default: 4}},
			req: provider.Request{Prompt: "fox", Width: 512, Height: 256, Steps: 2, Seed: seed(5)}, w: 512, h: 256, mime: "image/png", seed: 5,
			data: []any{"fox", 5.0, false, 512.0, 256.0, 2.0},
		},
		{
			name:      "image edit",
			endpoints: gradiotest.ImageEdit(gradiotest.Behavior{Steps: 1}),
			cfg: gradio.Config{APIName: "infer", Output: gradio.Output{SeedIndex: idx(1)},
				Inputs: []gradio.Input{{From: "image"}, {From: "prompt"}, {From: "seed"}, {From: "randomize_seed"}, {Value: 4.0, Type: "float"}, {From: "steps", Default: 20}}},
			req: provider.Request{Kind: provider.KindEdit, Prompt: "invert", Seed: seed(9), Images: []provider.InputImage{{Data: editImg, MIME: "image/png", Name: "in.png"}}},
			w:   24, h: 40, mime: "image/png", seed: 9,
		},
		{
			name:      "state input, 4.x",
			endpoints: gradiotest.StatefulGenerate(gradiotest.Behavior{}),
			version:   4,
			cfg:       gradio.Config{APIName: "generate", Inputs: []gradio.Input{{From: "prompt"}, {Value: nil}, {From: "width"}, {From: "height"}}},
			req:       provider.Request{Prompt: "p", Width: 256, Height: 320}, w: 256, h: 320, mime: "image/png", seed: -1,
			data: []any{"p", nil, 256.0, 320.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t, gradiotest.Options{Endpoints: tt.endpoints, Version: tt.version})
			cfg := tt.cfg
			cfg.Space = fake.URL
			p := newProvider(t, cfg)
			if err := p.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			req := tt.req
			res, err := generate(t, p, &req, nil)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			img := res.Images[0]
			if img.MIME != tt.mime {
				t.Fatalf("MIME %q, want %q", img.MIME, tt.mime)
			}
			cfgImg, _, err := image.DecodeConfig(bytes.NewReader(img.Data))
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if cfgImg.Width != tt.w || cfgImg.Height != tt.h {
				t.Errorf("image %dx%d, want %dx%d", cfgImg.Width, cfgImg.Height, tt.w, tt.h)
			}
			switch {
			case tt.seed < 0 && img.Seed != nil:
				t.Errorf("seed %d reported without a seed output", *img.Seed)
			case tt.seed >= 0 && (img.Seed == nil || *img.Seed != tt.seed):
				t.Errorf("seed %v, want %d", img.Seed, tt.seed)
			}
			if tt.data != nil {
				if diff := cmp.Diff(tt.data, fake.Joins()[0].Data); diff != "" {
					t.Errorf("join data (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestGeneratorPreviews(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		c.Generating([]any{c.PNG(4, 4, 1), 1})
		c.Generating([]any{c.PNG(4, 4, 1), 2}) // image unchanged: no new preview
		c.Generating([]any{c.PNG(6, 6, 2), 3})
		return []any{c.PNG(8, 8, 3), 3}, nil
	}
	eps := turboEndpoints(run)
	fake := newFake(t, gradiotest.Options{Endpoints: eps})
	p := newProvider(t, turboConfig(fake.URL))
	rec := newRecorder()
	res, err := generate(t, p, &provider.Request{Prompt: "x", Index: 1}, rec)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if w, h := decodeSize(t, res.Images[0]); w != 8 || h != 8 {
		t.Errorf("final image %dx%d", w, h)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var sizes []int
	for _, ev := range rec.events {
		if ev.Type != provider.EventPreview {
			continue
		}
		if ev.Index != 1 {
			t.Errorf("preview index %d", ev.Index)
		}
		w, _ := decodeSize(t, provider.Image{Data: ev.Data, MIME: ev.MIME})
		sizes = append(sizes, w)
	}
	if diff := cmp.Diff([]int{4, 6}, sizes); diff != "" {
		t.Errorf("preview widths (-want +got):\n%s", diff)
	}
}

// TestCancelDuringJoin covers a client that leaves while the join request is
// still in flight: the Space has queued the event by the time it answers,
// so easel must learn its id and cancel it rather than abandon it.
func TestCancelDuringJoin(t *testing.T) {
	t.Parallel()
	joinArrived := make(chan struct{})
	releaseJoin := make(chan struct{})
	var once sync.Once
	hook := func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/queue/join") {
			once.Do(func() { close(joinArrived) })
			<-releaseJoin // hold the answer until the caller has gone
		}
		return false
	}
	blocked := func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fake := newFake(t, gradiotest.Options{Endpoints: turboEndpoints(blocked), Hook: hook})
	p := newProvider(t, turboConfig(fake.URL))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Generate(ctx, &provider.Request{Prompt: "x", N: 1}, func(provider.Event) {})
		done <- err
	}()
	select {
	case <-joinArrived:
	case <-time.After(testTimeout):
		t.Fatal("join never reached the fake")
	}
	cancel()
	close(releaseJoin)
	select {
	case err := <-done:
		wantKind(t, err, provider.KindCanceled)
	case <-time.After(testTimeout):
		t.Fatal("Generate did not return after cancel")
	}
	cs := fake.Cancels()
	if len(cs) != 1 {
		t.Fatalf("%d cancels after a disconnect during join, want 1", len(cs))
	}
	j := fake.Joins()[0]
	if cs[0].EventID == "" || cs[0].EventID != j.EventID || cs[0].SessionHash != j.SessionHash {
		t.Errorf("cancel %+v does not name the joined event %+v", cs[0], j)
	}
}

// TestMaskInput: an inpainting endpoint gets the edit's mask, uploaded like
// the image, at the position of the input that takes it; without a mask the
// input's default (null) is sent.
func TestMaskInput(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var masks []int // bytes of the mask each call received; -1 for null
	ep := gradiotest.Endpoint{
		APIName: "inpaint",
		Inputs: []gradiotest.Component{
			{ID: 3, Type: "image", Label: "Image", Name: "image"},
			{ID: 5, Type: "image", Label: "Mask", Name: "mask"},
			{ID: 7, Type: "textbox", Label: "Prompt", Name: "prompt"},
		},
		Outputs: []gradiotest.Component{{ID: 9, Type: "image", Label: "Result"}},
		Run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			if _, err := c.File(0); err != nil {
				return nil, err
			}
			n := -1
			if c.Input(1) != nil {
				m, err := c.File(1)
				if err != nil {
					return nil, err
				}
				n = len(m)
			}
			mu.Lock()
			masks = append(masks, n)
			mu.Unlock()
			return []any{c.PNG(8, 8, 1)}, nil
		},
	}
	fake := newFake(t, gradiotest.Options{Endpoints: []gradiotest.Endpoint{ep}})
	p := newProvider(t, gradio.Config{
		Space:   fake.URL,
		APIName: "/inpaint",
		Inputs:  []gradio.Input{{From: "image"}, {From: "mask"}, {From: "prompt"}},
		Output:  gradio.Output{Kind: "image"},
	})
	img := provider.InputImage{Data: pngBytes(t, 8, 8), MIME: "image/png", Name: "in.png"}
	mask := provider.InputImage{Data: pngBytes(t, 8, 4), MIME: "image/png", Name: "mask.png"}
	if _, err := generate(t, p, &provider.Request{Kind: provider.KindEdit, Prompt: "fill", Images: []provider.InputImage{img}, Mask: &mask}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(t, p, &provider.Request{Kind: provider.KindEdit, Prompt: "fill", Images: []provider.InputImage{img}}, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(masks) != 2 || masks[0] != len(mask.Data) || masks[1] != -1 {
		t.Errorf("masks received %v, want [%d -1]", masks, len(mask.Data))
	}
	if n := len(fake.Uploads()); n != 3 {
		t.Errorf("%d files uploaded, want 3 (image and mask, then image)", n)
	}
}
