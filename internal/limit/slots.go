// Package limit bounds how many upstream calls run at once per backend. Work
// beyond the limit waits in a FIFO queue that tells each waiter its position,
// so clients see "queued, 3rd of 7" rather than a silent stall.
package limit

import (
	"context"
	"errors"
	"sync"
)

// ErrQueueFull is returned by Acquire when the wait queue already holds its
// maximum number of waiters; failing at once lets the caller answer 503
// instead of piling up work it cannot serve.
var ErrQueueFull = errors.New("limit: wait queue is full")

// Slots is a counting semaphore with a FIFO wait queue. It is safe for
// concurrent use. The zero value is not usable; call NewSlots.
type Slots struct {
	limit    int
	maxQueue int

	mu      sync.Mutex
	inUse   int
	waiters []*waiter
}

// waiter is one Acquire call waiting for a slot.
type waiter struct {
	// ready is closed when the slot is handed to this waiter.
	ready chan struct{}
	// moved gets a token when the waiter's position may have changed; a
	// buffer of one is enough because the waiter re-reads its position.
	moved   chan struct{}
	granted bool
}

// NewSlots makes a limiter allowing limit holders at once (limit <= 0 means
// unlimited) and at most maxQueue waiters (maxQueue <= 0 means no bound).
func NewSlots(limit, maxQueue int) *Slots {
	return &Slots{limit: limit, maxQueue: maxQueue}
}

// Acquire takes a slot, waiting in FIFO order if none is free. While it
// waits, onPosition (if non-nil) is called with the 1-based position and the
// number of waiters when waiting starts and whenever the position changes;
// it is called from Acquire's goroutine, never under the limiter's lock.
//
// It returns ErrQueueFull at once when the queue is full, and ctx.Err() if
// ctx ends first. The returned release gives the slot back; calling it more
// than once is harmless.
func (s *Slots) Acquire(ctx context.Context, onPosition func(position, queueLen int)) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.limit <= 0 || (s.inUse < s.limit && len(s.waiters) == 0) {
		s.inUse++
		s.mu.Unlock()
		return s.releaser(), nil
	}
	if s.maxQueue > 0 && len(s.waiters) >= s.maxQueue {
		s.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{ready: make(chan struct{}), moved: make(chan struct{}, 1)}
	s.waiters = append(s.waiters, w)
	pos, qlen := len(s.waiters), len(s.waiters)
	s.mu.Unlock()

	if onPosition != nil {
		onPosition(pos, qlen)
	}
	for {
		select {
		case <-w.ready:
			return s.releaser(), nil
		case <-w.moved:
			s.mu.Lock()
			np, nq := s.position(w), len(s.waiters)
			s.mu.Unlock()
			if np > 0 && np != pos {
				pos = np
				if onPosition != nil {
					onPosition(np, nq)
				}
			}
		case <-ctx.Done():
			s.mu.Lock()
			if w.granted {
				// The slot arrived as ctx ended: hand it on rather than
				// leak it, and report the cancellation the caller expects.
				s.mu.Unlock()
				s.release()
				return nil, ctx.Err()
			}
			s.remove(w)
			s.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// Stats reports the slots held and the number of waiters.
func (s *Slots) Stats() (inUse, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse, len(s.waiters)
}

func (s *Slots) releaser() func() {
	var once sync.Once
	return func() { once.Do(s.release) }
}

// release returns one slot: to the head waiter if there is one (so the
// count of holders stays the same), else to the pool.
func (s *Slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		w.granted = true
		close(w.ready)
		s.nudge(0)
		return
	}
	s.inUse--
}

// remove takes w out of the queue and tells those behind it that they moved
// up. Called with s.mu held.
func (s *Slots) remove(w *waiter) {
	i := s.index(w)
	if i < 0 {
		return
	}
	s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
	s.nudge(i)
}

// nudge signals every waiter from index i on. Called with s.mu held.
func (s *Slots) nudge(i int) {
	for _, o := range s.waiters[i:] {
		select {
		case o.moved <- struct{}{}:
		default:
		}
	}
}

func (s *Slots) index(w *waiter) int {
	for i, o := range s.waiters {
		if o == w {
			return i
		}
	}
	return -1
}

// position is w's 1-based place in the queue, 0 if it is not queued.
func (s *Slots) position(w *waiter) int {
	return s.index(w) + 1
}
