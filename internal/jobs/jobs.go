// Package jobs makes easel's jobs durable. Every job, sync or async, gets a
// record in the store. Async jobs (answered 202) are queued in River on the
// same SQLite file, in the same transaction as their record and
// Idempotency-Key, and run by a worker per backend queue; they survive a
// crash of the process: on restart every queued or interrupted job runs
// again, a job-API job resumes polling its saved upstream id, and its
// terminal state is written once. Webhooks are River jobs too, enqueued in
// the transaction that ends the job.
//
// The gen.Service still runs every job in memory and keeps its live
// events; this package adds the record around it.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/webhook"
)

// Defaults for Options.
const (
	DefaultAsyncTimeout   = 600 * time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
	// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
	MaxIdempotencyKeyLen = 255
	// webhookQueue is River's queue for webhook deliveries.
	webhookQueue = "webhooks"
	// webhookWorkers is how many deliveries run at once.
	webhookWorkers = 10
	// defaultQueueWorkers serves a backend without a concurrency limit.
	defaultQueueWorkers = 16
)

// Errors of Submit, Get and Cancel.
var (
	// ErrNotFound: no such job, or not the caller's.
	ErrNotFound = errors.New("job not found")
	// ErrIdempotencyMismatch: the Idempotency-Key was used with another
	// request body.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrStopped: the manager is shutting down.
	ErrStopped = errors.New("job manager stopped")
)

// Store is what the manager needs of the database: the job and
// idempotency records, and transactions on a database/sql pool that the
// queue shares, so a record and its queue entry commit together.
// *sqlite.Store implements it; a PostgreSQL store would too, with River's
// database/sql driver.
type Store interface {
	Jobs() store.Jobs
	Idempotency() store.Idempotency
	// DB is the pool the queue uses.
	DB() *sql.DB
	// InTx runs f in one transaction, committing when it returns nil.
	InTx(ctx context.Context, f func(*sql.Tx) error) error
	// CreateJobTx, UpdateJobTx and ClaimTx are Jobs().Create,
	// Jobs().Update and Idempotency().Claim inside tx.
	CreateJobTx(ctx context.Context, tx *sql.Tx, rec *store.JobRecord) error
	UpdateJobTx(ctx context.Context, tx *sql.Tx, id string, f func(*store.JobRecord) error) error
	ClaimTx(ctx context.Context, tx *sql.Tx, keyID, idemKey, requestHash, jobID string, expires time.Time) (string, bool, error)
}

// Submission is what a request adds to its job besides the gen.Request.
type Submission struct {
	// KeyID owns the job.
	KeyID string
	// IdempotencyKey and RequestHash make a re-sent request find its job.
	IdempotencyKey string
	RequestHash    string
	// WebhookURL is told when the job ends (async jobs).
	WebhookURL string
	// ResponseFormat is "url" or "b64_json".
	ResponseFormat string
	// BaseURL is the absolute base the request reached easel at.
	BaseURL string
	// Endpoint is the accepting route.
	Endpoint string
	// Release, when set, is called once when the job ends in this
	// process, with the number of images it produced (limit accounting).
	Release func(images int)
}

