package gen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/limit"
	"github.com/easelgw/easel/internal/provider"
)

// Defaults applied to zero Options fields. They follow the reliability
// policy: three attempts, full-jitter backoff from 0.5 s to 8 s, Retry-After
// honoured up to 60 s, a 300 s deadline and a 40 MP pixel cap.
const (
	// DefaultMaxN is the most images per request (OpenAI allows 10).
	DefaultMaxN = 10
	// DefaultMaxPixels caps sizes and stored images (40 MP).
	DefaultMaxPixels = 40_000_000
	// DefaultJobTimeout is the synchronous request deadline.
	DefaultJobTimeout = 300 * time.Second
	// DefaultAttempts is the number of rounds over a model's backends.
	DefaultAttempts = 3
	// DefaultBackoffBase and DefaultBackoffCap bound full-jitter backoff.
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffCap  = 8 * time.Second
	// DefaultMaxRetryAfter is the longest upstream Retry-After waited out.
	DefaultMaxRetryAfter = 60 * time.Second
	// DefaultKeepFinished is how long finished jobs stay readable.
	DefaultKeepFinished = time.Hour
	// DefaultMaxFinished bounds how many finished jobs stay in memory
	// whatever KeepFinished says, so a burst cannot exhaust memory.
	DefaultMaxFinished = 10_000
)

// busyRetryAfter is the Retry-After suggested when a backend's own queue in
// easel is full or a slot did not come in time: long enough for a slot to
// free, short enough that a client retrying is served soon.
const busyRetryAfter = 3 * time.Second

// Backend is one configured upstream serving one or more models.
type Backend struct {
	// Name is the backend's unique name in the configuration.
	Name string
	// Provider talks to the upstream.
	Provider provider.Provider
	// Concurrency is how many upstream calls may run at once; 0 means
	// unlimited.
	Concurrency int
	// MaxQueue is how many calls may wait for a slot beyond Concurrency; 0
	// means unlimited. A call finding it full fails at once with
	// KindUnavailable (and may fail over to the model's next backend).
	MaxQueue int
	// QueueTimeout bounds the wait for a slot; 0 means until the job's
	// deadline.
	QueueTimeout time.Duration
}

// Model is one public model id and the backends serving it.
type Model struct {
	// ID is the public id clients send.
	ID string
	// Aliases are other ids that resolve to this model.
	Aliases []string
	// Backends are backend names in failover order; at least one.
	Backends []string
	// Description is a short text for /v1/models and the UI.
	Description string
	// Demo marks a model served by the built-in demo backend.
	Demo bool
	// Created is the model's creation time as /v1/models reports it.
	Created time.Time
}

