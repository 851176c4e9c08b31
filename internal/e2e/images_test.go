package e2e

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

func TestGenerateB64JSON(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:          modelID,
		Prompt:         "a red fox in fresh snow",
		Size:           "640x512",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatB64JSON,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 {
		t.Fatalf("got %d images, want 1", len(resp.Data))
	}
	if resp.Data[0].URL != "" {
		t.Errorf("b64_json answer also carries a url: %q", resp.Data[0].URL)
	}
	pc := decodeB64PNG(t, resp.Data[0].B64JSON)
	if pc.Width != 640 || pc.Height != 512 {
		t.Errorf("image is %dx%d, want 640x512", pc.Width, pc.Height)
	}
	if resp.Size != "640x512" || resp.OutputFormat != "png" {
		t.Errorf("size %q, output_format %q; want 640x512, png", resp.Size, resp.OutputFormat)
	}
	if resp.Created == 0 {
		t.Error("created is 0")
	}
}

func TestGenerateURL(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:          modelID,
		Prompt:         "a lighthouse at dusk",
		Size:           "512x768",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 || resp.Data[0].URL == "" || resp.Data[0].B64JSON != "" {
		t.Fatalf("data = %+v, want one url", resp.Data)
	}
	u := resp.Data[0].URL

	code, ctype, body := b.fetchImage(t, u)
	if code != http.StatusOK || ctype != "image/png" {
		t.Fatalf("GET result URL = %d %q, want 200 image/png", code, ctype)
	}
	pc := decodePNG(t, body)
	if pc.Width != 512 || pc.Height != 768 {
		t.Errorf("image is %dx%d, want 512x768", pc.Width, pc.Height)
	}

	// The signature is the only credential: any change to it is refused.
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	sig := q.Get("sig")
	if sig == "" {
		t.Fatalf("result URL %q has no sig", u)
	}
	flipped := []byte(sig)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}
	q.Set("sig", string(flipped))
	parsed.RawQuery = q.Encode()
	resp2, body2 := b.do(t, http.MethodGet, parsed.String(), "", nil)
	if resp2.StatusCode != http.StatusForbidden {
		t.Errorf("altered signature = %d, want 403", resp2.StatusCode)
	}
	checkEnvelope(t, body2, "permission_error", "", "invalid_signature")
	q.Del("sig")
	parsed.RawQuery = q.Encode()
	if resp3, _ := b.do(t, http.MethodGet, parsed.String(), "", nil); resp3.StatusCode != http.StatusForbidden {
		t.Errorf("missing signature = %d, want 403", resp3.StatusCode)
	}
}

func TestGenerateTwoImages(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:  modelID,
		Prompt: "two cats on a windowsill",
		N:      openai.Int(2),
		Size:   "512x512",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 {
		t.Fatalf("got %d images, want 2", len(resp.Data))
	}
	for i, d := range resp.Data {
		pc := decodeB64PNG(t, d.B64JSON)
		if pc.Width != 512 || pc.Height != 512 {
			t.Errorf("image %d is %dx%d, want 512x512", i, pc.Width, pc.Height)
		}
	}
	if n := len(b.generateJoins()); n != 2 {
		t.Errorf("the fake saw %d generation joins, want 2", n)
	}
}

// TestNonSquareHeightFirst checks the mrfakename Space's input order: its
// function takes height before width, and the fake draws width x height
// from them, so a swap shows in the image.
func TestNonSquareHeightFirst(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:  modelID,
		Prompt: "a tall tower",
		Size:   "768x1280",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 {
		t.Fatalf("got %d images, want 1", len(resp.Data))
	}
	pc := decodeB64PNG(t, resp.Data[0].B64JSON)
	if pc.Width != 768 || pc.Height != 1280 {
		t.Errorf("image is %dx%d, want 768x1280", pc.Width, pc.Height)
	}
	if resp.Size != "768x1280" {
		t.Errorf("size = %q, want 768x1280", resp.Size)
	}
	joins := b.generateJoins()
	if len(joins) != 1 {
		t.Fatalf("the fake saw %d generation joins, want 1", len(joins))
	}
	d := joins[0].Data
	if len(d) < 3 || d[0] != "a tall tower" || d[1] != 1280.0 || d[2] != 768.0 {
		t.Errorf("join data = %v, want [prompt, 1280 (height), 768 (width), ...]", d)
	}
}

