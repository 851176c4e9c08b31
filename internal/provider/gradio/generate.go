package gradio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
	"github.com/easelgw/easel/internal/retryafter"
)

// cancelTimeout bounds the best-effort cancel and reset calls made after
// the job's own context is gone.
const cancelTimeout = 5 * time.Second

// errStalled is the stream context's cause when the upstream went silent.
var errStalled = errors.New("upstream stream stalled")

// errJoinServerError marks a join answered with HTTP 500: in Gradio, an
// unknown fn_index, i.e. the Space changed under us.
var errJoinServerError = errors.New("join answered HTTP 500")

// Generate runs one job on the app: upload inputs, join the queue, follow
// the session stream, download the result.
func (p *Provider) Generate(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	if req == nil {
		return nil, refuse(provider.KindBadRequest, "no request")
	}
	if emit == nil {
		emit = func(provider.Event) {}
	}
	if ctx.Err() != nil {
		return nil, upstream.CanceledError(ctx, "starting")
	}
	if err := p.checkRequest(req); err != nil {
		return nil, err
	}
	log := p.log.With("job", req.JobID)

	p.mu.Lock()
	cached := p.space
	p.mu.Unlock()
	sp, err := p.loadSpace(ctx, false)
	if err != nil {
		return nil, err
	}
	ep, err := sp.resolve(p.cfg)
	if err != nil && sp == cached {
		// A miss on a cached config may be drift within its lifetime.
		if sp, err = p.loadSpace(ctx, true); err != nil {
			return nil, err
		}
		ep, err = sp.resolve(p.cfg)
	}
	if err != nil {
		return nil, err
	}
	if n := len(ep.dep.Inputs); n > len(p.cfg.Inputs) {
		return nil, refuse(provider.KindConfig, "endpoint %s takes %d inputs but only %d are configured", ep.label(), n, len(p.cfg.Inputs))
	}
	idx, err := ep.outputIndex(p.cfg.Output)
	if err != nil {
		return nil, err
	}

	var uploaded []fileData
	if p.needsUpload() && len(req.Images) > 0 {
		imgs := req.Images
		if !p.takesGallery() {
			imgs = imgs[:1]
		}
		if uploaded, err = p.upload(ctx, sp, imgs); err != nil {
			return nil, fmt.Errorf("uploading input images: %w", err)
		}
	}
	var mask *fileData
	if req.Mask != nil && p.takesMask() {
		files, err := p.upload(ctx, sp, []provider.InputImage{*req.Mask})
		if err != nil {
			return nil, fmt.Errorf("uploading the mask: %w", err)
		}
		mask = &files[0]
	}

	session, err := newSessionHash()
	if err != nil {
		return nil, err
	}
	var eventID string
	for attempt := 0; ; attempt++ {
		var data []any
		if data, err = p.buildData(ep, req, uploaded, mask); err != nil {
			return nil, err
		}
		eventID, err = p.join(ctx, sp, ep, data, session)
		if err == nil {
			if ctx.Err() != nil {
				// The client left while the join was in flight: the Space
				// has the event now, so tell it to drop the work.
				p.cancelUpstream(ctx, sp, ep, session, eventID)
				return nil, upstream.CanceledError(ctx, "joining the queue")
			}
			break
		}
		if !errors.Is(err, errJoinServerError) {
			return nil, err
		}
		if attempt > 0 {
			return nil, &provider.Error{Kind: provider.KindConfig, Message: fmt.Sprintf("the app keeps failing to join endpoint %s (HTTP 500): the Space may have changed; check api_name and inputs", ep.label()), NotStarted: true, Err: err}
		}
		log.Info("gradio join failed with HTTP 500; re-reading /config", "endpoint", ep.label())
		if sp, err = p.loadSpace(ctx, true); err != nil {
			return nil, err
		}
		if ep, err = sp.resolve(p.cfg); err != nil {
			return nil, err
		}
		if idx, err = ep.outputIndex(p.cfg.Output); err != nil {
			return nil, err
		}
	}
	log.Debug("gradio job joined", "endpoint", ep.label(), "event_id", eventID)
	emit(provider.Event{Type: provider.EventAccepted, Index: req.Index, UpstreamID: eventID})

	output, live, err := p.follow(ctx, sp, session, eventID, req.Index, idx, emit)
	if err != nil {
		if live {
			p.cancelUpstream(ctx, sp, ep, session, eventID)
		}
		if ctx.Err() != nil {
			return nil, upstream.CanceledError(ctx, "waiting for the upstream")
		}
		return nil, err
	}

	comp, err := parseCompletion(output, idx, p.cfg.Output.Kind, p.cfg.Output.SeedIndex)
	if err != nil {
		return nil, err
	}
	n := max(req.N, 1)
	files := comp.files
	if len(files) > n {
		files = files[:n]
	}
	res := &provider.Result{UpstreamID: eventID}
	for _, f := range files {
		img, err := p.fetchImage(ctx, sp, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil, upstream.CanceledError(ctx, "downloading the result")
			}
			return nil, err
		}
		img.Seed = comp.seed
		res.Images = append(res.Images, img)
	}
	return res, nil
}

