package gen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/limit"
	"github.com/easelgw/easel/internal/provider"
)

// errJobDeadline is the cancellation cause when JobTimeout passes.
var errJobDeadline = errors.New("job deadline exceeded")

// errSibling stops a job's other calls once one has failed for good.
var errSibling = errors.New("another call of the job failed")

// Start validates req, creates its job and runs it in the background. The
// job's context derives from ctx, so a synchronous client going away
// cancels the work; callers running detached jobs pass a context that
// outlives the request. It returns *NotFoundError for an unknown model,
// *InvalidError for a request the model cannot serve, and ErrClosed after
// Close.
func (s *Service) Start(ctx context.Context, req *Request) (*Job, error) {
	job, run, err := s.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	go run()
	return job, nil
}

// Run is Start for a caller that would only wait for the job: it runs the
// job on the calling goroutine and returns once the job has ended, with the
// same errors as Start. The job is registered as Start registers it, so Get
// and Subscribe see it while it runs and Close cancels it. Running in place
// spares a synchronous request a goroutine start and a wake-up, which are a
// measurable share of the latency easel adds.
func (s *Service) Run(ctx context.Context, req *Request) (*Job, error) {
	job, run, err := s.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	run()
	return job, nil
}

// Check validates req as Start would, without starting anything, and
// returns the model it resolves to. Async submissions call it before
// answering 202.
func (s *Service) Check(req *Request) (ModelInfo, error) {
	_, mi, err := s.check(req)
	return mi, err
}

func (s *Service) check(req *Request) (*model, ModelInfo, error) {
	if req == nil {
		return nil, ModelInfo{}, &InvalidError{Param: "prompt", Code: "missing_required_parameter", Message: "empty request"}
	}
	m := s.lookup(req.Model)
	if m == nil {
		return nil, ModelInfo{}, &NotFoundError{Model: req.Model}
	}
	mi := m.info()
	if err := s.validate(mi, req); err != nil {
		return nil, ModelInfo{}, err
	}
	return m, mi, nil
}

// prepare validates req, creates and registers its job and returns the
// function that runs it to the end.
func (s *Service) prepare(ctx context.Context, req *Request) (*Job, func(), error) {
	m, mi, err := s.check(req)
	if err != nil {
		return nil, nil, err
	}
	timeout := s.opts.JobTimeout
	if req.Timeout > 0 {
		timeout = req.Timeout
	}
	jctx, cancel := context.WithCancelCause(ctx)
	tctx, stopTimer := context.WithTimeoutCause(jctx, timeout, errJobDeadline)
	id := req.JobID
	if id == "" {
		id = newJobID()
	}
	job := NewJob(id, mi.ID, req.N, cancel)
	f := fitSize(mi.Capabilities, req.Width, req.Height, req.AspectRatio)
	// Nobody else sees the job yet, so its fields can be set directly.
	job.snap.Created = s.opts.Now()
	if !req.Created.IsZero() {
		job.snap.Created = req.Created
	}
	job.snap.Width, job.snap.Height = f.Width, f.Height
	if req.Stream {
		job.subscribeEarly()
	}
	if !s.register(job) {
		stopTimer()
		cancel(ErrClosed)
		return nil, nil, ErrClosed
	}
	r := &run{
		s:      s,
		job:    job,
		m:      m,
		req:    req,
		format: outputFormat(req),
		log:    s.log.With(slog.String("job_id", job.id), slog.String("model", mi.ID)),
		maxN:   max(mi.Capabilities.MaxN, 1),
	}
	run := func() {
		defer s.wg.Done()
		defer cancel(nil)
		defer stopTimer()
		r.run(tctx)
		s.finish(job)
	}
	return job, run, nil
}

// update changes the snapshot without an event (used for state that has
// no event of its own, such as the switch to running); it does nothing
// once the job has ended.
func (j *Job) update(f func(*Snapshot)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.snap.Status.Terminal() {
		f(&j.snap)
	}
}