// Options configure a Service. Zero fields take the Default* values.
type Options struct {
	// Backends are the upstreams; names must be unique.
	Backends []Backend
	// Models are the public models, in the order /v1/models lists them.
	Models []Model
	// Blobs stores the results.
	Blobs blob.Bucket
	// Logger receives job failures that are easel's own fault; nil
	// discards.
	Logger *slog.Logger
	// MaxN is the most images one request may ask for (default 10).
	MaxN int
	// MaxPixels caps a requested size and every stored image (default 40
	// million).
	MaxPixels int
	// Stagger is the least time between the starts of one job's upstream
	// calls, for upstreams that punish bursts (default 0: no spacing).
	Stagger time.Duration
	// JobTimeout is a job's whole deadline (default 300 s).
	JobTimeout time.Duration
	// Attempts is the most rounds over a model's backends per upstream
	// call; only failures where the upstream provably did not start are
	// retried (default 3).
	Attempts int
	// BackoffBase and BackoffCap bound the full-jitter backoff between
	// rounds (defaults 500 ms and 8 s).
	BackoffBase, BackoffCap time.Duration
	// MaxRetryAfter is the longest upstream Retry-After easel waits out;
	// a longer one fails the job at once, passing the Retry-After on to the
	// client (default 60 s).
	MaxRetryAfter time.Duration
	// KeepFinished is how long a finished job stays readable by Get
	// (default 1 h); at most DefaultMaxFinished are kept.
	KeepFinished time.Duration
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

// backend is a configured Backend with its slots.
type backend struct {
	Backend
	slots *limit.Slots
}

// model is a configured Model with its backends resolved.
type model struct {
	Model
	backends []*backend
}

// Service validates requests, runs jobs and keeps them readable for a while
// after they end. It is safe for concurrent use.
type Service struct {
	opts     Options
	log      *slog.Logger
	backends map[string]*backend
	models   []*model
	byName   map[string]*model // ids and aliases
	// maxFinished bounds the finished jobs kept (DefaultMaxFinished; tests
	// lower it).
	maxFinished int

	wg sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	jobs     map[string]*Job
	running  map[string]*Job
	finished []finishedJob // in finishing order; those before head are gone
	head     int
}

type finishedJob struct {
	id string
	at time.Time
}

// NewService checks opts and builds a Service. Every problem found is
// reported, joined.
func NewService(opts Options) (*Service, error) {
	opts = withDefaults(opts)
	var errs []error
	if opts.Blobs == nil {
		errs = append(errs, errors.New("no blob bucket configured"))
	}
	s := &Service{
		opts:     opts,
		log:      opts.Logger,
		backends: make(map[string]*backend),
		byName:   make(map[string]*model),
		jobs:     make(map[string]*Job),
		running:  make(map[string]*Job),

		maxFinished: DefaultMaxFinished,
	}
	for i, b := range opts.Backends {
		switch {
		case b.Name == "":
			errs = append(errs, fmt.Errorf("backend #%d has no name", i+1))
			continue
		case s.backends[b.Name] != nil:
			errs = append(errs, fmt.Errorf("backend %q is defined twice", b.Name))
			continue
		case b.Provider == nil:
			errs = append(errs, fmt.Errorf("backend %q has no provider", b.Name))
		}
		if b.Concurrency < 0 || b.MaxQueue < 0 || b.QueueTimeout < 0 {
			errs = append(errs, fmt.Errorf("backend %q: concurrency, max queue and queue timeout must not be negative", b.Name))
		}
		s.backends[b.Name] = &backend{Backend: b, slots: limit.NewSlots(b.Concurrency, b.MaxQueue)}
	}
	if len(opts.Models) == 0 {
		errs = append(errs, errors.New("no models configured"))
	}
	for i, m := range opts.Models {
		if m.ID == "" {
			errs = append(errs, fmt.Errorf("model #%d has no id", i+1))
			continue
		}
		mm := &model{Model: m}
		for _, name := range append([]string{m.ID}, m.Aliases...) {
			if name == "" {
				errs = append(errs, fmt.Errorf("model %q has an empty alias", m.ID))
				continue
			}
			if other, dup := s.byName[name]; dup {
				errs = append(errs, fmt.Errorf("model id or alias %q is used by both %q and %q", name, other.ID, m.ID))
				continue
			}
			s.byName[name] = mm
		}
		if len(m.Backends) == 0 {
			errs = append(errs, fmt.Errorf("model %q has no backend", m.ID))
		}
		for _, bn := range m.Backends {
			b, ok := s.backends[bn]
			if !ok {
				errs = append(errs, fmt.Errorf("model %q uses unknown backend %q", m.ID, bn))
				continue
			}
			mm.backends = append(mm.backends, b)
		}
		s.models = append(s.models, mm)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the job service: %w", err)
	}
	return s, nil
}

func withDefaults(o Options) Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxN <= 0 {
		o.MaxN = DefaultMaxN
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = DefaultJobTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffCap <= 0 {
		o.BackoffCap = DefaultBackoffCap
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.KeepFinished <= 0 {
		o.KeepFinished = DefaultKeepFinished
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Models lists the public models in configuration order.
func (s *Service) Models() []ModelInfo {
	out := make([]ModelInfo, 0, len(s.models))
	for _, m := range s.models {
		out = append(out, m.info())
	}
	return out
}

// Model finds a model by id or alias: exactly first, then ignoring case
// (clients often lower-case ids).
func (s *Service) Model(id string) (ModelInfo, bool) {
	m := s.lookup(id)
	if m == nil {
		return ModelInfo{}, false
	}
	return m.info(), true
}

func (s *Service) lookup(id string) *model {
	if m, ok := s.byName[id]; ok {
		return m
	}
	// Fold in configuration order so the answer is deterministic.
	for _, m := range s.models {
		for _, name := range append([]string{m.ID}, m.Aliases...) {
			if strings.EqualFold(name, id) {
				return m
			}
		}
	}
	return nil
}

func (m *model) info() ModelInfo {
	mi := ModelInfo{
		ID:          m.ID,
		Aliases:     append([]string(nil), m.Aliases...),
		Backends:    append([]string(nil), m.Model.Backends...),
		Created:     m.Created,
		Description: m.Description,
		Demo:        m.Demo,
	}
	if len(m.backends) > 0 {
		mi.Capabilities = m.backends[0].Provider.Capabilities()
	}
	return mi
}

// Get returns a running job, or a finished one still kept.
func (s *Service) Get(id string) (*Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictLocked()
	j, ok := s.jobs[id]
	return j, ok
}

// Blobs returns the bucket results are stored in, for serving them.
func (s *Service) Blobs() blob.Bucket { return s.opts.Blobs }

// errShutdown is the cancellation cause of jobs stopped by Close.
var errShutdown = errors.New("server shutting down")

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("job service is closed")

// Close cancels the running jobs and waits for them to end (or for ctx).
// Start fails with ErrClosed afterwards.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, j := range s.running {
		j.cancel(errShutdown)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for jobs to stop: %w", ctx.Err())
	}
}

// register records a new job; false once the service is closed.
func (s *Service) register(j *Job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.evictLocked()
	s.jobs[j.id] = j
	s.running[j.id] = j
	s.wg.Add(1)
	return true
}

// finish moves a job from running to finished.
func (s *Service) finish(j *Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, j.id)
	s.finished = append(s.finished, finishedJob{id: j.id, at: s.opts.Now()})
	s.evictLocked()
}

// evictLocked forgets finished jobs past KeepFinished or beyond the count
// bound, oldest first.
func (s *Service) evictLocked() {
	cutoff := s.opts.Now().Add(-s.opts.KeepFinished)
	n := s.head
	for n < len(s.finished) && (s.finished[n].at.Before(cutoff) || len(s.finished)-n > s.maxFinished) {
		delete(s.jobs, s.finished[n].id)
		s.finished[n] = finishedJob{}
		n++
	}
	s.head = n
	// Moving the survivors down only once the gone entries outnumber them
	// keeps each eviction O(1) amortized: at the count bound every finish
	// evicts one job, and copying the whole list each time was a hot-path
	// cost under load.
	if s.head > 0 && s.head >= len(s.finished)-s.head {
		live := copy(s.finished, s.finished[s.head:])
		clear(s.finished[live:])
		s.finished = s.finished[:live]
		s.head = 0
	}
}