// checkRequest refuses requests the input mapping cannot express.
func (p *Provider) checkRequest(req *provider.Request) error {
	if !p.needsUpload() {
		if len(req.Images) > 0 || req.Kind == provider.KindEdit {
			return refuse(provider.KindBadRequest, "this backend does not take input images")
		}
		return nil
	}
	if len(req.Images) == 0 {
		for _, in := range p.cfg.Inputs {
			if in.From == "image" && in.Default == nil {
				return refuse(provider.KindBadRequest, "this backend needs an input image")
			}
		}
	}
	if max := p.Capabilities().MaxInputImages; len(req.Images) > max {
		return refuse(provider.KindBadRequest, "this backend takes at most %d input images", max)
	}
	return nil
}

func (p *Provider) takesGallery() bool {
	for _, in := range p.cfg.Inputs {
		if in.From == "images" {
			return true
		}
	}
	return false
}

// newSessionHash returns a fresh session id: 12 base-36 characters, like the
// official client's, so each job has its own stream and cancel scope.
func newSessionHash() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a session hash: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:]), nil
}

type joinBody struct {
	Data        []any  `json:"data"`
	EventData   any    `json:"event_data"`
	FnIndex     int    `json:"fn_index"`
	TriggerID   any    `json:"trigger_id"`
	SessionHash string `json:"session_hash"`
}

// join enqueues the event and returns its event id.
func (p *Provider) join(ctx context.Context, sp *spaceState, ep *endpoint, data []any, session string) (string, error) {
	body, err := json.Marshal(joinBody{Data: data, FnIndex: ep.dep.fnIndex(), SessionHash: session})
	if err != nil {
		return "", &provider.Error{Kind: provider.KindConfig, Message: "encoding the inputs failed", NotStarted: true, Err: err}
	}
	// The join runs on a context detached from the caller's: if the caller
	// left mid-request we could not learn the event id the Space already
	// queued, and could not cancel it. Generate checks the caller's context
	// right after and cancels upstream. RequestTimeout still bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.RequestTimeout)
	defer cancel()
	req, err := p.newRequest(ctx, http.MethodPost, p.base+sp.prefix+"/queue/join", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", transportError(ctx, err)
	}
	defer resp.Body.Close()
	rb, tooBig, rerr := upstream.ReadLimited(resp.Body, maxSmallBody)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		// Gradio's queue-full answer carries no Retry-After; leave it zero
		// so the runner's own short backoff paces retries, and the HTTP
		// layer suggests a default wait to the client.
		ra := retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
		return "", &provider.Error{Kind: provider.KindUnavailable, Message: "backend queue is full", RetryAfter: ra, NotStarted: true,
			Err: fmt.Errorf("HTTP 503 from join: %s", bodyMessage(rb))}
	case http.StatusInternalServerError:
		return "", fmt.Errorf("%w: %s", errJoinServerError, bodyMessage(rb))
	default:
		return "", statusError(resp, rb, true)
	}
	if rerr != nil || tooBig {
		// The event may exist: we cannot tell, so not NotStarted.
		return "", &provider.Error{Kind: provider.KindUpstream, Message: "reading the join answer failed", Err: rerr}
	}
	var jr struct {
		EventID any `json:"event_id"`
	}
	if err := json.Unmarshal(rb, &jr); err != nil {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: "the join answer is not JSON", Err: err}
	}
	var id string
	switch v := jr.EventID.(type) {
	case string:
		id = v
	case float64:
		id = fmt.Sprint(v)
	}
	if id == "" {
		return "", provider.Errorf(provider.KindProtocol, "the join answer has no event_id")
	}
	return id, nil
}

