package openaiapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/jobs"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/server"
)

// jsonWriteTimeout bounds writing one JSON response.
const jsonWriteTimeout = 60 * time.Second

// maxStoredImage bounds how much of one stored image is read into memory
// for b64_json.
const maxStoredImage = 64 << 20

// imageParams is a decoded /v1/images/generations body.
type imageParams struct {
	Model          string
	Prompt         string
	NegativePrompt string
	N              int
	Width, Height  int
	ResponseFormat string
	OutputFormat   string
	Seed           *int64
	Steps          int
	AspectRatio    string
	Stream         bool
	PartialImages  int
	asyncFields
}

// generationsKeys are the body keys easel reads; everything else is
// accepted and ignored.
var generationsKeys = []string{
	"prompt", "model", "n", "size", "response_format", "output_format",
	"negative_prompt", "seed", "steps", "stream", "partial_images",
	"image_size", "batch_size", "num_inference_steps", "aspect_ratio",
	"async", "webhook_url",
}

// decodeGenerations parses and checks a generations body. Besides
// OpenAI's fields it takes the SiliconFlow-style image_size, batch_size
// and num_inference_steps, which some clients send instead of size, n and
// steps.
func (a *API) decodeGenerations(body []byte) (*imageParams, *apiError) {
	o, e := decodeObject(body, generationsKeys, "")
	if e != nil {
		return nil, e
	}
	return a.imageParamsFrom(o)
}

// imageParamsFrom reads the fields generations and edits share.
func (a *API) imageParamsFrom(o object) (*imageParams, *apiError) {
	var e *apiError
	p := &imageParams{N: 1, ResponseFormat: a.defaultFormat, OutputFormat: "png"}

	prompt, ok, e := o.str("prompt", "prompt")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, badRequest("prompt", "missing_required_parameter", "'prompt' is required.")
	}
	if e := checkPrompt(prompt, "prompt", a.maxPromptChars); e != nil {
		return nil, e
	}
	p.Prompt = prompt

	if p.Model, _, e = o.str("model", "model"); e != nil {
		return nil, e
	}
	if p.NegativePrompt, _, e = o.str("negative_prompt", "negative_prompt"); e != nil {
		return nil, e
	}
	if len(p.NegativePrompt) > maxPromptBytes || utf8.RuneCountInString(p.NegativePrompt) > a.maxPromptChars {
		return nil, badRequest("negative_prompt", "string_above_max_length", "'negative_prompt' is too long.")
	}

	nKey, sizeKey, stepsKey := "n", "size", "steps"
	if !o.has("n") && o.has("batch_size") {
		nKey = "batch_size"
	}
	if !o.has("size") && o.has("image_size") {
		sizeKey = "image_size"
	}
	if !o.has("steps") && o.has("num_inference_steps") {
		stepsKey = "num_inference_steps"
	}
	if n, ok, e := o.integer(nKey, nKey, 1, int64(a.maxN)); e != nil {
		return nil, e
	} else if ok {
		p.N = int(n)
	}
	if size, ok, e := o.str(sizeKey, sizeKey); e != nil {
		return nil, e
	} else if ok {
		w, h, valid := parseSize(size)
		if !valid {
			return nil, badRequest(sizeKey, "invalid_value", fmt.Sprintf(
				"'%s' must be 'auto' or WIDTHxHEIGHT with each side between 1 and %d, e.g. 1024x1024.", sizeKey, maxSide))
		}
		p.Width, p.Height = w, h
	}
	if steps, ok, e := o.integer(stepsKey, stepsKey, 1, 10000); e != nil {
		return nil, e
	} else if ok {
		p.Steps = int(steps)
	}
	if seed, ok, e := o.integer("seed", "seed", math.MinInt64, math.MaxInt64); e != nil {
		return nil, e
	} else if ok {
		p.Seed = &seed
	}
	if rf, ok, e := o.str("response_format", "response_format"); e != nil {
		return nil, e
	} else if ok {
		if rf != "url" && rf != "b64_json" {
			return nil, badRequest("response_format", "invalid_value", "'response_format' must be 'url' or 'b64_json'.")
		}
		p.ResponseFormat = rf
	}
	if of, ok, e := o.str("output_format", "output_format"); e != nil {
		return nil, e
	} else if ok {
		if of != "png" && of != "jpeg" && of != "webp" {
			return nil, badRequest("output_format", "invalid_value", "'output_format' must be 'png', 'jpeg' or 'webp'.")
		}
		p.OutputFormat = of
	}
	if ar, ok, e := o.str("aspect_ratio", "aspect_ratio"); e != nil {
		return nil, e
	} else if ok {
		// Free-form here: besides "W:H" ratios a backend may list named
		// ones ("match_input_image"); the runner checks it against the
		// model.
		if ar == "" || len(ar) > 64 {
			return nil, badRequest("aspect_ratio", "invalid_value", "'aspect_ratio' must be a ratio such as '16:9' or one of the model's named ratios.")
		}
		p.AspectRatio = ar
	}
	if p.Stream, _, e = o.boolean("stream", "stream"); e != nil {
		return nil, e
	}
	if pi, ok, e := o.integer("partial_images", "partial_images", 0, 3); e != nil {
		return nil, e
	} else if ok {
		p.PartialImages = int(pi)
	}
	if e := p.asyncFields.decode(o); e != nil {
		return nil, e
	}
	return p, nil
}