// run is one job's execution state.
type run struct {
	s      *Service
	job    *Job
	m      *model
	req    *Request
	format string
	log    *slog.Logger
	maxN   int

	mu        sync.Mutex
	nextStart time.Time // earliest start of the next upstream call (Stagger)
	firstErr  error
	resumed   map[int]bool // Resume entries already used

	fitMu  sync.Mutex
	fitted map[string]*fittedInputs // by inputKey
}

// callSpec is one upstream call: images [index, index+n) of the job.
type callSpec struct {
	index, n int
}

// splitN cuts n images into calls of at most maxN.
func splitN(n, maxN int) []callSpec {
	var calls []callSpec
	for i := 0; i < n; i += maxN {
		calls = append(calls, callSpec{index: i, n: min(maxN, n-i)})
	}
	return calls
}

func (r *run) run(ctx context.Context) {
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	calls := splitN(r.req.N, r.maxN)
	var okCalls int
	var okMu sync.Mutex
	one := func(c callSpec) {
		err := r.call(runCtx, c)
		if err == nil {
			okMu.Lock()
			okCalls++
			okMu.Unlock()
			return
		}
		// Errors after the job was stopped are consequences, not causes.
		if runCtx.Err() != nil {
			return
		}
		r.mu.Lock()
		if r.firstErr == nil {
			r.firstErr = err
		}
		r.mu.Unlock()
		stop(errSibling)
	}
	if len(calls) == 1 {
		// The common single call runs here: a goroutine of its own would
		// only add a start and a wake-up to every request's latency.
		one(calls[0])
	} else {
		var wg sync.WaitGroup
		for _, c := range calls {
			wg.Go(func() { one(c) })
		}
		wg.Wait()
	}
	r.end(ctx, okCalls == len(calls))
}

// end publishes the terminal event together with the final state.
func (r *run) end(ctx context.Context, allOK bool) {
	now := r.s.opts.Now()
	if allOK {
		r.job.Publish(provider.Event{Type: provider.EventSucceeded}, func(sn *Snapshot) {
			sn.Status = StatusSucceeded
			sn.Finished = now
		})
		return
	}
	r.mu.Lock()
	err := r.firstErr
	r.mu.Unlock()
	status := StatusFailed
	var pe *provider.Error
	switch {
	case err != nil:
		var ok bool
		if pe, ok = provider.AsError(err); !ok {
			r.log.Error("job failed on an internal error", slog.Any("err", err))
			pe = &provider.Error{Kind: provider.KindUpstream, Message: "internal error", Err: err}
		}
	default:
		cause := context.Cause(ctx)
		switch {
		case errors.Is(cause, errJobDeadline):
			pe = &provider.Error{Kind: provider.KindTimeout, Message: "job exceeded its deadline of " + seconds(r.s.opts.JobTimeout), Err: cause}
		case errors.Is(cause, context.DeadlineExceeded):
			pe = &provider.Error{Kind: provider.KindTimeout, Message: "job exceeded its caller's deadline", Err: cause}
		case errors.Is(cause, ErrCanceled):
			status = StatusCanceled
			pe = &provider.Error{Kind: provider.KindCanceled, Message: "job canceled", Err: cause}
		case errors.Is(cause, errShutdown):
			status = StatusCanceled
			pe = &provider.Error{Kind: provider.KindCanceled, Message: "job canceled: server shutting down", Err: cause}
		default:
			status = StatusCanceled
			pe = &provider.Error{Kind: provider.KindCanceled, Message: "client disconnected", Err: cause}
		}
	}
	ev := provider.Event{Type: provider.EventFailed, Message: pe.Message}
	if status == StatusCanceled {
		ev.Type = provider.EventCanceled
	}
	r.job.Publish(ev, func(sn *Snapshot) {
		sn.Status = status
		sn.Finished = now
		sn.Err = pe
	})
}

// seconds spells d as "300s" or "1.5s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// call produces and stores images [c.index, c.index+c.n).
func (r *run) call(ctx context.Context, c callSpec) error {
	res, err := r.generate(ctx, c)
	if err != nil {
		return err
	}
	if len(res.Images) < c.n {
		return &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("backend returned %d images, expected %d", len(res.Images), c.n)}
	}
	for k := range c.n {
		if err := r.store(ctx, c.index+k, res.Images[k]); err != nil {
			return err
		}
	}
	return nil
}

