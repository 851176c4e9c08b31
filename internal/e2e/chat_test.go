package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// markdownImage matches one whole image link as chat UIs render it.
var markdownImage = regexp.MustCompile(`!\[image 1\]\((http://127\.0\.0\.1:\d+/v1/files/[^)\s]+)\)`)

func TestChatCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	resp, err := b.client.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
		Model: modelID,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You draw pictures."),
			openai.UserMessage("a snowy mountain village"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("got %d choices, want 1", len(resp.Choices))
	}
	c := resp.Choices[0]
	if c.Message.Role != "assistant" || c.FinishReason != "stop" {
		t.Errorf("role %q, finish_reason %q; want assistant, stop", c.Message.Role, c.FinishReason)
	}
	m := markdownImage.FindStringSubmatch(c.Message.Content)
	if m == nil {
		t.Fatalf("content %q has no markdown image link", c.Message.Content)
	}
	code, ctype, body := b.fetchImage(t, m[1])
	if code != http.StatusOK || ctype != "image/png" {
		t.Fatalf("GET %s = %d %q", m[1], code, ctype)
	}
	pc := decodePNG(t, body)
	if pc.Width != 1024 || pc.Height != 1024 {
		t.Errorf("chat image is %dx%d, want the default 1024x1024", pc.Width, pc.Height)
	}
	joins := b.generateJoins()
	if len(joins) != 1 || len(joins[0].Data) == 0 || joins[0].Data[0] != "a snowy mountain village" {
		t.Errorf("the fake got %+v, want one join with the last user message as prompt", joins)
	}
}

func TestChatStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	stream := b.client.Chat.Completions.NewStreaming(testCtx(t), openai.ChatCompletionNewParams{
		Model:    modelID,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a koi pond in autumn")},
	})
	defer stream.Close()
	var (
		chunks     int
		reasoning  strings.Builder
		imageChunk string
		finish     string
		content    strings.Builder
	)
	for stream.Next() {
		ch := stream.Current()
		chunks++
		if ch.Object != "chat.completion.chunk" || ch.Model != modelID {
			t.Errorf("chunk %d: object %q model %q", chunks, ch.Object, ch.Model)
		}
		if len(ch.Choices) != 1 {
			t.Fatalf("chunk %d has %d choices: %s", chunks, len(ch.Choices), ch.RawJSON())
		}
		d := ch.Choices[0].Delta
		if chunks == 1 && d.Role != "assistant" {
			t.Errorf("first chunk role = %q, want assistant", d.Role)
		}
		// reasoning_content is an extension field the SDK does not model.
		var raw struct {
			Choices []struct {
				Delta struct {
					ReasoningContent string `json:"reasoning_content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ch.RawJSON()), &raw); err != nil {
			t.Fatalf("chunk %d is not JSON: %v", chunks, err)
		}
		if len(raw.Choices) == 1 {
			reasoning.WriteString(raw.Choices[0].Delta.ReasoningContent)
		}
		content.WriteString(d.Content)
		if markdownImage.MatchString(d.Content) {
			imageChunk = d.Content
		}
		if ch.Choices[0].FinishReason != "" {
			finish = ch.Choices[0].FinishReason
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream error: %v", err)
	}
	if !strings.Contains(reasoning.String(), "Step 2/3") {
		t.Errorf("reasoning %q lacks the step progress of the fake's 3 steps", reasoning.String())
	}
	if imageChunk == "" {
		t.Fatalf("no chunk held a whole markdown image; content %q", content.String())
	}
	if finish != "stop" {
		t.Errorf("finish_reason = %q, want stop", finish)
	}
	u := markdownImage.FindStringSubmatch(imageChunk)[1]
	if code, ctype, body := b.fetchImage(t, u); code != http.StatusOK || ctype != "image/png" {
		t.Errorf("GET streamed image URL = %d %q", code, ctype)
	} else {
		decodePNG(t, body)
	}

	// The SDK hides the terminator; read the wire.
	resp, body := b.postJSON(t, "/v1/chat/completions", map[string]any{
		"model": modelID, "stream": true,
		"messages": []map[string]any{{"role": "user", "content": "a koi pond in winter"}},
	})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("raw stream = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Errorf("stream does not end with data: [DONE]:\n%s", tailOf(body, 300))
	}
	if n := bytes.Count(body, []byte("[DONE]")); n != 1 {
		t.Errorf("stream has %d [DONE] markers, want 1", n)
	}
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
