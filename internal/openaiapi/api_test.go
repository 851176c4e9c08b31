package openaiapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	_ "image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

func TestModels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	page, err := b.client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy != "easel" || m.Created < 1763500000 {
			t.Errorf("model %s: object %q owned_by %q created %d", m.ID, m.Object, m.OwnedBy, m.Created)
		}
	}
	if diff := cmp.Diff([]string{"z-image-turbo", "black-forest-labs/flux.1-dev:v2"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	var ext struct {
		Easel struct {
			Demo         bool     `json:"demo"`
			Aliases      []string `json:"aliases"`
			Capabilities struct {
				TextToImage bool `json:"text_to_image"`
				MaxN        int  `json:"max_n"`
			} `json:"capabilities"`
		} `json:"easel"`
	}
	if err := json.Unmarshal([]byte(page.Data[0].RawJSON()), &ext); err != nil {
		t.Fatal(err)
	}
	if !ext.Easel.Demo || !cmp.Equal(ext.Easel.Aliases, []string{"dall-e-3"}) || !ext.Easel.Capabilities.TextToImage || ext.Easel.Capabilities.MaxN != 2 {
		t.Errorf("easel extension = %+v", ext.Easel)
	}

	for _, id := range []string{"black-forest-labs/flux.1-dev:v2", "z-image-turbo"} {
		m, err := b.client.Models.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get(%q): %v", id, err)
		}
		if m.ID != id {
			t.Errorf("Get(%q).ID = %q", id, m.ID)
		}
	}
	m, err := b.client.Models.Get(ctx, "dall-e-3")
	if err != nil || m.ID != "z-image-turbo" {
		t.Errorf("alias: %v, %v", m, err)
	}

	_, err = b.client.Models.Get(ctx, "no-such-model")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
		t.Errorf("unknown model error = %v", err)
	}

	// Raw slashes and %2F both reach the model.
	for _, path := range []string{"/v1/models/black-forest-labs/flux.1-dev:v2", "/v1/models/black-forest-labs%2Fflux.1-dev:v2"} {
		req, _ := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, body := do(t, req)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"black-forest-labs/flux.1-dev:v2"`) {
			t.Errorf("GET %s = %d %s", path, resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
	}
}

func decodePNG(t *testing.T, b64 string) image.Config {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("b64_json is not standard base64: %v", err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || format != "png" {
		t.Fatalf("b64_json is not a PNG (%s): %v", format, err)
	}
	return cfg
}

func TestGenerateB64(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var raw *http.Response
	resp, err := b.client.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Prompt: "a lighthouse at dusk",
		Model:  "z-image-turbo",
		N:      openai.Int(2),
		Size:   "96x64",
	}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 {
		t.Fatalf("got %d images, want 2", len(resp.Data))
	}
	for i, d := range resp.Data {
		if d.URL != "" {
			t.Errorf("image %d has a url in b64_json mode", i)
		}
		cfg := decodePNG(t, d.B64JSON)
		if cfg.Width != 96 || cfg.Height != 64 {
			t.Errorf("image %d is %dx%d, want 96x64", i, cfg.Width, cfg.Height)
		}
	}
	if resp.Data[0].B64JSON == resp.Data[1].B64JSON {
		t.Error("both images are identical; want one per index")
	}
	if resp.Size != "96x64" || resp.OutputFormat != "png" || resp.Background != "opaque" || resp.Quality != "auto" {
		t.Errorf("size %q format %q background %q quality %q", resp.Size, resp.OutputFormat, resp.Background, resp.Quality)
	}
	if resp.Created == 0 {
		t.Error("created is zero")
	}
	if raw.Header.Get("X-Request-Id") == "" || !strings.HasPrefix(raw.Header.Get("X-Easel-Job-Id"), "") || raw.Header.Get("X-Easel-Job-Id") == "" {
		t.Errorf("ids: request %q job %q", raw.Header.Get("X-Request-Id"), raw.Header.Get("X-Easel-Job-Id"))
	}
	// The stored bytes are what b64_json carries.
	if b.fake.Calls() != 1 {
		t.Errorf("provider calls = %d, want 1 (MaxN 2)", b.fake.Calls())
	}
}

func TestGenerateURLAndFiles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.client.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Prompt:         "an otter",
		N:              openai.Int(3),
		Size:           "80x48",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 3 {
		t.Fatalf("got %d images, want 3", len(resp.Data))
	}
	u, err := url.Parse(resp.Data[0].URL)
	if err != nil || !strings.HasPrefix(resp.Data[0].URL, b.srv.URL+"/v1/files/") {
		t.Fatalf("url %q is not an absolute gateway file URL", resp.Data[0].URL)
	}

	// Fetchable without our key, and with an unrelated Authorization header.
	req, _ := http.NewRequest(http.MethodGet, resp.Data[0].URL, nil)
	req.Header.Set("Authorization", "Bearer some-other-services-key")
	got, body := do(t, req)
	if got.StatusCode != 200 {
		t.Fatalf("GET file = %d %s", got.StatusCode, body)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil || format != "png" || cfg.Width != 80 || cfg.Height != 48 {
		t.Errorf("file is %s %dx%d (%v)", format, cfg.Width, cfg.Height, err)
	}
	wantHeaders := map[string]string{
		"Content-Type":            "image/png",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; sandbox",
		"Referrer-Policy":         "no-referrer",
	}
	for k, v := range wantHeaders {
		if got.Header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Header.Get(k), v)
		}
	}
	cc := got.Header.Get("Cache-Control")
	m := regexp.MustCompile(`^private, max-age=(\d+)$`).FindStringSubmatch(cc)
	if m == nil {
		t.Fatalf("Cache-Control = %q", cc)
	}
	if age, _ := strconv.Atoi(m[1]); age > 3600 || age < 3500 {
		t.Errorf("max-age %d not within the URL's remaining hour", age)
	}

	key := strings.TrimPrefix(u.Path, "/v1/files/")
	q := u.Query()
	tampered := func(f func(url.Values) url.Values, path string) string {
		v := f(url.Values{"exp": {q.Get("exp")}, "sig": {q.Get("sig")}})
		return b.srv.URL + path + "?" + v.Encode()
	}
	sig := q.Get("sig")
	flipped := "A" + sig[1:]
	if sig[0] == 'A' {
		flipped = "B" + sig[1:]
	}
	otherKey := strings.TrimPrefix(mustParse(t, resp.Data[1].URL).Path, "/v1/files/")
	cases := map[string]string{
		"tampered sig": tampered(func(v url.Values) url.Values { v.Set("sig", flipped); return v }, u.Path),
		"extended exp": tampered(func(v url.Values) url.Values {
			exp, _ := strconv.ParseInt(v.Get("exp"), 10, 64)
			v.Set("exp", strconv.FormatInt(exp+3600, 10))
			return v
		}, u.Path),
		"no sig":        tampered(func(v url.Values) url.Values { v.Del("sig"); return v }, u.Path),
		"empty sig":     tampered(func(v url.Values) url.Values { v.Set("sig", ""); return v }, u.Path),
		"truncated sig": tampered(func(v url.Values) url.Values { v.Set("sig", sig[:10]); return v }, u.Path),
		"other key":     tampered(func(v url.Values) url.Values { return v }, "/v1/files/"+otherKey),
		"expired":       b.signer.URL(b.srv.URL, key, -time.Minute),
		"unsigned":      b.srv.URL + "/v1/files/" + key,
	}
	if otherKey == key {
		t.Fatal("two images share a key")
	}
	for name, link := range cases {
		req, _ := http.NewRequest(http.MethodGet, link, nil)
		got, body := do(t, req)
		var e struct {
			Error struct {
				Type string `json:"type"`
				Code string `json:"code"`
			} `json:"error"`
		}
		if got.StatusCode != 403 || json.Unmarshal(body, &e) != nil || e.Error.Code != "invalid_signature" {
			t.Errorf("%s: %d %s", name, got.StatusCode, body)
		}
	}

	// Ranges and HEAD work on the same URL.
	req, _ = http.NewRequest(http.MethodGet, resp.Data[0].URL, nil)
	req.Header.Set("Range", "bytes=0-7")
	if got, body := do(t, req); got.StatusCode != 206 || string(body) != "\x89PNG\r\n\x1a\n" {
		t.Errorf("range: %d %q", got.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodHead, resp.Data[0].URL, nil)
	if got, body := do(t, req); got.StatusCode != 200 || len(body) != 0 || got.Header.Get("Content-Type") != "image/png" {
		t.Errorf("head: %d %q", got.StatusCode, got.Header.Get("Content-Type"))
	}

	// A validly signed URL for a key that does not exist is a 404.
	req, _ = http.NewRequest(http.MethodGet, b.signer.URL(b.srv.URL, strings.Repeat("0", 64)+".png", time.Hour), nil)
	if got, body := do(t, req); got.StatusCode != 404 {
		t.Errorf("missing object: %d %s", got.StatusCode, body)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestGenerateStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.client.Images.GenerateStreaming(context.Background(), openai.ImageGenerateParams{
		Prompt: "a red fox",
		N:      openai.Int(3),
		Size:   "48x32",
	})
	var completed int
	stages := map[string]int{}
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "image_generation.completed":
			completed++
			cfg := decodePNG(t, ev.B64JSON)
			if cfg.Width != 48 || cfg.Height != 32 || ev.Size != "48x32" || ev.OutputFormat != "png" {
				t.Errorf("completed event: %dx%d size %q format %q", cfg.Width, cfg.Height, ev.Size, ev.OutputFormat)
			}
			if ev.Usage.TotalTokens != 0 || !ev.Usage.JSON.InputTokensDetails.Valid() {
				t.Errorf("usage = %s", ev.Usage.RawJSON())
			}
		case "image_generation.progress":
			var p struct {
				Stage     string  `json:"stage"`
				Position  int     `json:"position"`
				QueueSize int     `json:"queue_size"`
				Step      int     `json:"step"`
				Total     int     `json:"total"`
				Progress  float64 `json:"progress"`
			}
			if err := json.Unmarshal([]byte(ev.RawJSON()), &p); err != nil {
				t.Fatal(err)
			}
			stages[p.Stage]++
			if p.Stage == "progress" && (p.Total != 3 || p.Progress <= 0 || p.Progress > 1) {
				t.Errorf("progress event %+v", p)
			}
		default:
			t.Errorf("unexpected event type %q", ev.Type)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if completed != 3 {
		t.Errorf("completed events = %d, want 3", completed)
	}
	if stages["queued"] == 0 || stages["started"] == 0 || stages["progress"] == 0 || stages["log"] == 0 {
		t.Errorf("progress stages seen: %v", stages)
	}
}

// sseEvent is one parsed event of a raw stream.
type sseEvent struct {
	name, data string
}

func readSSE(t *testing.T, r io.Reader) (events []sseEvent, comments []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" || cur.name != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
			comments = append(comments, line)
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if cur.data != "" {
				t.Errorf("event with two data lines")
			}
			cur.data = strings.TrimPrefix(line, "data: ")
		default:
			t.Errorf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events, comments
}

func TestGenerateStreamWire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.post(t, "/v1/images/generations", `{"prompt":"preview cat","stream":true,"partial_images":2,"n":1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if resp.Header.Get(k) != v {
			t.Errorf("%s = %q", k, resp.Header.Get(k))
		}
	}
	events, _ := readSSE(t, bytes.NewReader(body))
	var names []string
	var partialIdx []int
	for _, ev := range events {
		if ev.data == "[DONE]" {
			t.Error("image streams must not send [DONE]")
			continue
		}
		var d struct {
			Type              string `json:"type"`
			PartialImageIndex int    `json:"partial_image_index"`
		}
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Fatalf("data is not JSON: %q", ev.data)
		}
		if d.Type != ev.name {
			t.Errorf("event %q carries type %q", ev.name, d.Type)
		}
		if ev.name == "image_generation.progress" {
			continue
		}
		names = append(names, ev.name)
		if ev.name == "image_generation.partial_image" {
			partialIdx = append(partialIdx, d.PartialImageIndex)
		}
	}
	want := []string{"image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if !cmp.Equal(partialIdx, []int{0, 1}) {
		t.Errorf("partial indexes %v", partialIdx)
	}

	// Without partial_images, previews are not relayed.
	_, body = b.post(t, "/v1/images/generations", `{"prompt":"preview cat","stream":true}`)
	if strings.Contains(string(body), "partial_image") {
		t.Error("partial images sent although partial_images was 0")
	}
}

