package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/webhook"
)

// generateArgs is the queue entry of an async job: only its id, since the
// record holds the rest.
type generateArgs struct {
	JobID string `json:"job_id"`
}

// Kind implements river.JobArgs.
func (generateArgs) Kind() string { return "easel.generate" }

// errReplayed ends a submission transaction that found its
// Idempotency-Key already used for the same request.
var errReplayed = errors.New("idempotent replay")

// Submit validates req, stores its inputs and records and queues it as an
// async job in one transaction. With an Idempotency-Key already used for
// the same request it returns that job and replayed true; with one used
// for another request, ErrIdempotencyMismatch. Validation errors are
// gen's (*gen.NotFoundError, *gen.InvalidError).
func (m *Manager) Submit(ctx context.Context, req *gen.Request, sub Submission) (rec *store.JobRecord, replayed bool, err error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, false, ErrStopped
	}
	mi, err := m.gen.Check(req)
	if err != nil {
		return nil, false, err
	}
	queue, ok := m.opts.ModelQueue[mi.ID]
	if !ok {
		return nil, false, fmt.Errorf("model %s has no queue", mi.ID)
	}
	id := gen.NewJobID()
	r := summary(req, sub)
	r.Async = true
	// Inputs are written before the transaction: if it fails they are
	// unreferenced files the retention sweep removes.
	if err := storeInputs(ctx, m.opts.Blobs, req, &r); err != nil {
		return nil, false, err
	}
	now := m.opts.Now().UTC().Truncate(time.Millisecond)
	rec, err = newRecord(id, mi.ID, req, sub, r, now)
	if err != nil {
		return nil, false, err
	}
	rec.InputKeys = inputKeys(&r)
	var existing string
	err = m.st.InTx(ctx, func(tx *sql.Tx) error {
		if sub.IdempotencyKey != "" {
			prev, conflict, err := m.st.ClaimTx(ctx, tx, sub.KeyID, sub.IdempotencyKey, sub.RequestHash, id, now.Add(m.opts.IdempotencyTTL))
			if err != nil {
				return err
			}
			if conflict {
				return ErrIdempotencyMismatch
			}
			if prev != "" {
				existing = prev
				return errReplayed
			}
		}
		if err := m.st.CreateJobTx(ctx, tx, rec); err != nil {
			return err
		}
		if _, err := m.river.InsertTx(ctx, tx, generateArgs{JobID: id}, &river.InsertOpts{Queue: queueName(queue)}); err != nil {
			return fmt.Errorf("queueing job %s: %w", id, err)
		}
		return nil
	})
	switch {
	case errors.Is(err, errReplayed):
		prev, err := m.st.Jobs().Get(ctx, existing, sub.KeyID)
		if err != nil {
			return nil, false, fmt.Errorf("reading the job of an idempotent replay: %w", err)
		}
		return prev, true, nil
	case err != nil:
		return nil, false, err
	}
	if sub.Release != nil {
		m.mu.Lock()
		m.releases[id] = sub.Release
		m.mu.Unlock()
	}
	m.log.Debug("async job queued", slog.String("job_id", id), slog.String("model", mi.ID), slog.String("queue", queueName(queue)))
	return rec, false, nil
}

// generateWorker runs async jobs.
type generateWorker struct {
	river.WorkerDefaults[generateArgs]
	m *Manager
}

// Work implements river.Worker.
func (w *generateWorker) Work(ctx context.Context, j *river.Job[generateArgs]) error {
	return w.m.work(ctx, j.Args.JobID)
}

