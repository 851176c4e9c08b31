package jobs

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/store"
)

// Sync jobs run on the request's goroutine and answer the client
// directly, so their record is only history: it is written when the job
// ends, by one background writer that commits whatever has piled up in a
// single transaction. The request never waits for the database, and under
// load many records share one fsync. A crash can lose the records of the
// last few milliseconds of sync jobs, never an async job (whose record is
// committed before its 202).

// syncWriter batches sync job records.
type syncWriter struct {
	st  Store
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]*store.JobRecord // running or not yet written
	queue   []*store.JobRecord
	wake    chan struct{}
	closing chan struct{} // closed by close: flush without waiting
	closed  bool
	done    chan struct{}
}

// maxSyncBatch caps the records of one transaction.
const maxSyncBatch = 256

// syncFlushDelay is how long finished sync records wait to be written
// together; a crash loses at most this much sync history.
const syncFlushDelay = 100 * time.Millisecond

func newSyncWriter(st Store, log *slog.Logger) *syncWriter {
	w := &syncWriter{
		st:      st,
		log:     log,
		pending: make(map[string]*store.JobRecord),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go w.loop()
	return w
}

// begin registers a running sync job so Get and List-by-id see it.
func (w *syncWriter) begin(rec *store.JobRecord) {
	w.mu.Lock()
	w.pending[rec.ID] = rec
	w.mu.Unlock()
}

// get returns a copy of a pending record.
func (w *syncWriter) get(id string) (*store.JobRecord, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec, ok := w.pending[id]
	if !ok {
		return nil, false
	}
	c := *rec
	return &c, true
}

// drop forgets a job that never started.
func (w *syncWriter) drop(id string) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

// end queues a finished job's record.
func (w *syncWriter) end(id string, snap gen.Snapshot) {
	w.mu.Lock()
	rec, ok := w.pending[id]
	if !ok {
		w.mu.Unlock()
		return
	}
	applySnapshot(rec, snap)
	if w.closed {
		delete(w.pending, id)
		w.mu.Unlock()
		w.write([]*store.JobRecord{rec})
		return
	}
	w.queue = append(w.queue, rec)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *syncWriter) loop() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
			// Gather for a moment: one commit (one fsync) then carries
			// every record of the interval instead of one per request,
			// which keeps the database's disk writes from slowing the
			// result files'.
			t := time.NewTimer(syncFlushDelay)
			select {
			case <-t.C:
			case <-w.closing:
				t.Stop()
			}
			w.flush()
		case <-w.closing:
			w.flush()
			return
		}
	}
}

// flush writes every queued record.
func (w *syncWriter) flush() {
	for {
		w.mu.Lock()
		n := min(len(w.queue), maxSyncBatch)
		// Copies: the store sets fields of what it writes, while get
		// may be reading the pending originals.
		batch := make([]*store.JobRecord, 0, n)
		for _, rec := range w.queue[:n] {
			c := *rec
			batch = append(batch, &c)
		}
		w.queue = w.queue[n:]
		w.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		w.write(batch)
		w.mu.Lock()
		for _, rec := range batch {
			delete(w.pending, rec.ID)
		}
		w.mu.Unlock()
	}
}

// write commits records in one transaction.
func (w *syncWriter) write(batch []*store.JobRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := w.st.InTx(ctx, func(tx *sql.Tx) error {
		for _, rec := range batch {
			if err := w.st.CreateJobTx(ctx, tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.log.Error("recording finished sync jobs failed", slog.Int("jobs", len(batch)), slog.Any("err", err))
	}
}

// close writes what is queued and stops the writer.
func (w *syncWriter) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	// wake is never closed: end may still be sending to it.
	close(w.closing)
	<-w.done
}

// The Manager serves the API's sync calls (openaiapi.Service) by wrapping
// gen with the record.

// Models lists the models.
func (m *Manager) Models() []gen.ModelInfo { return m.gen.Models() }

// Model finds a model by id or alias.
func (m *Manager) Model(id string) (gen.ModelInfo, bool) { return m.gen.Model(id) }

// Blobs is where results are stored.
func (m *Manager) Blobs() blob.Bucket { return m.gen.Blobs() }

// Run runs a sync job on the calling goroutine and records it.
func (m *Manager) Run(ctx context.Context, req *gen.Request) (*gen.Job, error) {
	id := m.beginSync(req)
	job, err := m.gen.Run(ctx, req)
	if err != nil {
		m.sync.drop(id)
		return nil, err
	}
	m.endSync(id, job.Snapshot())
	return job, nil
}

// Start starts a sync job (a streamed response) and records it when it
// ends.
func (m *Manager) Start(ctx context.Context, req *gen.Request) (*gen.Job, error) {
	id := m.beginSync(req)
	job, err := m.gen.Start(ctx, req)
	if err != nil {
		m.sync.drop(id)
		return nil, err
	}
	go func() {
		<-job.Done()
		m.endSync(id, job.Snapshot())
	}()
	return job, nil
}

func (m *Manager) beginSync(req *gen.Request) string {
	if req.JobID == "" {
		req.JobID = gen.NewJobID()
	}
	model := req.Model
	if mi, ok := m.gen.Model(req.Model); ok {
		model = mi.ID
	}
	r := summary(req, Submission{})
	rec, err := newRecord(req.JobID, model, req, Submission{KeyID: req.KeyID}, r, m.opts.Now().UTC().Truncate(time.Millisecond))
	if err == nil {
		m.sync.begin(rec)
	}
	return req.JobID
}

func (m *Manager) endSync(id string, snap gen.Snapshot) {
	m.sync.end(id, snap)
}
