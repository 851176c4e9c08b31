package openaiapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/server"
)

// chatParams is a decoded /v1/chat/completions body. The rule: the prompt
// is the text of the last user message, and the images of the last user
// message (its image_url parts, data: or http(s) URLs, in order) become the
// job's input images, which makes the job an edit. Images of earlier
// messages are not used, so a conversation does not silently keep editing
// an old picture. Everything a text model would use (temperature, tools,
// ...) is ignored.
type chatParams struct {
	Model  string
	Prompt string
	// ImageURLs are the last user message's image URLs; the handler loads
	// them (fetching http(s) ones) after the body is fully checked.
	ImageURLs    []string
	Stream       bool
	IncludeUsage bool
	asyncFields
}

var (
	chatKeys          = []string{"model", "messages", "stream", "stream_options", "async", "webhook_url"}
	messageKeys       = []string{"role", "content"}
	partKeys          = []string{"type", "text", "image_url"}
	imageURLKeys      = []string{"url", "detail"}
	streamOptionsKeys = []string{"include_usage"}
)

// decodeChat parses a chat body strictly for the fields easel reads: every
// message must be an object with a string role, and only the last user
// message's content is read in full.
func (a *API) decodeChat(body []byte) (*chatParams, *apiError) {
	o, e := decodeObject(body, chatKeys, "")
	if e != nil {
		return nil, e
	}
	p := &chatParams{}
	if p.Model, _, e = o.str("model", "model"); e != nil {
		return nil, e
	}
	if p.Stream, _, e = o.boolean("stream", "stream"); e != nil {
		return nil, e
	}
	if e := p.asyncFields.decode(o); e != nil {
		return nil, e
	}
	if raw, ok := o["stream_options"]; ok {
		so, e := decodeObject(raw, streamOptionsKeys, "stream_options")
		if e != nil {
			return nil, e
		}
		if p.IncludeUsage, _, e = so.boolean("include_usage", "stream_options.include_usage"); e != nil {
			return nil, e
		}
	}
	raw, ok := o["messages"]
	if !ok {
		return nil, badRequest("messages", "missing_required_parameter", "'messages' is required.")
	}
	msgs, e := decodeArray(raw, "messages")
	if e != nil {
		return nil, e
	}
	var last object
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		mo, e := decodeObject(m, messageKeys, param)
		if e != nil {
			return nil, e
		}
		role, ok, e := mo.str("role", param+".role")
		if e != nil {
			return nil, e
		}
		if !ok {
			return nil, badRequest(param+".role", "missing_required_parameter", "'"+param+".role' is required.")
		}
		if role == "user" {
			last = mo
		}
	}
	if last == nil {
		return nil, badRequest("messages", "missing_required_parameter", "'messages' must contain a user message.")
	}
	prompt, urls, e := a.userContent(last)
	if e != nil {
		return nil, e
	}
	p.ImageURLs = urls
	if e := checkPrompt(prompt, "messages", a.maxPromptChars); e != nil {
		return nil, e
	}
	p.Prompt = prompt
	return p, nil
}

// userContent reads a user message: its text (the string content, or the
// text parts joined by newlines) and the URLs of its image_url parts.
func (a *API) userContent(msg object) (string, []string, *apiError) {
	raw, ok := msg["content"]
	if !ok {
		return "", nil, badRequest("messages", "missing_required_parameter", "The last user message has no content.")
	}
	if len(raw) > 0 && raw[0] == '"' {
		s, _, e := msg.str("content", "messages")
		return s, nil, e
	}
	parts, e := decodeArray(raw, "messages")
	if e != nil {
		e.Message = "A message's 'content' must be a string or an array of parts."
		return "", nil, e
	}
	var texts []string
	var images []string
	for _, part := range parts {
		po, e := decodeObject(part, partKeys, "messages")
		if e != nil {
			return "", nil, e
		}
		typ, _, e := po.str("type", "messages")
		if e != nil {
			return "", nil, e
		}
		switch typ {
		case "text":
			t, _, e := po.str("text", "messages")
			if e != nil {
				return "", nil, e
			}
			texts = append(texts, t)
		case "image_url":
			if len(images) == a.maxImages {
				return "", nil, a.tooManyImages("messages")
			}
			u, e := imageURL(po)
			if e != nil {
				return "", nil, e
			}
			images = append(images, u)
		}
		// Other part types (audio, files) carry nothing an image model
		// uses; they are skipped.
	}
	return strings.Join(texts, "\n"), images, nil
}