func TestStreamHeartbeat(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{heartbeat: 5 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/images/generations",
		strings.NewReader(`{"prompt":"wait for it","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before a heartbeat: %v", err)
		}
		if strings.HasPrefix(line, ": keep-alive") {
			break
		}
	}
	close(b.fake.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rest), "event: image_generation.completed") {
		t.Errorf("no completed event after release: %s", rest)
	}
}

func TestStreamFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.client.Images.GenerateStreaming(context.Background(), openai.ImageGenerateParams{Prompt: "error:upstream boom"})
	for stream.Next() {
		if stream.Current().Type == "image_generation.completed" {
			t.Error("completed event on a failed job")
		}
	}
	var se *ssestream.StreamError
	if !errors.As(stream.Err(), &se) {
		t.Fatalf("stream error = %v, want a StreamError", stream.Err())
	}
	resp, body := b.post(t, "/v1/images/generations", `{"prompt":"error:upstream boom","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events, _ := readSSE(t, bytes.NewReader(body))
	last := events[len(events)-1]
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(last.data), &e); err != nil {
		t.Fatal(err)
	}
	if last.name != "error" || e.Type != "error" || e.Error.Code != "upstream_error" || e.Error.Message != "upstream crashed" || e.Error.Type != "server_error" {
		t.Errorf("last event %q %s", last.name, last.data)
	}
	if !strings.Contains(last.data, `"param":null`) {
		t.Errorf("error object lacks param: %s", last.data)
	}
}

var mdImage = regexp.MustCompile(`^!\[image 1\]\((http://127\.0\.0\.1:\d+/v1/files/[0-9a-f]+\.png\?exp=\d+&sig=[A-Za-z0-9_-]+)\)$`)

func TestChat(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "dall-e-3",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("you draw"),
			openai.UserMessage("first idea"),
			openai.AssistantMessage("ok"),
			openai.UserMessage("a blue whale"),
		},
		Temperature: openai.Float(0.3),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != "z-image-turbo" || resp.Object != "chat.completion" {
		t.Errorf("id %q model %q object %q", resp.ID, resp.Model, resp.Object)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("choices = %+v", resp.Choices)
	}
	msg := resp.Choices[0].Message
	m := mdImage.FindStringSubmatch(msg.Content)
	if m == nil {
		t.Fatalf("content %q is not one markdown image", msg.Content)
	}
	var images []struct {
		Type     string `json:"type"`
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal([]byte(msg.JSON.ExtraFields["images"].Raw()), &images); err != nil {
		t.Fatal(err)
	}
	if len(images) != 1 || images[0].Type != "image_url" || images[0].ImageURL.URL != m[1] {
		t.Errorf("message.images = %+v", images)
	}
	req, _ := http.NewRequest(http.MethodGet, m[1], nil)
	if got, body := do(t, req); got.StatusCode != 200 || got.Header.Get("Content-Type") != "image/png" {
		t.Errorf("fetching the chat image: %d %s", got.StatusCode, body)
	}
	b.fake.mu.Lock()
	prompts := append([]string(nil), b.fake.prompts...)
	b.fake.mu.Unlock()
	if !cmp.Equal(prompts, []string{"a blue whale"}) {
		t.Errorf("prompts = %q, want the last user message", prompts)
	}
}

func TestChatStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "z-image-turbo",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("a green"),
				openai.TextContentPart("parrot"),
			}),
		},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var chunks []openai.ChatCompletionChunk
	for stream.Next() {
		chunks = append(chunks, stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 4 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	first := chunks[0]
	if first.Choices[0].Delta.Role != "assistant" || first.Choices[0].Delta.Content != "" {
		t.Errorf("first chunk %s", first.RawJSON())
	}
	var reasoning strings.Builder
	var contents []string
	var finish []string
	for _, c := range chunks {
		if c.ID != first.ID || c.Created != first.Created || c.Model != "z-image-turbo" {
			t.Errorf("chunk identity differs: %s", c.RawJSON())
		}
		for _, ch := range c.Choices {
			if f, ok := ch.Delta.JSON.ExtraFields["reasoning_content"]; ok {
				var s string
				_ = json.Unmarshal([]byte(f.Raw()), &s)
				reasoning.WriteString(s)
			}
			if ch.Delta.Content != "" {
				contents = append(contents, ch.Delta.Content)
				if _, ok := ch.Delta.JSON.ExtraFields["images"]; !ok {
					t.Errorf("content chunk without delta.images: %s", c.RawJSON())
				}
			}
			if ch.FinishReason != "" {
				finish = append(finish, ch.FinishReason)
			}
		}
	}
	wantReasoning := "Queued at position 2 of 3\nStarted\nStep 1/3\nStep 2/3\nStep 3/3\nwarming up\n"
	if !strings.Contains(reasoning.String(), wantReasoning) {
		t.Errorf("reasoning = %q, want it to contain %q", reasoning.String(), wantReasoning)
	}
	if len(contents) != 1 || !mdImage.MatchString(contents[0]) {
		t.Errorf("content chunks = %q, want one whole markdown image", contents)
	}
	if !cmp.Equal(finish, []string{"stop"}) {
		t.Errorf("finish reasons = %v", finish)
	}
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 0 || !last.JSON.Usage.Valid() {
		t.Errorf("last chunk is not the usage chunk: %s", last.RawJSON())
	}
	b.fake.mu.Lock()
	prompt := b.fake.prompts[0]
	b.fake.mu.Unlock()
	if prompt != "a green\nparrot" {
		t.Errorf("prompt = %q", prompt)
	}

	// On the wire the stream ends with [DONE] and has no event names.
	resp, body := b.post(t, "/v1/chat/completions", `{"model":"z-image-turbo","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
	events, _ := readSSE(t, bytes.NewReader(body))
	if events[len(events)-1].data != "[DONE]" {
		t.Errorf("last event %q, want [DONE]", events[len(events)-1].data)
	}
	for _, ev := range events {
		if ev.name != "" {
			t.Errorf("chat event has a name %q", ev.name)
		}
		if strings.Contains(ev.data, `"usage"`) {
			t.Error("usage chunk sent without include_usage")
		}
	}
}

func TestChatStreamFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.post(t, "/v1/chat/completions", `{"stream":true,"messages":[{"role":"user","content":"error:ratelimit now"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events, _ := readSSE(t, bytes.NewReader(body))
	n := len(events)
	if n < 3 || events[n-1].data != "[DONE]" {
		t.Fatalf("events %+v", events)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(events[n-2].data), &e); err != nil || e.Error.Code != "rate_limit_exceeded" {
		t.Errorf("error chunk %q", events[n-2].data)
	}
	stream := b.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "z-image-turbo",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("error:upstream x")},
	})
	for stream.Next() {
	}
	var se *ssestream.StreamError
	if !errors.As(stream.Err(), &se) {
		t.Errorf("SDK error = %v", stream.Err())
	}
}

func TestProviderErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		prompt       string
		status       int
		code         string
		retryAfter   string
		retryAfterMs string
		shouldRetry  string
		typ          string
	}{
		{"error:ratelimit x", 429, "rate_limit_exceeded", "2", "1500", "", "rate_limit_error"},
		{"error:unavailable x", 503, "service_unavailable", "2", "2000", "", "server_error"},
		{"error:timeout x", 504, "timeout", "", "", "false", "server_error"},
		{"error:upstream x", 502, "upstream_error", "", "", "false", "server_error"},
		{"error:protocol x", 502, "upstream_protocol_error", "", "", "false", "server_error"},
		{"error:badrequest x", 400, "bad_request", "", "", "", "invalid_request_error"},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			t.Parallel()
			var raw *http.Response
			_, err := b.client.Images.Generate(context.Background(), openai.ImageGenerateParams{Prompt: c.prompt},
				option.WithResponseInto(&raw))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v", err)
			}
			if apiErr.StatusCode != c.status || apiErr.Code != c.code || apiErr.Type != c.typ {
				t.Errorf("got %d %s %s, want %d %s %s", apiErr.StatusCode, apiErr.Code, apiErr.Type, c.status, c.code, c.typ)
			}
			h := apiErr.Response.Header
			if h.Get("Retry-After") != c.retryAfter || h.Get("Retry-After-Ms") != c.retryAfterMs || h.Get("X-Should-Retry") != c.shouldRetry {
				t.Errorf("retry headers: %q %q %q", h.Get("Retry-After"), h.Get("Retry-After-Ms"), h.Get("X-Should-Retry"))
			}
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", h.Get("Content-Type"))
			}
			if apiErr.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