func TestSizeFitted(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	const reqW, reqH = 1000, 700
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:  modelID,
		Prompt: "a wide valley",
		Size:   openai.ImageGenerateParamsSize(fmt.Sprintf("%dx%d", reqW, reqH)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 {
		t.Fatalf("got %d images, want 1", len(resp.Data))
	}
	pc := decodeB64PNG(t, resp.Data[0].B64JSON)
	w, h := pc.Width, pc.Height
	if w%64 != 0 || h%64 != 0 || w < 512 || h < 512 || w > 2048 || h > 2048 {
		t.Errorf("fitted size %dx%d breaks the preset's rules (512..2048, multiple of 64)", w, h)
	}
	want := float64(reqW) / reqH
	if got := float64(w) / float64(h); math.Abs(math.Log(got/want)) > 0.1 {
		t.Errorf("fitted size %dx%d has aspect %.3f, want about %.3f", w, h, got, want)
	}
	if string(resp.Size) != fmt.Sprintf("%dx%d", w, h) {
		t.Errorf("response size %q does not match the image's %dx%d", resp.Size, w, h)
	}
}

// TestOfficialSpaceResolution runs the Tongyi preset against the official
// Space's layout: a resolution dropdown and a gallery output.
func TestOfficialSpaceResolution(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{
		preset:    "z-image-turbo-tongyi",
		endpoints: gradiotest.ZImageOfficial(gradiotest.Behavior{Steps: 2}),
	})
	const reqW, reqH = 1000, 560 // about 16:9
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:  modelID,
		Prompt: "a harbour at night",
		Size:   openai.ImageGenerateParamsSize(fmt.Sprintf("%dx%d", reqW, reqH)),
	})
	if err != nil {
		t.Fatal(err)
	}
	joins := b.generateJoins()
	if len(joins) != 1 || len(joins[0].Data) < 2 {
		t.Fatalf("generation joins = %+v, want one with a resolution input", joins)
	}
	choice, ok := joins[0].Data[1].(string)
	if !ok || !slices.Contains(gradiotest.ZImageResolutions, choice) {
		t.Fatalf("resolution sent = %#v, want one of the dropdown's choices", joins[0].Data[1])
	}
	want := float64(reqW) / reqH
	dist := func(c string) float64 {
		w, h := resolutionOf(t, c)
		return math.Abs(math.Log(float64(w) / float64(h) / want))
	}
	for _, c := range gradiotest.ZImageResolutions {
		if dist(c) < dist(choice)-1e-9 {
			t.Errorf("resolution sent %q, but %q is nearer to the requested aspect", choice, c)
		}
	}

	if len(resp.Data) != 1 {
		t.Fatalf("got %d images, want 1", len(resp.Data))
	}
	pc := decodeB64PNG(t, resp.Data[0].B64JSON)
	cw, ch := resolutionOf(t, choice)
	if pc.Width != cw || pc.Height != ch {
		t.Errorf("image is %dx%d, want the gallery's %dx%d", pc.Width, pc.Height, cw, ch)
	}
	if string(resp.Size) != fmt.Sprintf("%dx%d", cw, ch) {
		t.Errorf("response size %q, want %dx%d", resp.Size, cw, ch)
	}
}

// resolutionOf reads "1280x720 ( 16:9 )".
func resolutionOf(t *testing.T, choice string) (int, int) {
	t.Helper()
	head, _, _ := strings.Cut(choice, " ")
	ws, hs, _ := strings.Cut(head, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad resolution choice %q", choice)
	}
	return w, h
}

func TestGenerateStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	stream := b.client.Images.GenerateStreaming(testCtx(t), openai.ImageGenerateParams{
		Model:  modelID,
		Prompt: "a paper boat on a pond",
		N:      openai.Int(2),
		Size:   "512x640",
	})
	defer stream.Close()
	var progress, completed int
	var sawStep bool
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "image_generation.progress":
			progress++
			if strings.Contains(ev.RawJSON(), `"stage":"progress"`) && strings.Contains(ev.RawJSON(), `"total":3`) {
				sawStep = true
			}
		case "image_generation.completed":
			completed++
			pc := decodeB64PNG(t, ev.B64JSON)
			if pc.Width != 512 || pc.Height != 640 {
				t.Errorf("completed image %d is %dx%d, want 512x640", completed, pc.Width, pc.Height)
			}
			if ev.Size != "512x640" || ev.OutputFormat != "png" {
				t.Errorf("completed event size %q format %q", ev.Size, ev.OutputFormat)
			}
		default:
			t.Errorf("unexpected event type %q: %s", ev.Type, ev.RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream error: %v", err)
	}
	if completed != 2 {
		t.Errorf("got %d completed events, want 2", completed)
	}
	if progress == 0 || !sawStep {
		t.Errorf("got %d progress events (step progress seen: %v), want step progress of 3", progress, sawStep)
	}
}

// TestAlias checks that a hard-coded OpenAI model name reaches the
// configured model and its backend.
func TestAlias(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{
		Model:  openai.ImageModelDallE3,
		Prompt: "a watercolor hummingbird",
		Size:   "1024x1024",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 {
		t.Fatalf("got %d images, want 1", len(resp.Data))
	}
	decodeB64PNG(t, resp.Data[0].B64JSON)
	if n := len(b.generateJoins()); n != 1 {
		t.Errorf("the z-image backend saw %d joins, want 1", n)
	}
	chat, err := b.client.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
		Model:    "dall-e-3",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a watercolor hummingbird")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if chat.Model != modelID {
		t.Errorf("chat answered as model %q, want %q", chat.Model, modelID)
	}
}