// imageURL reads an image part's URL: {"image_url":{"url":…}}, or the
// older bare-string form some clients still send.
func imageURL(part object) (string, *apiError) {
	raw, ok := part["image_url"]
	if !ok {
		return "", badRequest("messages", "missing_required_parameter", "An image_url part has no image_url.")
	}
	if raw[0] == '"' {
		u, _, e := part.str("image_url", "messages")
		return u, e
	}
	o, e := decodeObject(raw, imageURLKeys, "messages")
	if e != nil {
		return "", e
	}
	u, ok, e := o.str("url", "messages")
	if e != nil {
		return "", e
	}
	if !ok {
		return "", badRequest("messages", "missing_required_parameter", "An image_url part has no url.")
	}
	return u, nil
}

type chatImage struct {
	Type     string      `json:"type"`
	ImageURL chatURLPart `json:"image_url"`
}

type chatURLPart struct {
	URL string `json:"url"`
}

type chatMessage struct {
	Role    string      `json:"role"`
	Content string      `json:"content"`
	Refusal *string     `json:"refusal"`
	Images  []chatImage `json:"images,omitempty"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
	Logprobs     *struct{}   `json:"logprobs"`
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatDelta struct {
	Role             string      `json:"role,omitempty"`
	Content          *string     `json:"content,omitempty"`
	ReasoningContent string      `json:"reasoning_content,omitempty"`
	Images           []chatImage `json:"images,omitempty"`
}

type chunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
	Logprobs     *struct{} `json:"logprobs"`
}

type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *chatUsage    `json:"usage,omitempty"`
}

// markdownImage renders image k (1-based) so that a chat UI shows it;
// a whole image always travels in one delta because some clients match
// the markdown per chunk.
func markdownImage(k int, url string) string {
	return fmt.Sprintf("![image %d](%s)", k, url)
}

func (a *API) handleChat(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, chatBodyLimit)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p, e := a.decodeChat(body)
	if e != nil {
		a.writeError(w, r, e)
		return
	}
	model, err := a.resolveModel(p.Model)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	kind := provider.KindGenerate
	var images []provider.InputImage
	if len(p.ImageURLs) > 0 {
		kind = provider.KindEdit
		// The model is checked before any URL is fetched, so a request that
		// would be refused anyway costs no download.
		if mi, ok := a.svc.Model(model); ok && !mi.Capabilities.ImageToImage {
			a.writeError(w, r, notAnEditModel(mi.ID, "messages"))
			return
		}
		budget := &imageBudget{left: a.maxUpload}
		for i, u := range p.ImageURLs {
			img, err := a.loadImageURL(ctx, u, "messages", i, budget)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			images = append(images, img)
		}
	}
	req := &gen.Request{
		Model:  model,
		Kind:   kind,
		Prompt: p.Prompt,
		Images: images,
		N:      1,
		KeyID:  server.KeyID(ctx),
	}
	base := a.baseURL(r)
	job, release, done := a.dispatch(w, r, req, jobMode{async: p.Async, stream: p.Stream, responseFormat: "url", webhookURL: p.WebhookURL})
	if done {
		return
	}
	if job != nil {
		w.Header().Set("X-Easel-Job-Id", job.ID())
		a.streamChat(w, r, job, p, "chatcmpl-"+job.ID(), model, job.Snapshot().Created.Unix(), base)
		return
	}
	snap, ok := a.runSync(w, r, req, release)
	if !ok {
		return
	}
	id := "chatcmpl-" + snap.ID
	created := snap.Created.Unix()
	if snap.Status != gen.StatusSucceeded {
		a.writeError(w, r, jobError(snap))
		return
	}
	msg := chatMessage{Role: "assistant"}
	var md []string
	for i, img := range snap.Images {
		if img.Key == "" {
			a.writeError(w, r, &provider.Error{Kind: provider.KindProtocol, Message: "An image of the job is missing."})
			return
		}
		u := a.signer.URL(base, img.Key, a.urlTTL)
		md = append(md, markdownImage(i+1, u))
		msg.Images = append(msg.Images, chatImage{Type: "image_url", ImageURL: chatURLPart{URL: u}})
	}
	msg.Content = strings.Join(md, "\n\n")
	writeJSON(w, http.StatusOK, chatCompletion{
		ID: id, Object: "chat.completion", Created: created, Model: model,
		Choices: []chatChoice{{Index: 0, Message: msg, FinishReason: "stop"}},
		Usage:   chatUsage{},
	})
}

// streamChat renders the job as chat completion chunks: the role at once,
// progress as reasoning_content, each finished image as one content chunk,
// then the stop chunk, optional usage, and [DONE].
func (a *API) streamChat(w http.ResponseWriter, r *http.Request, job *gen.Job, p *chatParams, id, model string, created int64, base string) {
	ctx := r.Context()
	sse := startSSE(w)
	chunk := func(d chatDelta, finish *string) chatChunk {
		return chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []chunkChoice{{Index: 0, Delta: d, FinishReason: finish}}}
	}
	empty := ""
	_ = sse.event("", chunk(chatDelta{Role: "assistant", Content: &empty}, nil))

	next := 0
	ready := map[int]bool{}
	sendImage := func(i int) error {
		snap := job.Snapshot()
		if i >= len(snap.Images) || snap.Images[i].Key == "" {
			return &provider.Error{Kind: provider.KindProtocol, Message: "An image of the job is missing."}
		}
		u := a.signer.URL(base, snap.Images[i].Key, a.urlTTL)
		text := markdownImage(i+1, u)
		if i > 0 {
			text = "\n\n" + text
		}
		return sse.event("", chunk(chatDelta{Content: &text,
			Images: []chatImage{{Type: "image_url", ImageURL: chatURLPart{URL: u}}}}, nil))
	}
	flushReady := func() error {
		for ready[next] {
			if err := sendImage(next); err != nil {
				return err
			}
			next++
		}
		return nil
	}
	on := func(ev provider.Event) error {
		switch ev.Type {
		case provider.EventQueued, provider.EventStarted, provider.EventProgress, provider.EventLog:
			line := progressLine(ev)
			if line == "" {
				return nil
			}
			return sse.event("", chunk(chatDelta{ReasoningContent: line}, nil))
		case provider.EventImage:
			ready[ev.Index] = true
			return flushReady()
		case provider.EventSucceeded:
			for i := range job.Snapshot().Images {
				ready[i] = true
			}
			return flushReady()
		case provider.EventFailed, provider.EventCanceled:
			return jobError(job.Snapshot())
		}
		return nil
	}
	err := follow(ctx, job, a.heartbeat, func() error { return sse.comment("keep-alive") }, on)
	if err != nil {
		if ctx.Err() != nil || sse.err != nil {
			job.Cancel()
			a.logError(r, toAPIError(err))
			return
		}
		e := toAPIError(err)
		a.logError(r, e)
		_ = sse.event("", e.body())
		_ = sse.raw("", []byte("[DONE]"))
		return
	}
	stop := "stop"
	_ = sse.event("", chunk(chatDelta{}, &stop))
	if p.IncludeUsage {
		_ = sse.event("", chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []chunkChoice{}, Usage: &chatUsage{}})
	}
	_ = sse.raw("", []byte("[DONE]"))
}

// progressLine is the human-readable text of a progress event, shown by
// chat clients as the model's "thinking".
func progressLine(ev provider.Event) string {
	switch ev.Type {
	case provider.EventQueued:
		switch {
		case ev.Position > 0 && ev.QueueSize > 0:
			return fmt.Sprintf("Queued at position %d of %d\n", ev.Position, ev.QueueSize)
		case ev.Position > 0:
			return fmt.Sprintf("Queued at position %d\n", ev.Position)
		}
		return "Queued\n"
	case provider.EventStarted:
		return "Started\n"
	case provider.EventProgress:
		switch {
		case ev.Total > 0:
			return fmt.Sprintf("Step %d/%d\n", ev.Step, ev.Total)
		case ev.Fraction > 0:
			return fmt.Sprintf("Progress %d%%\n", int(min(ev.Fraction, 1)*100))
		}
		return ""
	case provider.EventLog:
		msg := strings.TrimSpace(ev.Message)
		if msg == "" {
			return ""
		}
		return truncate(msg, 500) + "\n"
	}
	return ""
}