// store converts one result to the requested format, stores it and
// announces it.
func (r *run) store(ctx context.Context, idx int, img provider.Image) error {
	maxPx := r.s.opts.MaxPixels
	unreadable := func(err error) error {
		msg := "backend returned an image easel cannot read"
		if errors.Is(err, imageio.ErrTooLarge) {
			msg = "backend returned an image larger than allowed"
		}
		return &provider.Error{Kind: provider.KindProtocol, Message: msg, Err: err}
	}
	// The header is read once: when the upstream already sent the asked
	// format, its size is the stored image's and nothing is re-encoded.
	w, h, mime, err := imageio.DecodeConfig(img.Data, maxPx)
	if err != nil {
		return unreadable(err)
	}
	out := img.Data
	if !isFormat(mime, r.format) {
		if out, mime, err = imageio.Convert(img.Data, r.format, maxPx); err != nil {
			return unreadable(err)
		}
		if w, h, _, err = imageio.DecodeConfig(out, maxPx); err != nil {
			return fmt.Errorf("reading converted image %d: %w", idx, err)
		}
	}
	key, err := r.s.opts.Blobs.Put(ctx, out, mime)
	if err != nil {
		return fmt.Errorf("storing image %d: %w", idx, err)
	}
	st := StoredImage{
		Key:    key,
		MIME:   mime,
		Format: imageio.FormatOf(mime),
		Width:  w,
		Height: h,
		Bytes:  int64(len(out)),
		Seed:   img.Seed,
	}
	r.job.Publish(provider.Event{Type: provider.EventImage, Index: idx}, func(sn *Snapshot) {
		if idx < len(sn.Images) {
			sn.Images[idx] = st
		}
	})
	return nil
}

// isFormat reports whether bytes of type mime already are in format, one
// of the output formats; imageio.Convert would return them unchanged.
func isFormat(mime, format string) bool {
	switch format {
	case "png", "jpeg", "webp":
		return imageio.FormatOf(mime) == format
	}
	return false
}

// try makes one upstream call on backend b: wait for a slot, respect the
// stagger, call the provider.
func (r *run) try(ctx context.Context, b *backend, c callSpec) (res *provider.Result, err error) {
	caps := b.Provider.Capabilities()
	preq := r.providerRequest(caps, c)
	// Inputs are prepared before waiting for a slot: scaling is easel's own
	// work and must not hold a backend slot.
	if preq.Images, preq.Mask, err = r.fitInputs(caps); err != nil {
		return nil, err
	}

	actx := ctx
	if b.QueueTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, b.QueueTimeout)
		defer cancel()
	}
	release, err := b.slots.Acquire(actx, func(pos, qlen int) {
		r.job.Publish(provider.Event{Type: provider.EventQueued, Source: "easel", Position: pos, QueueSize: qlen, Index: c.index}, nil)
	})
	switch {
	case errors.Is(err, limit.ErrQueueFull):
		return nil, &provider.Error{Kind: provider.KindUnavailable, NotStarted: true, RetryAfter: busyRetryAfter,
			Message: fmt.Sprintf("backend %s is busy: its queue is full", b.Name)}
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, &provider.Error{Kind: provider.KindUnavailable, NotStarted: true, RetryAfter: busyRetryAfter,
			Message: fmt.Sprintf("backend %s is busy: no free slot within %s", b.Name, seconds(b.QueueTimeout)), Err: err}
	}
	defer release()

	if err := r.waitStagger(ctx); err != nil {
		return nil, err
	}
	now := r.s.opts.Now()
	r.job.update(func(sn *Snapshot) {
		// The latest backend to start is the one reported: after a
		// failover it is the one doing the work.
		sn.Backend = b.Name
		sn.Width, sn.Height = preq.Width, preq.Height
		if sn.Status == StatusQueued {
			sn.Status = StatusRunning
			sn.Started = now
		}
	})
	defer func() {
		// A provider bug must fail one job, not the whole process.
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("provider of backend %s panicked: %v", b.Name, p)
		}
	}()
	if id := r.resumeID(b, c); id != "" {
		r.log.Info("resuming upstream work saved before a restart", slog.String("backend", b.Name), slog.String("upstream_id", id))
		res, err = b.Provider.(provider.Resumer).Resume(ctx, id, preq, r.emitter(c))
	} else {
		res, err = b.Provider.Generate(ctx, preq, r.emitter(c))
	}
	if err == nil && res == nil {
		err = &provider.Error{Kind: provider.KindProtocol, Message: "backend returned no result"}
	}
	return res, err
}

