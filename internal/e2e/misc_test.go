package e2e

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

func withKey(key string) option.RequestOption { return option.WithAPIKey(key) }

// TestTokenNeverLeaks checks that the Hugging Face token from HF_TOKEN is
// sent to the Space and never reaches an API client, on success paths,
// streams, file downloads and errors alike.
func TestTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	ctx := testCtx(t)

	img, err := b.client.Images.Generate(ctx, openai.ImageGenerateParams{
		Model: modelID, Prompt: "a copper kettle", Size: "512x512",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := b.fetchImage(t, img.Data[0].URL); code != http.StatusOK {
		t.Errorf("GET result URL = %d", code)
	}
	if _, err := b.client.Images.Generate(ctx, openai.ImageGenerateParams{Model: modelID, Prompt: "a copper kettle", Size: "512x512"}); err != nil {
		t.Fatal(err)
	}
	stream := b.client.Images.GenerateStreaming(ctx, openai.ImageGenerateParams{Model: modelID, Prompt: "a copper kettle", Size: "512x512"})
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()
	if _, err := b.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    modelID,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a copper kettle")},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Models.List(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Images.Generate(ctx, openai.ImageGenerateParams{Model: "no-such-model", Prompt: "x"})
	apiError(t, err, http.StatusNotFound)

	joins := b.fake.Joins()
	if len(joins) < 4 {
		t.Fatalf("the fake saw %d joins, want at least 4", len(joins))
	}
	for i, j := range joins {
		if got := j.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("join %d Authorization = %q, want the HF token", i, got)
		}
	}
	// The record must really hold what the client read, streams included,
	// or the absence below would prove nothing.
	for _, seen := range []string{`"b64_json":"`, "image_generation.completed", "/v1/files/", "\x89PNG", "Content-Type: image/png"} {
		if ok, _ := b.rec.contains(seen); !ok {
			t.Errorf("the response record lacks %q", seen)
		}
	}
	found, complete := b.rec.contains(testToken)
	if !complete {
		t.Fatal("the response record was truncated; the check would be incomplete")
	}
	if found {
		t.Error("the HF token appears in a response the client received")
	}
	if found, _ := b.rec.contains(testKey); found {
		t.Error("the API key is echoed in a response")
	}
}

// TestTokenNeverLeaksOnUpstreamError repeats the leak check where the
// upstream's own words reach the client.
func TestTokenNeverLeaksOnUpstreamError(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{run: func(context.Context, *gradiotest.Call) ([]any, error) {
		return nil, &gradiotest.AppError{Title: "Error", Message: "CUDA out of memory."}
	}})
	_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
	apiError(t, err, http.StatusBadGateway)
	if found, complete := b.rec.contains(testToken); found || !complete {
		t.Errorf("token in responses: %v (record complete: %v)", found, complete)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	ctx := testCtx(t)
	page, err := b.client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy == "" {
			t.Errorf("model %q: object %q owned_by %q", m.ID, m.Object, m.OwnedBy)
		}
	}
	if want := []string{modelID, modelOther}; !slices.Equal(ids, want) {
		t.Errorf("models = %v, want %v (aliases are not listed)", ids, want)
	}

	m, err := b.client.Models.Get(ctx, modelID)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != modelID {
		t.Errorf("Get(%q).ID = %q", modelID, m.ID)
	}
	_, err = b.client.Models.Get(ctx, "no-such-model")
	ae := apiError(t, err, http.StatusNotFound)
	if ae.Code != "model_not_found" {
		t.Errorf("code = %q, want model_not_found", ae.Code)
	}
}