func (a *API) handleGenerations(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, generationsBodyLimit)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p, e := a.decodeGenerations(body)
	if e != nil {
		a.writeError(w, r, e)
		return
	}
	model, err := a.resolveModel(p.Model)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.runImages(w, r, p.request(model, provider.KindGenerate), p, generationEvents)
}

// request is the job request for p.
func (p *imageParams) request(model string, kind provider.Kind) *gen.Request {
	return &gen.Request{
		Model:          model,
		Kind:           kind,
		Prompt:         p.Prompt,
		NegativePrompt: p.NegativePrompt,
		N:              p.N,
		Width:          p.Width,
		Height:         p.Height,
		AspectRatio:    p.AspectRatio,
		Steps:          p.Steps,
		Seed:           p.Seed,
		OutputFormat:   p.OutputFormat,
	}
}

// runImages starts req and renders the job as an ImagesResponse or, when
// p asks for a stream, as image SSE events named by ev. Generations and
// edits share it; only the event names differ.
func (a *API) runImages(w http.ResponseWriter, r *http.Request, req *gen.Request, p *imageParams, ev imageEvents) {
	ctx := r.Context()
	req.KeyID = server.KeyID(ctx)
	job, release, done := a.dispatch(w, r, req, jobMode{async: p.Async, stream: p.Stream, responseFormat: p.ResponseFormat, webhookURL: p.WebhookURL})
	if done {
		return
	}
	if job != nil {
		w.Header().Set("X-Easel-Job-Id", job.ID())
		a.streamImages(w, r, job, p, ev)
		return
	}
	snap, ok := a.runSync(w, r, req, release)
	if !ok {
		return
	}
	a.respondImages(w, r, snap, p)
}

// jobMode is how a request wants its job run.
type jobMode struct {
	async, stream  bool
	responseFormat string
	webhookURL     string
}

// dispatch admits req under the caller's limits and either submits it as
// an async job (answering 202), or starts it for a stream (job set), or
// leaves a sync run to the caller (job nil). done means the response is
// written. release ends the admission of a sync run.
func (a *API) dispatch(w http.ResponseWriter, r *http.Request, req *gen.Request, m jobMode) (job *gen.Job, release func(int), done bool) {
	ctx := r.Context()
	async, prefer := wantsAsync(r, m.async)
	if async && m.stream {
		a.writeError(w, r, badRequest("stream", "invalid_value", "'stream' and 'async' cannot be combined; follow the job's events instead."))
		return nil, nil, true
	}
	release, err := a.admit(ctx, req.N)
	if err != nil {
		a.writeError(w, r, err)
		return nil, nil, true
	}
	if async {
		a.submitAsync(w, r, req, asyncParams{prefer: prefer, responseFormat: m.responseFormat, webhookURL: m.webhookURL, release: release})
		return nil, nil, true
	}
	if !m.stream {
		return nil, release, false
	}
	req.Stream = true
	job, err = a.svc.Start(ctx, req)
	if err != nil {
		release(0)
		a.writeError(w, r, err)
		return nil, nil, true
	}
	rel, started := release, job
	go func() {
		<-started.Done()
		rel(produced(started.Snapshot()))
	}()
	return job, nil, false
}