// resumeID returns the saved upstream id for call c on backend b when the
// backend can resume it, once: a failed resume falls back to submitting.
func (r *run) resumeID(b *backend, c callSpec) string {
	if _, ok := b.Provider.(provider.Resumer); !ok {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.req.Resume {
		if p.Index == c.index && p.Backend == b.Name && p.UpstreamID != "" {
			if r.resumed == nil {
				r.resumed = make(map[int]bool)
			}
			if r.resumed[i] {
				return ""
			}
			r.resumed[i] = true
			return p.UpstreamID
		}
	}
	return ""
}

// providerRequest builds call c's request for a backend with caps: the
// size fitted to it, and the optional controls it lacks dropped.
func (r *run) providerRequest(caps provider.Capabilities, c callSpec) *provider.Request {
	q := r.req
	f := fitSize(caps, q.Width, q.Height, q.AspectRatio)
	kind := q.Kind
	if kind == "" {
		kind = provider.KindGenerate
	}
	p := &provider.Request{
		JobID:       r.job.id,
		Kind:        kind,
		Model:       r.m.ID,
		Prompt:      q.Prompt,
		N:           c.n,
		Width:       f.Width,
		Height:      f.Height,
		AspectRatio: f.AspectRatio,
		Images:      q.Images,
		Mask:        q.Mask,
		Index:       c.index,
	}
	if caps.NegativePrompt {
		p.NegativePrompt = q.NegativePrompt
	}
	if caps.Steps {
		p.Steps = q.Steps
	}
	if caps.Seed && q.Seed != nil {
		// Each call gets its own seed, or a fanned-out request would draw
		// the same picture several times.
		seed := *q.Seed + int64(c.index)
		p.Seed = &seed
	}
	return p
}

// emitter relays a provider's events to the job: call-wide events get the
// call's first image index, previews keep theirs when it is in the call's
// range, and events only the runner may send are dropped.
func (r *run) emitter(c callSpec) func(provider.Event) {
	return func(ev provider.Event) {
		switch ev.Type {
		case provider.EventImage, provider.EventSucceeded, provider.EventFailed, provider.EventCanceled:
			return
		case provider.EventPreview:
			if ev.Index < c.index || ev.Index >= c.index+c.n {
				ev.Index = c.index
			}
		default:
			ev.Index = c.index
		}
		if ev.Type == provider.EventQueued && ev.Source == "" {
			ev.Source = "upstream"
		}
		var record func(*Snapshot)
		if ev.UpstreamID != "" {
			record = func(sn *Snapshot) {
				if len(sn.UpstreamIDs) < sn.N {
					sn.UpstreamIDs = append(sn.UpstreamIDs, make([]string, sn.N-len(sn.UpstreamIDs))...)
				}
				for i := c.index; i < c.index+c.n && i < len(sn.UpstreamIDs); i++ {
					sn.UpstreamIDs[i] = ev.UpstreamID
				}
			}
		}
		r.job.Publish(ev, record)
	}
}

// waitStagger spaces the starts of the job's upstream calls by at least
// Stagger. The next start is booked from the moment a call actually goes,
// not from when it was planned, so a late timer never shortens a gap.
func (r *run) waitStagger(ctx context.Context) error {
	d := r.s.opts.Stagger
	if d <= 0 {
		return nil
	}
	for {
		r.mu.Lock()
		now := time.Now()
		if !now.Before(r.nextStart) {
			r.nextStart = now.Add(d)
			r.mu.Unlock()
			return nil
		}
		at := r.nextStart
		r.mu.Unlock()
		if err := sleep(ctx, at.Sub(now)); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