// follow reads the session stream until our event completes and returns
// its output object. live reports that the event may still be pending or
// running upstream when follow fails (so it is worth cancelling).
func (p *Provider) follow(ctx context.Context, sp *spaceState, session, eventID string, index, outIdx int, emit func(provider.Event)) (output []byte, live bool, err error) {
	sctx, stop := context.WithCancelCause(ctx)
	// draining is set when the finished stream is handed to drainStream,
	// which then owns the body and sctx.
	draining := false
	defer func() {
		if !draining {
			stop(nil)
		}
	}()
	stall := p.cfg.StallTimeout
	timer := time.AfterFunc(stall, func() { stop(errStalled) })
	defer timer.Stop()

	u := p.base + sp.prefix + "/queue/data?session_hash=" + url.QueryEscape(session)
	req, err := p.newRequest(sctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, true, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, true, p.streamError(ctx, sctx, err)
	}
	defer func() {
		if !draining {
			resp.Body.Close()
		}
	}()
	if resp.StatusCode != http.StatusOK {
		body, _, _ := upstream.ReadLimited(resp.Body, maxSmallBody)
		return nil, true, statusError(resp, body, false)
	}
	ir := newIdleReader(resp.Body, timer, stall)
	defer ir.stop()
	// A completion may carry a data: URI image; allow for its base64 size.
	lineCap := int(min(p.cfg.MaxResultBytes/3*4+minLineCap, 1<<30))
	fr := newFrameReader(ir, lineCap)
	started := false
	var generated []json.RawMessage // last full process_generating values
	for {
		frame, err := fr.Next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, true, upstream.CanceledError(ctx, "waiting for the upstream")
			case errors.Is(context.Cause(sctx), errStalled):
				return nil, true, &provider.Error{Kind: provider.KindTimeout, Message: fmt.Sprintf("upstream sent nothing for %s", stall), Err: errStalled}
			case errors.Is(err, errLineTooLong):
				return nil, true, &provider.Error{Kind: provider.KindProtocol, Message: "the upstream sent an oversized stream frame", Err: err}
			case errors.Is(err, io.EOF):
				return nil, false, &provider.Error{Kind: provider.KindUpstream, Message: "stream closed before completion"}
			}
			return nil, false, &provider.Error{Kind: provider.KindUpstream, Message: "stream closed before completion", Err: err}
		}
		m, err := parseMessage(frame)
		if err != nil {
			return nil, true, &provider.Error{Kind: provider.KindProtocol, Message: "the upstream sent a frame that is not JSON", Err: err}
		}
		if m.EventID != nil && *m.EventID != eventID {
			continue // another event of the session; not ours
		}
		switch m.Msg {
		case "estimation":
			ev := provider.Event{Type: provider.EventQueued, Source: "upstream", Index: index}
			if m.Rank != nil && *m.Rank >= 0 {
				ev.Position = int(*m.Rank) + 1
			}
			if m.QueueSize != nil && *m.QueueSize > 0 {
				ev.QueueSize = int(*m.QueueSize)
			}
			if m.RankETA != nil && *m.RankETA > 0 {
				ev.ETA = *m.RankETA
			}
			emit(ev)
		case "process_starts":
			ev := provider.Event{Type: provider.EventStarted, Index: index}
			if m.ETA != nil && *m.ETA > 0 {
				ev.ETA = *m.ETA
			}
			started = true
			emit(ev)
		case "progress":
			if ev, ok := progressEvent(m.ProgressData, index); ok {
				if !started {
					started = true
					emit(provider.Event{Type: provider.EventStarted, Index: index})
				}
				emit(ev)
			}
		case "log":
			if m.Log == nil {
				continue
			}
			text := upstream.StripHTML(*m.Log)
			if m.Title != nil && *m.Title != "" {
				text = upstream.StripHTML(*m.Title) + ": " + text
			}
			emit(provider.Event{Type: provider.EventLog, Index: index, Message: upstream.Clip(text, upstream.MaxMessageLen)})
		case "process_generating":
			var f *fileRef
			generated, f = previewFile(generated, m.Output, outIdx, p.cfg.Output.Kind, sp.protocol != "sse_v1")
			if f == nil {
				continue
			}
			// The download is not stream traffic: pause the stall timer so
			// a slow preview cannot pass for a silent upstream.
			if !timer.Stop() {
				continue // the stall already fired; the next read reports it
			}
			img, err := p.fetchImage(sctx, sp, *f)
			timer.Reset(stall)
			if err != nil {
				p.log.Debug("gradio preview skipped", "event_id", eventID, "err", err)
				continue
			}
			emit(provider.Event{Type: provider.EventPreview, Index: index, Data: img.Data, MIME: img.MIME})
		case "process_completed":
			out, err := completedOutput(m)
			draining = true
			go drainStream(resp.Body, stop, drainTimeout)
			return out, false, err
		case "close_stream":
			return nil, false, &provider.Error{Kind: provider.KindUpstream, Message: "stream closed before completion"}
		case "unexpected_error":
			text := ""
			if m.Message != nil {
				text = upstream.PlainText(*m.Message)
			}
			kind := provider.KindUpstream
			if strings.Contains(strings.ToLower(text), "server stopped") {
				kind = provider.KindUnavailable
			}
			if text == "" {
				text = "the upstream reported an unexpected error"
			}
			return nil, false, &provider.Error{Kind: kind, Message: text}
		}
		// heartbeat and unknown messages: the read itself already reset
		// the stall timer.
	}
}