// produced counts a finished job's images.
func produced(sn gen.Snapshot) int {
	n := 0
	for _, img := range sn.Images {
		if img.Key != "" {
			n++
		}
	}
	return n
}

// runSync runs a sync job to its end, honouring an Idempotency-Key: a
// replay waits for the first request's job and gets its outcome. It
// writes the error itself and returns false on failure to run.
func (a *API) runSync(w http.ResponseWriter, r *http.Request, req *gen.Request, release func(int)) (sn gen.Snapshot, ok bool) {
	ctx := r.Context()
	replayed := false
	defer func() {
		// A replay produced nothing new; a failure gives its images back.
		if replayed || !ok {
			release(0)
		} else {
			release(produced(sn))
		}
	}()
	idem, e := idempotencyKey(r)
	if e != nil {
		a.writeError(w, r, e)
		return gen.Snapshot{}, false
	}
	if idem != "" && a.jobs != nil {
		keyID := server.KeyID(ctx)
		hash := jobs.RequestHash(req, jobs.Submission{KeyID: keyID, Endpoint: r.URL.Path})
		id, replay, err := a.jobs.ClaimSync(ctx, keyID, idem, hash)
		if err != nil {
			if errors.Is(err, jobs.ErrIdempotencyMismatch) {
				err = errIdempotencyReused
			}
			a.writeError(w, r, err)
			return gen.Snapshot{}, false
		}
		if replay {
			v, err := a.jobs.Wait(ctx, id, keyID)
			if err == nil {
				w.Header().Set("X-Easel-Job-Id", id)
				w.Header().Set("Idempotent-Replayed", "true")
				replayed = true
				return snapshotOf(v), true
			}
			if !errors.Is(err, jobs.ErrNotFound) {
				a.writeError(w, r, err)
				return gen.Snapshot{}, false
			}
			// The first attempt died with its process: run it now.
		}
		req.JobID = id
	}
	job, snap, err := a.runToEnd(ctx, req)
	if job != nil {
		w.Header().Set("X-Easel-Job-Id", job.ID())
	}
	if err != nil {
		a.writeError(w, r, err)
		return gen.Snapshot{}, false
	}
	return snap, true
}

// snapshotOf turns a finished job's view into the snapshot sync
// responses render.
func snapshotOf(v *jobs.View) gen.Snapshot {
	rec := v.Record
	sn := gen.Snapshot{ID: rec.ID, Model: rec.Model, Backend: rec.Backend, Status: gen.Status(rec.Status),
		Created: rec.Created, Started: rec.Started, Finished: rec.Finished, N: rec.N}
	for _, img := range rec.Images {
		sn.Images = append(sn.Images, gen.StoredImage{Key: img.Key, MIME: img.MIME, Width: img.Width, Height: img.Height, Bytes: img.Bytes})
	}
	if rec.Error != nil {
		sn.Err = recordError(rec.Error)
	}
	return sn
}

// respondImages renders a finished job as an ImagesResponse.
func (a *API) respondImages(w http.ResponseWriter, r *http.Request, snap gen.Snapshot, p *imageParams) {
	ctx := r.Context()
	if snap.Status != gen.StatusSucceeded {
		a.writeError(w, r, jobError(snap))
		return
	}
	if len(snap.Images) != p.N {
		a.writeError(w, r, &provider.Error{Kind: provider.KindProtocol,
			Message: fmt.Sprintf("The backend produced %d images instead of %d.", len(snap.Images), p.N)})
		return
	}
	resp := imagesResponse{
		Created:      snap.Created.Unix(),
		Data:         make([]imageData, 0, len(snap.Images)),
		Background:   "opaque",
		Quality:      "auto",
		OutputFormat: formatOf(snap.Images[0]),
		Size:         sizeOf(snap.Images[0]),
	}
	base := a.baseURL(r)
	for _, img := range snap.Images {
		if p.ResponseFormat == "url" {
			resp.Data = append(resp.Data, imageData{URL: a.signer.URL(base, img.Key, a.urlTTL)})
			continue
		}
		b64, err := a.readB64(ctx, img)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		resp.Data = append(resp.Data, imageData{B64JSON: b64})
	}
	writeJSON(w, http.StatusOK, resp)
}

