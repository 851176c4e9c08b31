package gen

import (
	"context"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/provider"
)

// Job is one running or finished image job. It is safe for concurrent use.
//
// Its events are kept for the job's lifetime so a late subscriber first
// replays what already happened, then follows live.
type Job struct {
	id     string
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu     sync.Mutex
	snap   Snapshot
	events []provider.Event
	subs   map[int]chan provider.Event
	nextID int
	// early is a subscription made before the job ran (Request.Stream);
	// the first Subscribe returns it, so a stream misses no preview.
	early *subscription
}

// subscriberBuffer bounds how far a slow subscriber may fall behind before it
// is cut off; a job emits far fewer events than this.
const subscriberBuffer = 256

// NewJob makes a job record in the queued state. cancel is called by Cancel;
// the Service passes the cancel function of the job's context.
func NewJob(id, model string, n int, cancel context.CancelCauseFunc) *Job {
	return &Job{
		id:     id,
		cancel: cancel,
		done:   make(chan struct{}),
		snap: Snapshot{
			ID:      id,
			Model:   model,
			Status:  StatusQueued,
			Created: time.Now(),
			N:       n,
			Images:  make([]StoredImage, n),
		},
		subs: make(map[int]chan provider.Event),
	}
}

// ID returns the job id.
func (j *Job) ID() string { return j.id }

// Done is closed when the job reaches a terminal state.
func (j *Job) Done() <-chan struct{} { return j.done }

// Cancel asks the job to stop; it ends as canceled unless it already ended.
func (j *Job) Cancel() {
	if j.cancel != nil {
		j.cancel(ErrCanceled)
	}
}

// Snapshot returns a copy of the job's current state.
func (j *Job) Snapshot() Snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.snap
	s.Images = append([]StoredImage(nil), j.snap.Images...)
	s.UpstreamIDs = append([]string(nil), j.snap.UpstreamIDs...)
	s.Progress = append([]provider.Event(nil), j.snap.Progress...)
	s.InputNotes = append([]string(nil), j.snap.InputNotes...)
	return s
}

// Wait blocks until the job ends or ctx is done and returns the final
// snapshot (or ctx's error).
func (j *Job) Wait(ctx context.Context) (Snapshot, error) {
	select {
	case <-j.done:
		return j.Snapshot(), nil
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	}
}

// Subscribe returns the events so far and a channel of the ones to come. The
// channel is closed after the terminal event, or when stop is called, or if
// the subscriber falls more than a few hundred events behind.
func (j *Job) Subscribe() (past []provider.Event, live <-chan provider.Event, stop func()) {
	j.mu.Lock()
	if e := j.early; e != nil {
		j.early = nil
		j.mu.Unlock()
		return e.past, e.live, e.stop
	}
	defer j.mu.Unlock()
	return j.subscribeLocked()
}

// subscription is one Subscribe result.
type subscription struct {
	past []provider.Event
	live <-chan provider.Event
	stop func()
}

// subscribeEarly makes the subscription the first Subscribe returns.
func (j *Job) subscribeEarly() {
	j.mu.Lock()
	defer j.mu.Unlock()
	past, live, stop := j.subscribeLocked()
	j.early = &subscription{past, live, stop}
}

func (j *Job) subscribeLocked() (past []provider.Event, live <-chan provider.Event, stop func()) {
	past = append([]provider.Event(nil), j.events...)
	ch := make(chan provider.Event, subscriberBuffer)
	if j.snap.Status.Terminal() {
		close(ch)
		return past, ch, func() {}
	}
	id := j.nextID
	j.nextID++
	j.subs[id] = ch
	var once sync.Once
	stop = func() {
		once.Do(func() {
			j.mu.Lock()
			defer j.mu.Unlock()
			if c, ok := j.subs[id]; ok {
				delete(j.subs, id)
				close(c)
			}
		})
	}
	return past, ch, stop
}

// Publish records an event and fans it out. The runner calls it; events
// after the terminal one are dropped. update, if non-nil, changes the
// snapshot under the same lock so readers never see an event without its
// state or the other way round.
func (j *Job) Publish(ev provider.Event, update func(*Snapshot)) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.snap.Status.Terminal() {
		return
	}
	if update != nil {
		update(&j.snap)
	}
	switch ev.Type {
	case provider.EventQueued, provider.EventStarted, provider.EventProgress:
		if ev.Index >= 0 && ev.Index < len(j.snap.Images) {
			for len(j.snap.Progress) < len(j.snap.Images) {
				j.snap.Progress = append(j.snap.Progress, provider.Event{})
			}
			p := ev
			p.Data = nil
			j.snap.Progress[ev.Index] = p
		}
	}
	stored := ev
	stored.Data = nil // previews are relayed live, not kept
	j.events = append(j.events, stored)
	for id, c := range j.subs {
		select {
		case c <- ev:
		default:
			// The subscriber stopped reading; cut it off rather than block
			// the job.
			delete(j.subs, id)
			close(c)
		}
	}
	if j.snap.Status.Terminal() {
		for id, c := range j.subs {
			delete(j.subs, id)
			close(c)
		}
		close(j.done)
	}
}