// Bounds of drainStream: the upstream ends a finished stream at once, so
// anything slower or longer is not worth a connection.
const (
	drainTimeout  = time.Second
	maxDrainBytes = 64 << 10
)

// errDrained is the stream context's cause when draining took too long.
var errDrained = errors.New("finished stream not closed in time")

// drainStream reads what is left of a finished stream (Gradio sends
// close_stream and ends the response right after the completion) and then
// closes it, off the job's path. Read to its end, the connection goes back
// to the client's pool; closed early, it would be torn down and the next
// job would pay a new connection on both sides. A stream that does not end
// within timeout or maxDrainBytes is cut as before. stop cancels the
// stream request's context once done.
func drainStream(body io.ReadCloser, stop context.CancelCauseFunc, timeout time.Duration) {
	t := time.AfterFunc(timeout, func() { stop(errDrained) })
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
	t.Stop()
	_ = body.Close()
	stop(nil)
}

// streamError classifies a failure to open the stream.
func (p *Provider) streamError(ctx, sctx context.Context, err error) error {
	if ctx.Err() != nil {
		return upstream.CanceledError(ctx, "opening the upstream stream")
	}
	if errors.Is(context.Cause(sctx), errStalled) {
		return &provider.Error{Kind: provider.KindTimeout, Message: fmt.Sprintf("upstream sent nothing for %s", p.cfg.StallTimeout), Err: errStalled}
	}
	e := transportError(ctx, err)
	if pe, ok := provider.AsError(e); ok {
		pe.NotStarted = false // the event is already queued
	}
	return e
}