// runToEnd runs req on the request's own goroutine and returns its job and
// final snapshot. err is the Service's refusal (job nil), or ctx's error
// when the client left before the job succeeded: the job has then already
// been cancelled through ctx.
func (a *API) runToEnd(ctx context.Context, req *gen.Request) (*gen.Job, gen.Snapshot, error) {
	job, err := a.svc.Run(ctx, req)
	if err != nil {
		return nil, gen.Snapshot{}, err
	}
	snap := job.Snapshot()
	if snap.Status != gen.StatusSucceeded && ctx.Err() != nil {
		return job, snap, ctx.Err()
	}
	return job, snap, nil
}

type imagesResponse struct {
	Created      int64       `json:"created"`
	Data         []imageData `json:"data"`
	Background   string      `json:"background"`
	OutputFormat string      `json:"output_format"`
	Quality      string      `json:"quality"`
	Size         string      `json:"size"`
}

type imageData struct {
	B64JSON string `json:"b64_json,omitempty"`
	URL     string `json:"url,omitempty"`
}

func formatOf(img gen.StoredImage) string {
	if img.Format != "" {
		return img.Format
	}
	switch img.MIME {
	case "image/jpeg":
		return "jpeg"
	case "image/webp":
		return "webp"
	}
	return "png"
}

func sizeOf(img gen.StoredImage) string {
	if img.Width <= 0 || img.Height <= 0 {
		return "auto"
	}
	return strconv.Itoa(img.Width) + "x" + strconv.Itoa(img.Height)
}

// readB64 encodes a stored result from the stored bytes, so b64_json and
// url always carry the same image.
func (a *API) readB64(ctx context.Context, img gen.StoredImage) (string, error) {
	if img.Key == "" {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: "An image of the job is missing."}
	}
	rc, _, err := a.svc.Blobs().Get(ctx, img.Key)
	if err != nil {
		return "", fmt.Errorf("opening stored image %s: %w", img.Key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxStoredImage+1))
	if err != nil {
		return "", fmt.Errorf("reading stored image %s: %w", img.Key, err)
	}
	if len(data) > maxStoredImage {
		return "", fmt.Errorf("stored image %s is over %d bytes", img.Key, maxStoredImage)
	}
	return base64.StdEncoding.EncodeToString(data), nil
}

// Streamed image events. Their "type" repeats the event name because the
// SDKs dispatch on the data, not on the event line.
type imageCompletedEvent struct {
	Type         string      `json:"type"`
	B64JSON      string      `json:"b64_json"`
	CreatedAt    int64       `json:"created_at"`
	Size         string      `json:"size"`
	Quality      string      `json:"quality"`
	Background   string      `json:"background"`
	OutputFormat string      `json:"output_format"`
	Usage        imagesUsage `json:"usage"`
}

type imagesUsage struct {
	TotalTokens        int          `json:"total_tokens"`
	InputTokens        int          `json:"input_tokens"`
	OutputTokens       int          `json:"output_tokens"`
	InputTokensDetails tokenDetails `json:"input_tokens_details"`
}

type tokenDetails struct {
	TextTokens  int `json:"text_tokens"`
	ImageTokens int `json:"image_tokens"`
}

type imagePartialEvent struct {
	Type              string `json:"type"`
	B64JSON           string `json:"b64_json"`
	CreatedAt         int64  `json:"created_at"`
	Size              string `json:"size"`
	Quality           string `json:"quality"`
	Background        string `json:"background"`
	OutputFormat      string `json:"output_format"`
	PartialImageIndex int    `json:"partial_image_index"`
}

// imageProgressEvent is easel's extension event; OpenAI clients skip types
// they do not know.
type imageProgressEvent struct {
	Type       string  `json:"type"`
	CreatedAt  int64   `json:"created_at"`
	Stage      string  `json:"stage"`
	ImageIndex int     `json:"image_index"`
	Position   int     `json:"position,omitempty"`
	QueueSize  int     `json:"queue_size,omitempty"`
	Step       int     `json:"step,omitempty"`
	Total      int     `json:"total,omitempty"`
	Progress   float64 `json:"progress,omitempty"`
	Message    string  `json:"message,omitempty"`
	Source     string  `json:"source,omitempty"`
}

type streamErrorEvent struct {
	Type  string      `json:"type"`
	Error errorObject `json:"error"`
}

// imageEvents names the SSE events of one image endpoint; the SDKs tell
// generations from edits by these names.
type imageEvents struct {
	completed, partial, progress string
}