// TestSDKRetriesHonourHeaders checks that the retry hints work as meant:
// a 502 after work began is not replayed by the SDK, a 429 is.
func TestSDKRetriesHonourHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client := openai.NewClient(option.WithBaseURL(b.srv.URL+"/v1"), option.WithAPIKey(testKey), option.WithMaxRetries(2))
	_, err := client.Images.Generate(context.Background(), openai.ImageGenerateParams{Prompt: "error:upstream once"})
	if err == nil {
		t.Fatal("expected an error")
	}
	if n := b.fake.Calls(); n != 1 {
		t.Errorf("a 502 with x-should-retry false ran %d times", n)
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("a", 32001)
	cases := []struct {
		name, body, param string
		status            int
	}{
		{"not json", `{"prompt":`, "", 400},
		{"array", `[{"prompt":"x"}]`, "", 400},
		{"string", `"prompt"`, "", 400},
		{"empty body", ``, "", 400},
		{"trailing garbage", `{"prompt":"x"}garbage`, "", 400},
		{"two objects", `{"prompt":"x"}{"prompt":"y"}`, "", 400},
		{"duplicate prompt", `{"prompt":"x","prompt":"y"}`, "prompt", 400},
		{"case variant", `{"prompt":"x","Prompt":"y"}`, "prompt", 400},
		{"only case variant", `{"PROMPT":"x"}`, "prompt", 400},
		{"missing prompt", `{"model":"z-image-turbo"}`, "prompt", 400},
		{"null prompt", `{"prompt":null}`, "prompt", 400},
		{"empty prompt", `{"prompt":""}`, "prompt", 400},
		{"blank prompt", `{"prompt":"  \n "}`, "prompt", 400},
		{"prompt number", `{"prompt":5}`, "prompt", 400},
		{"prompt too long", `{"prompt":"` + long + `"}`, "prompt", 400},
		{"invalid utf8", "{\"prompt\":\"a\xffb\"}", "prompt", 400},
		{"lone high surrogate", `{"prompt":"a\ud800b"}`, "prompt", 400},
		{"lone low surrogate", `{"prompt":"a\udc00"}`, "prompt", 400},
		{"reversed pair", `{"prompt":"\udc00\ud800"}`, "prompt", 400},
		{"nul", `{"prompt":"a\u0000b"}`, "prompt", 400},
		{"n float", `{"prompt":"x","n":1.5}`, "n", 400},
		{"n string", `{"prompt":"x","n":"2"}`, "n", 400},
		{"n negative", `{"prompt":"x","n":-1}`, "n", 400},
		{"n zero", `{"prompt":"x","n":0}`, "n", 400},
		{"n huge", `{"prompt":"x","n":1e309}`, "n", 400},
		{"n too many", `{"prompt":"x","n":11}`, "n", 400},
		{"n overflow", `{"prompt":"x","n":99999999999999999999999}`, "n", 400},
		{"size garbage", `{"prompt":"x","size":"big"}`, "size", 400},
		{"size huge", `{"prompt":"x","size":"99999x99999"}`, "size", 400},
		{"size zero", `{"prompt":"x","size":"0x512"}`, "size", 400},
		{"size over side", `{"prompt":"x","size":"16385x16"}`, "size", 400},
		{"size upper X", `{"prompt":"x","size":"512X512"}`, "size", 400},
		{"size number", `{"prompt":"x","size":512}`, "size", 400},
		{"image_size garbage", `{"prompt":"x","image_size":"1:1"}`, "image_size", 400},
		{"batch_size zero", `{"prompt":"x","batch_size":0}`, "batch_size", 400},
		{"response_format", `{"prompt":"x","response_format":"png"}`, "response_format", 400},
		{"output_format jpg", `{"prompt":"x","output_format":"jpg"}`, "output_format", 400},
		{"output_format gif", `{"prompt":"x","output_format":"gif"}`, "output_format", 400},
		{"negative_prompt type", `{"prompt":"x","negative_prompt":["a"]}`, "negative_prompt", 400},
		{"seed float", `{"prompt":"x","seed":1.5}`, "seed", 400},
		{"seed overflow", `{"prompt":"x","seed":9223372036854775808}`, "seed", 400},
		{"steps zero", `{"prompt":"x","steps":0}`, "steps", 400},
		{"steps string", `{"prompt":"x","steps":"9"}`, "steps", 400},
		{"stream string", `{"prompt":"x","stream":"true"}`, "stream", 400},
		{"partial_images 4", `{"prompt":"x","stream":true,"partial_images":4}`, "partial_images", 400},
		{"model number", `{"prompt":"x","model":7}`, "model", 400},
		{"unknown model", `{"prompt":"x","model":"nope"}`, "model", 404},
		{"deep nesting", `{"prompt":"x","extra":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, "", 400},
	}
	// The group returns only when every parallel case has finished.
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				resp, body := b.post(t, "/v1/images/generations", c.body)
				checkError(t, resp, body, c.status, c.param)
			})
		}
	})
	if n := b.fake.Calls(); n != 0 {
		t.Errorf("bad requests reached the provider %d times", n)
	}
}

// checkError asserts an OpenAI error envelope with all four keys.
func checkError(t *testing.T, resp *http.Response, body []byte, status int, param string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
	var env map[string]map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body is not JSON: %s", body)
	}
	e, ok := env["error"]
	if !ok {
		t.Fatalf("no error object: %s", body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("error lacks %q: %s", k, body)
		}
	}
	var got string
	if p, ok := e["param"].(string); ok {
		got = p
	}
	if got != param {
		t.Errorf("param %q, want %q: %s", got, param, body)
	}
}

func TestAcceptedFields(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxPromptChars: 32000})
	emoji := strings.Repeat("\U0001F600", 32000)
	cases := []struct {
		name, body, prompt string
		n                  int
		size               string
	}{
		{"unknown fields and nulls", `{"prompt":"x","quality":"hd","style":"vivid","moderation":"low","user":"u","n":null,"size":null,"cfg":7,"width":3,"input_fidelity":"high"}`, "x", 1, "64x64"},
		{"siliconflow aliases", `{"prompt":"x","image_size":"32x16","batch_size":2,"num_inference_steps":4,"negative_prompt":"blur","seed":-1}`, "x", 2, "32x16"},
		{"standard wins over alias", `{"prompt":"x","size":"16x16","image_size":"bogus","n":1,"batch_size":"bogus"}`, "x", 1, "16x16"},
		{"max ascii", `{"prompt":"` + strings.Repeat("a", 32000) + `"}`, strings.Repeat("a", 32000), 1, "64x64"},
		{"max emoji", `{"prompt":"` + emoji + `"}`, emoji, 1, "64x64"},
		{"escaped surrogate pair", `{"prompt":"\ud83d\ude00 \u202e rtl"}`, "\U0001F600 \u202e rtl", 1, "64x64"},
		{"zwj and nfd", `{"prompt":"👩‍👩‍👧 e\u0301"}`, "👩‍👩‍👧 e\u0301", 1, "64x64"},
		{"forged log line", `{"prompt":"x\n[ADMIN] granted"}`, "x\n[ADMIN] granted", 1, "64x64"},
		{"escaped key", `{"pro\u006dpt":"x"}`, "x", 1, "64x64"},
		{"escaped backslash before u", `{"prompt":"a\\ud800 \\u0000"}`, `a\ud800 \u0000`, 1, "64x64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := b.post(t, "/v1/images/generations", c.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %.300s", resp.StatusCode, body)
			}
			var r struct {
				Data []struct {
					B64 string `json:"b64_json"`
				} `json:"data"`
				Size string `json:"size"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Data) != c.n || r.Size != c.size {
				t.Errorf("got %d images size %s, want %d %s", len(r.Data), r.Size, c.n, c.size)
			}
			b.fake.mu.Lock()
			last := b.fake.prompts[len(b.fake.prompts)-1]
			b.fake.mu.Unlock()
			if last != c.prompt {
				t.Errorf("provider saw a different prompt (%d bytes vs %d)", len(last), len(c.prompt))
			}
		})
	}
	// 32,001 characters and 200 KiB of ASCII are refused.
	for _, p := range []string{strings.Repeat("a", 32001), strings.Repeat("b", 200<<10)} {
		resp, body := b.post(t, "/v1/images/generations", `{"prompt":"`+p+`"}`)
		checkError(t, resp, body, 400, "prompt")
	}
}

func TestChatRequestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name, body, param string
		status            int
	}{
		{"no messages", `{"model":"z-image-turbo"}`, "messages", 400},
		{"messages object", `{"messages":{"role":"user"}}`, "messages", 400},
		{"no user message", `{"messages":[{"role":"system","content":"x"}]}`, "messages", 400},
		{"message not object", `{"messages":["hi"]}`, "messages[0]", 400},
		{"role missing", `{"messages":[{"content":"hi"}]}`, "messages[0].role", 400},
		{"duplicate content", `{"messages":[{"role":"user","content":"a","content":"b"}]}`, "messages[0].content", 400},
		{"content number", `{"messages":[{"role":"user","content":5}]}`, "messages", 400},
		{"content empty", `{"messages":[{"role":"user","content":""}]}`, "messages", 400},
		{"image not an image", imageBody("data:image/png;base64,AAAA"), "messages", 400},
		{"image http url", imageBody("https://example.org/a.png"), "messages", 400},
		{"image other scheme", imageBody("file:///etc/passwd"), "messages", 400},
		{"image html", imageBody("data:text/html;base64," + pngB64), "messages", 400},
		{"image svg", imageBody("data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="), "messages", 400},
		{"image not base64", imageBody("data:image/png,%89PNG"), "messages", 400},
		{"image bad base64", imageBody("data:image/png;base64,!!!!"), "messages", 400},
		{"image bomb", imageBody("data:image/png;base64," + base64.StdEncoding.EncodeToString(bombPNG(30000, 30000))), "messages", 400},
		{"image no url", `{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"detail":"auto"}}]}]}`, "messages", 400},
		{"17 images", imagesBody(17), "messages", 400},
		{"image too big", imageBody("data:image/png;base64," + strings.Repeat("A", 22<<20)), "", 413},
		{"stream string", `{"stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream", 400},
		{"include_usage string", `{"stream":true,"stream_options":{"include_usage":1},"messages":[{"role":"user","content":"x"}]}`, "stream_options.include_usage", 400},
		{"lone surrogate", `{"messages":[{"role":"user","content":"\ud800"}]}`, "messages", 400},
		{"unknown model", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, "model", 404},
		{"trailing", `{"messages":[{"role":"user","content":"x"}]} x`, "", 400},
	}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				resp, body := b.post(t, "/v1/chat/completions", c.body)
				checkError(t, resp, body, c.status, c.param)
			})
		}
	})
	if n := b.fake.Calls(); n != 0 {
		t.Errorf("bad requests reached the provider %d times", n)
	}
}

func TestAuthAndRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := openai.NewClient(option.WithBaseURL(b.srv.URL+"/v1"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err := bad.Models.List(context.Background())
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Errorf("wrong key: %v", err)
	}

	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/nope", 404, ""},
		{"GET", "/v1/images/variations", 404, ""},
		{"GET", "/v1/images/generations", 405, "POST"},
		{"DELETE", "/v1/chat/completions", 405, "POST"},
		{"POST", "/v1/models", 405, "GET, HEAD"},
		{"PUT", "/v1/models/z-image-turbo", 405, "GET, HEAD"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, b.srv.URL+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, body := do(t, req)
		checkError(t, resp, body, c.status, "")
		if resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"prompt":"x","pad":"` + strings.Repeat("a", 1<<20) + `"}`
	resp, body := b.post(t, "/v1/images/generations", big)
	checkError(t, resp, body, 413, "")
	if !strings.Contains(string(body), "payload_too_large") {
		t.Errorf("code: %s", body)
	}

	// A chunked body (no Content-Length) crossing the cap.
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/images/generations", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, body = do(t, req)
	checkError(t, resp, body, 413, "")

	// A huge declared length is refused before any body arrives.
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 413") {
		t.Errorf("declared 10 GiB: %q %v", status, err)
	}

	// Chat takes up to 20 MiB.
	pad := strings.Repeat("a", 2<<20)
	resp, body = b.post(t, "/v1/chat/completions", `{"pad":"`+pad+`","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 200 {
		t.Errorf("2 MiB chat body: %d %.200s", resp.StatusCode, body)
	}
}

func TestClientDisconnectCancelsJob(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"prompt":"block sync"}`, `{"prompt":"block stream","stream":true}`,
		`{"stream":true,"messages":[{"role":"user","content":"block chat"}]}`} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			path := "/v1/images/generations"
			if strings.Contains(body, "messages") {
				path = "/v1/chat/completions"
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			errc := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				errc <- err
			}()
			select {
			case <-b.fake.started:
			case <-time.After(10 * time.Second):
				t.Fatal("provider never started")
			}
			cancel()
			select {
			case <-b.fake.canceled:
			case <-time.After(time.Second):
				t.Fatal("provider did not see the cancellation within 1s")
			}
			<-errc
		})
	}
}

