package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/store"
)

// View is a job as the API shows it: its record, with the live state of a
// job running in this process laid over it.
type View struct {
	Record  *store.JobRecord
	Request Request
	// Progress summarises how far the job is.
	Progress Progress
	// Live is true while this process runs the job.
	Live bool
}

// Progress is a job's progress summary.
type Progress struct {
	// Fraction is 0..1 over the whole job.
	Fraction float64 `json:"fraction"`
	// ImagesDone counts finished images.
	ImagesDone int `json:"images_done"`
	// QueuePosition is the best position of a waiting image (1-based).
	QueuePosition int `json:"queue_position,omitempty"`
	// QueueSize is the length of that queue, when known.
	QueueSize int `json:"queue_size,omitempty"`
	// Step and Steps are the latest step report.
	Step  int `json:"step,omitempty"`
	Steps int `json:"steps,omitempty"`
	// Message is the latest human text.
	Message string `json:"message,omitempty"`
}

// Get returns job id as keyID sees it (keyID "" sees every job).
func (m *Manager) Get(ctx context.Context, id, keyID string) (*View, error) {
	rec, err := m.record(ctx, id, keyID)
	if err != nil {
		return nil, err
	}
	return m.view(rec), nil
}

// record reads a job's record, or the pending record of a sync job not
// yet written.
func (m *Manager) record(ctx context.Context, id, keyID string) (*store.JobRecord, error) {
	rec, err := m.st.Jobs().Get(ctx, id, keyID)
	if errors.Is(err, store.ErrNotFound) {
		if p, ok := m.sync.get(id); ok && (keyID == "" || p.KeyID == keyID) {
			return p, nil
		}
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// view lays the live state over rec.
func (m *Manager) view(rec *store.JobRecord) *View {
	if job, ok := m.gen.Get(rec.ID); ok && !store.Finished(rec.Status) {
		v := &View{Record: rec}
		v.Request, _ = decodeRequest(rec)
		snap := job.Snapshot()
		applySnapshot(rec, snap)
		v.Live = !snap.Status.Terminal()
		v.Progress = progressOf(snap.N, snap.Images, snap.Progress)
		return v
	}
	return RecordView(rec)
}

// RecordView is a job as its record alone tells it, with no live state:
// what a webhook or a job another process ran shows.
func RecordView(rec *store.JobRecord) *View {
	v := &View{Record: rec}
	v.Request, _ = decodeRequest(rec)
	var imgs []gen.StoredImage
	for _, img := range rec.Images {
		imgs = append(imgs, gen.StoredImage{Key: img.Key})
	}
	v.Progress = progressOf(rec.N, imgs, nil)
	if rec.Status == store.StatusSucceeded {
		v.Progress.Fraction = 1
	}
	return v
}

// progressOf sums per-image progress.
func progressOf(n int, images []gen.StoredImage, per []provider.Event) Progress {
	var p Progress
	if n <= 0 {
		return p
	}
	var sum float64
	var latest time.Time
	for i := range n {
		if i < len(images) && images[i].Key != "" {
			p.ImagesDone++
			sum++
			continue
		}
		if i >= len(per) {
			continue
		}
		ev := per[i]
		switch ev.Type {
		case provider.EventQueued:
			if ev.Position > 0 && (p.QueuePosition == 0 || ev.Position < p.QueuePosition) {
				p.QueuePosition, p.QueueSize = ev.Position, ev.QueueSize
			}
		case provider.EventProgress:
			switch {
			case ev.Total > 0:
				sum += float64(ev.Step) / float64(ev.Total)
			case ev.Fraction > 0:
				sum += ev.Fraction
			}
		}
		if ev.Time.After(latest) {
			latest = ev.Time
			if ev.Total > 0 {
				p.Step, p.Steps = ev.Step, ev.Total
			}
			if ev.Message != "" {
				p.Message = ev.Message
			}
		}
	}
	p.Fraction = min(sum/float64(n), 1)
	return p
}

// List returns keyID's jobs newest first ("" lists every key's).
func (m *Manager) List(ctx context.Context, keyID, cursor string, limit int) ([]*View, string, error) {
	recs, next, err := m.st.Jobs().List(ctx, keyID, cursor, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]*View, 0, len(recs))
	for _, rec := range recs {
		out = append(out, m.view(rec))
	}
	return out, next, nil
}

// cancelWait bounds how long Cancel waits for a running job to stop.
const cancelWait = 10 * time.Second

// Cancel stops job id. A queued async job is canceled in its record (its
// queue entry then finds nothing to do); a running one is cancelled in
// place and its worker records the end. A finished job is returned as it
// is.
func (m *Manager) Cancel(ctx context.Context, id, keyID string) (*View, error) {
	rec, err := m.record(ctx, id, keyID)
	if err != nil {
		return nil, err
	}
	if store.Finished(rec.Status) {
		return m.view(rec), nil
	}
	m.mu.Lock()
	a := m.active[id]
	var job *gen.Job
	if a != nil {
		a.cancelRequested = true
		job = a.job
	}
	m.mu.Unlock()
	if job == nil && a == nil {
		if j, ok := m.gen.Get(id); ok {
			job = j // a sync job, or an async one between claim and start
		}
	}
	switch {
	case job != nil:
		job.Cancel()
		wctx, stop := context.WithTimeout(ctx, cancelWait)
		defer stop()
		select {
		case <-job.Done():
		case <-wctx.Done():
		}
		// The worker writes the final record right after the job ends.
		m.waitFinal(wctx, id)
	case a == nil:
		if err := m.cancelQueued(ctx, id); err != nil {
			return nil, err
		}
	default:
		// Claimed by a worker that has not started the job: the worker
		// sees cancelRequested and cancels it at once.
		wctx, stop := context.WithTimeout(ctx, cancelWait)
		defer stop()
		m.waitFinal(wctx, id)
	}
	return m.Get(ctx, id, keyID)
}

// waitFinal waits until job id's record is final, or ctx ends.
func (m *Manager) waitFinal(ctx context.Context, id string) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		rec, err := m.record(ctx, id, "")
		if err != nil || store.Finished(rec.Status) {
			return
		}
		if _, pending := m.sync.get(id); pending {
			if j, ok := m.gen.Get(id); ok && j.Snapshot().Status.Terminal() {
				return // a sync job: its record is written behind
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cancelQueued cancels a job no worker holds, with its webhook.
func (m *Manager) cancelQueued(ctx context.Context, id string) error {
	return m.finish(ctx, id, gen.Snapshot{
		ID:       id,
		Status:   gen.StatusCanceled,
		Finished: m.opts.Now().UTC().Truncate(time.Millisecond),
		Err:      &provider.Error{Kind: provider.KindCanceled, Message: "job canceled"},
	})
}

// followPoll is how often Follow rereads the record of a job waiting in
// the queue (a worker of this process starting it wakes Follow at once).
const followPoll = 500 * time.Millisecond

// Follow calls emit with job id's events: first those so far, then live
// ones, until the job has ended; it returns the final view. A job this
// process is not running (queued, or finished before a restart) is
// described from its record. emit's error stops Follow.
func (m *Manager) Follow(ctx context.Context, id, keyID string, emit func(provider.Event) error) (*View, error) {
	rec, err := m.record(ctx, id, keyID)
	if err != nil {
		return nil, err
	}
	// Every replay starts with the job's acceptance, whichever process
	// or record the rest comes from, so two replays of a job agree.
	if err := emit(provider.Event{Type: provider.EventQueued, Time: rec.Created, Source: "easel"}); err != nil {
		return nil, err
	}
	sent := 0 // events of the current in-memory run already sent
	var current *gen.Job
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		if job, ok := m.gen.Get(id); ok {
			if job != current {
				current, sent = job, 0
			}
			past, live, stop := job.Subscribe()
			for _, ev := range past[min(sent, len(past)):] {
				if err := emit(ev); err != nil {
					stop()
					return nil, err
				}
				sent++
			}
			for ev := range live {
				if ev.Type == provider.EventPreview {
					continue
				}
				if err := emit(ev); err != nil {
					stop()
					return nil, err
				}
				sent++
			}
			stop()
			if job.Snapshot().Status.Terminal() {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				m.waitFinal(wctx, id)
				cancel()
				return m.Get(ctx, id, keyID)
			}
			// The subscriber fell behind and was dropped; resubscribe.
			continue
		}
		if rec, err = m.record(ctx, id, keyID); err != nil {
			return nil, err
		}
		if store.Finished(rec.Status) {
			for _, ev := range recordEvents(rec, sent > 0) {
				if err := emit(ev); err != nil {
					return nil, err
				}
			}
			return m.view(rec), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.startSignal(id):
		case <-t.C:
		}
	}
}

// startSignal returns a channel closed when a worker of this process
// starts job id.
func (m *Manager) startSignal(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.active[id]; a != nil && a.job != nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	c, ok := m.starting[id]
	if !ok {
		c = make(chan struct{})
		m.starting[id] = c
	}
	return c
}

// started wakes the followers of job id.
func (m *Manager) started(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.starting[id]; ok {
		close(c)
		delete(m.starting, id)
	}
}

// recordEvents describes a finished job from its record, after its
// acceptance: its history when no live event was sent (those died with an
// earlier process), else only its end.
func recordEvents(rec *store.JobRecord, onlyEnd bool) []provider.Event {
	var evs []provider.Event
	if !onlyEnd {
		if !rec.Started.IsZero() {
			evs = append(evs, provider.Event{Type: provider.EventStarted, Time: rec.Started})
		}
		for i, img := range rec.Images {
			if img.Key != "" {
				evs = append(evs, provider.Event{Type: provider.EventImage, Index: i, Time: rec.Finished})
			}
		}
	}
	end := provider.Event{Time: rec.Finished}
	switch rec.Status {
	case store.StatusSucceeded:
		end.Type = provider.EventSucceeded
	case store.StatusCanceled:
		end.Type = provider.EventCanceled
	default:
		end.Type = provider.EventFailed
	}
	if rec.Error != nil {
		end.Message = rec.Error.Message
	}
	return append(evs, end)
}

// ClaimSync claims an Idempotency-Key for a sync job. It returns the id
// the new job must run under, or, when the key was already used for the
// same request, that job's id and replay true; a key used for another
// request is ErrIdempotencyMismatch. A replayed id may have no job (its
// process died before recording it): Wait then says ErrNotFound and the
// caller runs the request under that id.
func (m *Manager) ClaimSync(ctx context.Context, keyID, idemKey, requestHash string) (id string, replay bool, err error) {
	id = gen.NewJobID()
	prev, conflict, err := m.st.Idempotency().Claim(ctx, keyID, idemKey, requestHash, id, m.opts.Now().Add(m.opts.IdempotencyTTL))
	switch {
	case err != nil:
		return "", false, err
	case conflict:
		return "", false, ErrIdempotencyMismatch
	case prev != "":
		return prev, true, nil
	}
	return id, false, nil
}

// Wait waits until job id has ended and returns it, or ErrNotFound when
// no such job exists here.
func (m *Manager) Wait(ctx context.Context, id, keyID string) (*View, error) {
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		if job, ok := m.gen.Get(id); ok {
			if _, err := job.Wait(ctx); err != nil {
				return nil, err
			}
			m.waitFinal(ctx, id)
		}
		v, err := m.Get(ctx, id, keyID)
		if err != nil {
			return nil, err
		}
		if store.Finished(v.Record.Status) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