var (
	generationEvents = imageEvents{
		completed: "image_generation.completed",
		partial:   "image_generation.partial_image",
		progress:  "image_generation.progress",
	}
	editEvents = imageEvents{
		completed: "image_edit.completed",
		partial:   "image_edit.partial_image",
		progress:  "image_edit.progress",
	}
)

// streamImages renders a running job as an image SSE stream. From here on
// every answer, including failures, goes into the stream: a client that
// asked for a stream silently drops a JSON body.
func (a *API) streamImages(w http.ResponseWriter, r *http.Request, job *gen.Job, p *imageParams, names imageEvents) {
	ctx := r.Context()
	sse := startSSE(w)
	requested := "auto"
	if p.Width > 0 {
		requested = strconv.Itoa(p.Width) + "x" + strconv.Itoa(p.Height)
	}
	next := 0 // next image index to send; completed events go out in order
	ready := map[int]bool{}
	partials := 0

	sendCompleted := func(i int) error {
		snap := job.Snapshot()
		if i >= len(snap.Images) || snap.Images[i].Key == "" {
			return &provider.Error{Kind: provider.KindProtocol, Message: "An image of the job is missing."}
		}
		img := snap.Images[i]
		b64, err := a.readB64(ctx, img)
		if err != nil {
			return err
		}
		if len(b64) > maxSSELine {
			return badRequest("output_format", "image_too_large_to_stream",
				"The image is too large to stream; ask for jpeg or webp, or do not stream.")
		}
		return sse.event(names.completed, imageCompletedEvent{
			Type: names.completed, B64JSON: b64, CreatedAt: a.now().Unix(),
			Size: sizeOf(img), Quality: "auto", Background: "opaque", OutputFormat: formatOf(img),
		})
	}
	flushReady := func() error {
		for ready[next] {
			if err := sendCompleted(next); err != nil {
				return err
			}
			next++
		}
		return nil
	}

	on := func(ev provider.Event) error {
		switch ev.Type {
		case provider.EventQueued, provider.EventStarted, provider.EventProgress, provider.EventLog:
			return sse.event(names.progress, progressEvent(ev, names.progress))
		case provider.EventPreview:
			if partials >= p.PartialImages || len(ev.Data) == 0 {
				return nil
			}
			b64 := base64.StdEncoding.EncodeToString(ev.Data)
			if len(b64) > maxSSELine {
				return nil
			}
			ev := imagePartialEvent{
				Type: names.partial, B64JSON: b64, CreatedAt: ev.Time.Unix(), Size: requested,
				Quality: "auto", Background: "auto", OutputFormat: mimeFormat(ev.MIME), PartialImageIndex: partials,
			}
			partials++
			return sse.event(names.partial, ev)
		case provider.EventImage:
			ready[ev.Index] = true
			return flushReady()
		case provider.EventSucceeded:
			for i := range p.N {
				ready[i] = true
			}
			return flushReady()
		case provider.EventFailed, provider.EventCanceled:
			return jobError(job.Snapshot())
		}
		return nil
	}
	err := follow(ctx, job, a.heartbeat, func() error { return sse.comment("keep-alive") }, on)
	if err == nil {
		return
	}
	if ctx.Err() != nil || sse.err != nil {
		// The client is gone: stop the work nobody will receive.
		job.Cancel()
		a.logError(r, toAPIError(err))
		return
	}
	e := toAPIError(err)
	a.logError(r, e)
	_ = sse.event("error", streamErrorEvent{Type: "error", Error: e.body().Error})
}

func progressEvent(ev provider.Event, name string) imageProgressEvent {
	out := imageProgressEvent{
		Type: name, CreatedAt: ev.Time.Unix(), Stage: string(ev.Type), ImageIndex: ev.Index,
		Position: ev.Position, QueueSize: ev.QueueSize, Step: ev.Step, Total: ev.Total,
		Message: ev.Message, Source: ev.Source,
	}
	switch {
	case ev.Fraction > 0:
		out.Progress = min(ev.Fraction, 1)
	case ev.Total > 0:
		out.Progress = min(float64(ev.Step)/float64(ev.Total), 1)
	}
	return out
}

func mimeFormat(mime string) string {
	switch mime {
	case "image/jpeg":
		return "jpeg"
	case "image/webp":
		return "webp"
	}
	return "png"
}