// Options configures a Manager.
type Options struct {
	// Gen runs the jobs. Required.
	Gen *gen.Service
	// Store holds records, River's tables and idempotency keys. Required.
	Store Store
	// Driver is River's driver on Store.DB(); nil means SQLite's.
	Driver riverdriver.Driver[*sql.Tx]
	// SingleProcess says this process alone uses the database (the
	// embedded SQLite mode): queue entries left running at start belonged
	// to a process that died and are requeued at once. Replicas sharing a
	// database leave that to River's rescuer instead.
	SingleProcess bool
	// Blobs keeps input images of async jobs. Required.
	Blobs blob.Bucket
	// Backends maps each backend to its River worker count (its
	// concurrency; 0 means defaultQueueWorkers).
	Backends map[string]int
	// ModelQueue names the backend whose queue a model's async jobs use
	// (its first). Required for every model.
	ModelQueue map[string]string
	// AsyncTimeout bounds one async job run; default 600s.
	AsyncTimeout time.Duration
	// IdempotencyTTL is how long Idempotency-Keys are remembered; 24h.
	IdempotencyTTL time.Duration
	// Webhooks delivers webhooks; nil disables them.
	Webhooks *webhook.Deliverer
	// WebhookSecret returns the signing secret of a key's webhooks.
	WebhookSecret func(ctx context.Context, keyID string) (string, error)
	// WebhookData renders a finished job for its webhook payload.
	WebhookData func(rec *store.JobRecord) any
	// FetchPoll is River's fallback poll interval; default 1s (new jobs
	// are noticed through the queue's notifications sooner).
	FetchPoll time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Manager records jobs and runs async ones durably.
type Manager struct {
	opts  Options
	gen   *gen.Service
	st    Store
	log   *slog.Logger
	river *river.Client[*sql.Tx]
	sync  *syncWriter

	epoch string // names this process's event sequences

	mu       sync.Mutex
	active   map[string]*active       // async jobs being worked here
	releases map[string]func(int)     // Submission.Release by job id
	starting map[string]chan struct{} // closed when a queued job starts here
	closed   bool
}

// active is an async job a worker of this process holds.
type active struct {
	job             *gen.Job
	cancelRequested bool
}

var queueNameRE = regexp.MustCompile(`[^a-z0-9_-]+`)

// queueName is River's queue for backend b (River allows a-z, 0-9, _ and -).
func queueName(b string) string {
	return "gen_" + strings.Trim(queueNameRE.ReplaceAllString(strings.ToLower(b), "_"), "_")
}

// New migrates River's tables and builds the manager; StartWorkers runs it.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Gen == nil || opts.Store == nil || opts.Blobs == nil {
		return nil, errors.New("jobs: Gen, Store and Blobs are required")
	}
	if opts.AsyncTimeout <= 0 {
		opts.AsyncTimeout = DefaultAsyncTimeout
	}
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if opts.FetchPoll <= 0 {
		opts.FetchPoll = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{
		opts:     opts,
		gen:      opts.Gen,
		st:       opts.Store,
		log:      opts.Logger,
		active:   make(map[string]*active),
		releases: make(map[string]func(int)),
		starting: make(map[string]chan struct{}),
		epoch:    strings.TrimPrefix(gen.NewJobID(), "img_")[:8],
	}
	driver := opts.Driver
	if driver == nil {
		driver = riversqlite.New(opts.Store.DB())
	}
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quietLogger(opts.Logger)})
	if err != nil {
		return nil, fmt.Errorf("preparing the queue migrations: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrating the queue tables: %w", err)
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &generateWorker{m: m}); err != nil {
		return nil, fmt.Errorf("registering the generate worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &webhookWorker{m: m}); err != nil {
		return nil, fmt.Errorf("registering the webhook worker: %w", err)
	}
	queues := map[string]river.QueueConfig{webhookQueue: {MaxWorkers: webhookWorkers}}
	for b, n := range opts.Backends {
		if n <= 0 {
			n = defaultQueueWorkers
		}
		queues[queueName(b)] = river.QueueConfig{MaxWorkers: n}
	}
	m.river, err = river.NewClient(driver, &river.Config{
		Queues:  queues,
		Workers: workers,
		Logger:  quietLogger(opts.Logger),
		// The worker enforces AsyncTimeout itself and records the
		// failure; River's own timeout is only a backstop.
		JobTimeout:           opts.AsyncTimeout + time.Minute,
		RescueStuckJobsAfter: opts.AsyncTimeout + 2*time.Minute,
		FetchCooldown:        10 * time.Millisecond,
		FetchPollInterval:    opts.FetchPoll,
		MaxAttempts:          25,
		RetryPolicy:          retryPolicy{},
		// Finished queue rows are only bookkeeping: the job record is
		// what users see.
		CompletedJobRetentionPeriod: time.Hour,
		CancelledJobRetentionPeriod: 24 * time.Hour,
		DiscardedJobRetentionPeriod: 7 * 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the queue client: %w", err)
	}
	m.sync = newSyncWriter(opts.Store, opts.Logger)
	return m, nil
}

// Epoch names this process run. A job's event stream is the same sequence
// on every replay within one run; after a restart it may differ (live
// progress of the earlier run was not kept), so event ids carry the epoch
// and a Last-Event-ID from another run replays from the start.
func (m *Manager) Epoch() string { return m.epoch }

// quietLogger drops River's info chatter (every start and stop of its
// services) and keeps its warnings.
func quietLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}

// StartWorkers recovers what a crash left and starts the queue. With
// SingleProcess (one process owns the SQLite file) any queue row still
// "running" belonged to a process that died: it is made available at once
// instead of waiting for River's stuck-job rescuer. (Sync jobs are
// recorded when they end, so a crash leaves no half record of them: their
// client got no answer.)
func (m *Manager) StartWorkers(ctx context.Context) error {
	if !m.opts.SingleProcess {
		if err := m.river.Start(ctx); err != nil {
			return fmt.Errorf("starting the queue: %w", err)
		}
		return nil
	}
	err := m.st.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
		if err != nil {
			return fmt.Errorf("requeueing interrupted jobs: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			m.log.Info("requeued jobs interrupted by a restart", "jobs", n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := m.river.Start(ctx); err != nil {
		return fmt.Errorf("starting the queue: %w", err)
	}
	return nil
}

// Stop stops taking jobs and waits for running ones up to ctx; async jobs
// still running then are cancelled and left to resume after a restart.
// Pending sync records are written.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	soft, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := m.river.Stop(soft)
	if err != nil {
		err = m.river.StopAndCancel(ctx)
	}
	m.sync.close()
	if err != nil {
		return fmt.Errorf("stopping the queue: %w", err)
	}
	return nil
}

// retryPolicy spaces retries of a failed queue job: the webhook schedule
// for deliveries, River's default otherwise.
type retryPolicy struct{}

func (retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	if job.Kind == (webhookArgs{}).Kind() {
		d, _ := webhook.NextDelay(job.Attempt, 0)
		return time.Now().Add(d)
	}
	return (&river.DefaultClientRetryPolicy{}).NextRetry(job)
}