func TestDefaultResponseFormatURL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{defaultFormat: "url"})
	_, body := b.post(t, "/v1/images/generations", `{"prompt":"x"}`)
	if !strings.Contains(string(body), `"url":"http://127.0.0.1`) || strings.Contains(string(body), "b64_json") {
		t.Errorf("default url format: %.300s", body)
	}
	_, body = b.post(t, "/v1/images/generations", `{"prompt":"x","response_format":"b64_json"}`)
	if !strings.Contains(string(body), `"b64_json":"iVBOR`) {
		t.Errorf("explicit b64_json: %.300s", body)
	}
}

var pngB64 = base64.StdEncoding.EncodeToString(drawPNG(24, 16))

func imageBody(u string) string {
	return `{"messages":[{"role":"user","content":[{"type":"text","text":"restyle"},{"type":"image_url","image_url":{"url":"` + u + `","detail":"auto"}}]}]}`
}

func imagesBody(n int) string {
	parts := []string{`{"type":"text","text":"combine"}`}
	for range n {
		parts = append(parts, `{"type":"image_url","image_url":{"url":"data:image/png;base64,`+pngB64+`"}}`)
	}
	return `{"messages":[{"role":"user","content":[` + strings.Join(parts, ",") + `]}]}`
}

// bombPNG is a tiny PNG whose header declares w×h pixels.
func bombPNG(w, h uint32) []byte {
	b := drawPNG(1, 1)
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestChatImageInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 40, 30)), nil); err != nil {
		t.Fatal(err)
	}
	// The label says PNG; the bytes are JPEG: the bytes win. Line breaks in
	// the base64 are tolerated.
	jpgB64 := base64.StdEncoding.EncodeToString(jpg.Bytes())
	jpgB64 = jpgB64[:10] + `\n` + jpgB64[10:]
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"make it blue"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + pngB64 + `"}},` +
		`{"type":"image_url","image_url":"data:image/png;base64,` + jpgB64 + `"}]}]}`
	resp, data := b.post(t, "/v1/chat/completions", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, data)
	}
	b.fake.mu.Lock()
	inputs := b.fake.inputs[0]
	b.fake.mu.Unlock()
	type got struct {
		MIME, Name string
		W, H       int
	}
	var gotInputs []got
	for _, in := range inputs {
		gotInputs = append(gotInputs, got{in.MIME, in.Name, in.Width, in.Height})
	}
	want := []got{{"image/png", "image-1.png", 24, 16}, {"image/jpeg", "image-2.jpeg", 40, 30}}
	if diff := cmp.Diff(want, gotInputs); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	if !bytes.Equal(inputs[1].Data, jpg.Bytes()) {
		t.Error("JPEG bytes changed on the way")
	}
}

func TestOutputFormats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for format, magic := range map[string]string{"png": "\x89PNG", "jpeg": "\xff\xd8\xff", "webp": "RIFF"} {
		resp, body := b.post(t, "/v1/images/generations", `{"prompt":"x","size":"32x32","output_format":"`+format+`"}`)
		var r struct {
			Data []struct {
				B64 string `json:"b64_json"`
			} `json:"data"`
			OutputFormat string `json:"output_format"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || len(r.Data) != 1 {
			t.Fatalf("%s: %d %.200s", format, resp.StatusCode, body)
		}
		data, _ := base64.StdEncoding.DecodeString(r.Data[0].B64)
		if r.OutputFormat != format || !bytes.HasPrefix(data, []byte(magic)) {
			t.Errorf("%s: output_format %q, bytes %q", format, r.OutputFormat, data[:min(8, len(data))])
		}
	}
}