// work runs one async job to its end and records it. It returns nil once
// the record is final (whatever the job's outcome), an error for River to
// retry when the record could not be written, and a snooze when shutdown
// interrupted the job: it then runs again after the restart.
func (m *Manager) work(ctx context.Context, id string) error {
	a := &active{}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return river.JobSnooze(0)
	}
	m.active[id] = a
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.active, id)
		m.mu.Unlock()
		m.started(id) // followers reread the record, whatever happened
	}()

	var rec *store.JobRecord
	now := m.opts.Now().UTC().Truncate(time.Millisecond)
	err := m.st.Jobs().Update(ctx, id, func(r *store.JobRecord) error {
		rec = r
		if r.Status == store.StatusQueued {
			r.Status = store.StatusRunning
			r.Started = now
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed by retention; nothing left to do
	}
	if err != nil {
		return fmt.Errorf("marking job %s running: %w", id, err)
	}
	if store.Finished(rec.Status) {
		return nil // canceled while queued, or finished before a crash
	}
	log := m.log.With(slog.String("job_id", id))

	r, err := decodeRequest(rec)
	if err != nil {
		return m.failRecord(ctx, id, provider.KindProtocol, "the job's stored request cannot be read")
	}
	req := genRequest(rec, &r)
	if err := loadInputs(ctx, m.opts.Blobs, &r, req); err != nil {
		log.Error("async job inputs are missing", slog.Any("err", err))
		return m.failRecord(ctx, id, provider.KindProtocol, "the job's input images are no longer stored")
	}
	var rs resumeState
	if len(rec.ResumeState) > 0 {
		if err := json.Unmarshal(rec.ResumeState, &rs); err != nil {
			log.Warn("ignoring unreadable resume state", slog.Any("err", err))
		}
	}
	req.Resume = rs.Points
	req.Timeout = m.opts.AsyncTimeout
	req.Patient = true

	job, err := m.gen.Start(ctx, req)
	if err != nil {
		var inv *gen.InvalidError
		var nf *gen.NotFoundError
		switch {
		case errors.As(err, &inv):
			return m.failRecord(ctx, id, provider.KindBadRequest, inv.Message)
		case errors.As(err, &nf):
			return m.failRecord(ctx, id, provider.KindConfig, nf.Error())
		}
		return river.JobSnooze(0) // shutting down
	}
	m.mu.Lock()
	a.job = job
	cancelNow := a.cancelRequested
	m.mu.Unlock()
	m.started(id)
	if cancelNow {
		job.Cancel()
	}

	m.follow(ctx, id, job, rs, log)
	snap := job.Snapshot()
	m.mu.Lock()
	userCanceled := a.cancelRequested
	m.mu.Unlock()
	if snap.Status == gen.StatusCanceled && !userCanceled && ctx.Err() != nil {
		// Shutdown, not a client: leave the job to run after a restart.
		log.Info("async job interrupted by shutdown; it resumes after a restart")
		return river.JobSnooze(0)
	}
	return m.finish(context.WithoutCancel(ctx), id, snap)
}

// follow saves each upstream id as the upstream accepts work, so a
// restarted gateway resumes it instead of submitting again, and returns
// when the job has ended.
func (m *Manager) follow(ctx context.Context, id string, job *gen.Job, rs resumeState, log *slog.Logger) {
	past, live, stop := job.Subscribe()
	defer stop()
	save := func(ev provider.Event) {
		if ev.Type != provider.EventAccepted || ev.UpstreamID == "" {
			return
		}
		backend := job.Snapshot().Backend
		for _, p := range rs.Points {
			if p.Index == ev.Index && p.Backend == backend && p.UpstreamID == ev.UpstreamID {
				return // resumed: already saved
			}
		}
		rs.Points = append(rs.Points, gen.ResumePoint{Index: ev.Index, Backend: backend, UpstreamID: ev.UpstreamID})
		raw, err := json.Marshal(rs)
		if err != nil {
			return
		}
		err = m.st.Jobs().Update(context.WithoutCancel(ctx), id, func(r *store.JobRecord) error {
			r.ResumeState = raw
			r.UpstreamIDs = append(r.UpstreamIDs, ev.UpstreamID)
			if r.Backend == "" {
				r.Backend = backend
			}
			return nil
		})
		if err != nil {
			log.Warn("saving the upstream id failed; a restart would submit the work again", slog.Any("err", err))
		}
	}
	for _, ev := range past {
		save(ev)
	}
	for ev := range live {
		save(ev)
	}
	<-job.Done()
}

// errFinal ends an update of a record that is already final.
var errFinal = errors.New("job already final")

// finish writes a job's final state and, in the same transaction, queues
// its webhook. A record already final (canceled while the job ran its last
// steps) is left as it is: the user saw that state first.
func (m *Manager) finish(ctx context.Context, id string, snap gen.Snapshot) error {
	var final *store.JobRecord
	err := m.st.InTx(ctx, func(tx *sql.Tx) error {
		err := m.st.UpdateJobTx(ctx, tx, id, func(r *store.JobRecord) error {
			if store.Finished(r.Status) {
				return errFinal
			}
			applySnapshot(r, snap)
			if !store.Finished(r.Status) {
				return fmt.Errorf("job %s ended in state %s", id, r.Status)
			}
			final = r
			return nil
		})
		if err != nil {
			return err
		}
		return m.queueWebhookTx(ctx, tx, final)
	})
	switch {
	case errors.Is(err, errFinal), errors.Is(err, store.ErrNotFound):
		m.released(id, 0)
		return nil
	case err != nil:
		return fmt.Errorf("recording the end of job %s: %w", id, err)
	}
	m.ended(final)
	return nil
}

// failRecord ends a job that cannot run at all.
func (m *Manager) failRecord(ctx context.Context, id string, kind provider.ErrorKind, msg string) error {
	now := m.opts.Now()
	return m.finish(ctx, id, gen.Snapshot{
		ID:       id,
		Status:   gen.StatusFailed,
		Finished: now,
		Err:      &provider.Error{Kind: kind, Message: msg},
	})
}

// ended returns the admission of a record this process finished, with
// the images it produced.
func (m *Manager) ended(rec *store.JobRecord) {
	n := 0
	for _, img := range rec.Images {
		if img.Key != "" {
			n++
		}
	}
	m.released(rec.ID, n)
}

// released returns a job's admission (limits) with what it produced.
func (m *Manager) released(id string, images int) {
	m.mu.Lock()
	f := m.releases[id]
	delete(m.releases, id)
	m.mu.Unlock()
	if f != nil {
		f(images)
	}
}

// webhookArgs is one webhook delivery. The message is built once, when the
// job ends, so every attempt carries the same webhook-id and body.
type webhookArgs struct {
	JobID   string          `json:"job_id"`
	KeyID   string          `json:"key_id"`
	URL     string          `json:"url"`
	Message webhook.Message `json:"message"`
}

// Kind implements river.JobArgs.
func (webhookArgs) Kind() string { return "easel.webhook" }

// queueWebhookTx queues the webhook of a job that just ended.
func (m *Manager) queueWebhookTx(ctx context.Context, tx *sql.Tx, rec *store.JobRecord) error {
	if rec.WebhookURL == "" || m.opts.Webhooks == nil {
		return nil
	}
	var typ string
	switch rec.Status {
	case store.StatusSucceeded:
		typ = webhook.EventJobSucceeded
	case store.StatusFailed:
		typ = webhook.EventJobFailed
	case store.StatusCanceled:
		typ = webhook.EventJobCanceled
	default:
		return nil
	}
	var data any = map[string]string{"id": rec.ID, "status": rec.Status}
	if m.opts.WebhookData != nil {
		data = m.opts.WebhookData(rec)
	}
	msg, err := webhook.NewMessage(webhook.Event{Type: typ, JobID: rec.ID, Data: data}, m.opts.Now())
	if err != nil {
		return fmt.Errorf("building the webhook of job %s: %w", rec.ID, err)
	}
	_, err = m.river.InsertTx(ctx, tx, webhookArgs{JobID: rec.ID, KeyID: rec.KeyID, URL: rec.WebhookURL, Message: msg},
		&river.InsertOpts{Queue: webhookQueue, MaxAttempts: webhook.MaxAttempts})
	if err != nil {
		return fmt.Errorf("queueing the webhook of job %s: %w", rec.ID, err)
	}
	return nil
}

// webhookWorker delivers webhooks.
type webhookWorker struct {
	river.WorkerDefaults[webhookArgs]
	m *Manager
}

// Work implements river.Worker: one delivery attempt. A retryable failure
// returns an error, so River schedules the next attempt on the webhook
// schedule (retryPolicy); a throttled one snoozes for its Retry-After; an
// endpoint that is gone (410) or refuses for good is not retried.
func (w *webhookWorker) Work(ctx context.Context, j *river.Job[webhookArgs]) error {
	m := w.m
	if m.opts.Webhooks == nil {
		return river.JobCancel(errors.New("webhooks are disabled"))
	}
	secret := ""
	if m.opts.WebhookSecret != nil {
		s, err := m.opts.WebhookSecret(ctx, j.Args.KeyID)
		if err != nil {
			return fmt.Errorf("reading the webhook secret: %w", err)
		}
		secret = s
	}
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		return river.JobCancel(fmt.Errorf("no usable webhook secret for key %q: %w", j.Args.KeyID, err))
	}
	res := m.opts.Webhooks.Attempt(ctx, j.Args.URL, j.Args.Message, signer)
	switch res.Outcome {
	case webhook.Delivered:
		return nil
	case webhook.Retry:
		if res.Throttled && res.RetryAfter > 0 {
			if d, ok := webhook.NextDelay(j.Attempt, res.RetryAfter); ok {
				return river.JobSnooze(d)
			}
			return river.JobCancel(fmt.Errorf("webhook for job %s: out of attempts: %w", j.Args.JobID, res.Err))
		}
		return fmt.Errorf("webhook for job %s: attempt %d: %w", j.Args.JobID, j.Attempt, res.Err)
	default:
		return river.JobCancel(fmt.Errorf("webhook for job %s not delivered (%s): %w", j.Args.JobID, res.Outcome, res.Err))
	}
}