// progressEvent maps the last (innermost) progress bar to an event.
func progressEvent(units []progressUnit, index int) (provider.Event, bool) {
	if len(units) == 0 {
		return provider.Event{}, false
	}
	u := units[len(units)-1]
	ev := provider.Event{Type: provider.EventProgress, Index: index}
	if u.Index != nil && *u.Index >= 0 && *u.Index < 1e9 {
		ev.Step = int(*u.Index)
	}
	if u.Length != nil && *u.Length > 0 && *u.Length < 1e9 {
		ev.Total = int(*u.Length)
	}
	switch {
	case u.Progress != nil && *u.Progress >= 0 && *u.Progress <= 1:
		ev.Fraction = *u.Progress
	case ev.Total > 0:
		ev.Fraction = min(float64(ev.Step)/float64(ev.Total), 1)
	}
	if u.Unit != nil {
		ev.Unit = *u.Unit
	}
	if u.Desc != nil && strings.TrimSpace(*u.Desc) != "" {
		ev.Unit = upstream.StripHTML(*u.Desc)
	}
	return ev, true
}

// completedOutput returns the output of a successful completion, or the
// typed error of a failed or cancelled one.
func completedOutput(m *message) ([]byte, error) {
	var out struct {
		Data  json.RawMessage `json:"data"`
		Error *string         `json:"error"`
		Title *string         `json:"title"`
	}
	if len(m.Output) > 0 && string(m.Output) != "null" {
		if err := json.Unmarshal(m.Output, &out); err != nil {
			return nil, &provider.Error{Kind: provider.KindProtocol, Message: "the completion output is not an object", Err: err}
		}
	}
	success := out.Data != nil
	if m.Success != nil {
		success = *m.Success
	}
	if success {
		if len(out.Data) == 0 || string(out.Data) == "null" {
			return nil, errNoData()
		}
		return m.Output, nil
	}
	title := ""
	if m.Title != nil {
		title = *m.Title
	}
	if (title == "" || title == "Error") && out.Title != nil && *out.Title != "" {
		title = *out.Title
	}
	return nil, appError(out.Error, title)
}

// cancelUpstream asks the app to drop the event, best effort, on a context
// of its own because the job's context is usually what ended.
func (p *Provider) cancelUpstream(ctx context.Context, sp *spaceState, ep *endpoint, session, eventID string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	post := func(path string, v any) {
		body, err := json.Marshal(v)
		if err != nil {
			return
		}
		req, err := p.newRequest(cctx, http.MethodPost, p.base+sp.prefix+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.client.Do(req)
		if err != nil {
			p.log.Warn("gradio "+path+" failed", "event_id", eventID, "err", err)
			return
		}
		_, _, _ = upstream.ReadLimited(resp.Body, maxSmallBody)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			p.log.Warn("gradio "+path+" refused", "event_id", eventID, "status", resp.StatusCode)
		}
	}
	post("/cancel", map[string]any{"session_hash": session, "fn_index": ep.dep.fnIndex(), "event_id": eventID})
	post("/reset", map[string]any{"event_id": eventID})
}

// previewFile tracks a generator's outputs across process_generating frames
// and returns the image file of the latest one, if it changed. With diffs
// (sse_v2 and later) the first frame carries full values and later ones
// lists of [op, path, value] edits; only whole-value replacements of the
// image output are followed, which is how generators send a new preview.
func previewFile(prev []json.RawMessage, output json.RawMessage, outIdx int, kind string, diffs bool) ([]json.RawMessage, *fileRef) {
	var out struct {
		Data []json.RawMessage `json:"data"`
	}
	if json.Unmarshal(output, &out) != nil || out.Data == nil {
		return prev, nil
	}
	var value json.RawMessage
	switch {
	case prev == nil || !diffs:
		prev = out.Data
		if outIdx >= 0 && outIdx < len(out.Data) {
			value = out.Data[outIdx]
		}
	case outIdx >= 0 && outIdx < len(out.Data) && outIdx < len(prev):
		var edits [][]json.RawMessage
		if json.Unmarshal(out.Data[outIdx], &edits) != nil {
			return prev, nil
		}
		for _, e := range edits {
			var op string
			var path []any
			if len(e) == 3 && json.Unmarshal(e[0], &op) == nil && op == "replace" &&
				json.Unmarshal(e[1], &path) == nil && len(path) == 0 {
				value = e[2]
				prev[outIdx] = value
			}
		}
	}
	if value == nil {
		return prev, nil
	}
	files, err := filesOf(value, kind)
	if err != nil || len(files) == 0 {
		return prev, nil
	}
	return prev, &files[0]
}
