package limit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

const waitBound = 5 * time.Second

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustAcquire(t *testing.T, s *Slots) func() {
	t.Helper()
	rel, err := s.Acquire(context.Background(), nil)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return rel
}

func TestUnlimited(t *testing.T) {
	t.Parallel()
	s := NewSlots(0, 0)
	var rels []func()
	for range 100 {
		rels = append(rels, mustAcquire(t, s))
	}
	if in, w := s.Stats(); in != 100 || w != 0 {
		t.Fatalf("Stats = %d,%d, want 100,0", in, w)
	}
	for _, r := range rels {
		r()
	}
	if in, _ := s.Stats(); in != 0 {
		t.Fatalf("inUse after release = %d", in)
	}
}

func TestFIFOOrderAndPositions(t *testing.T) {
	t.Parallel()
	s := NewSlots(1, 0)
	hold := mustAcquire(t, s)

	const n = 5
	order := make(chan int, n)
	type posCall struct{ pos, qlen int }
	positions := make([][]posCall, n)
	var pmu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		// Enqueue one at a time so the queue order is known.
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := s.Acquire(context.Background(), func(p, q int) {
				pmu.Lock()
				positions[i] = append(positions[i], posCall{p, q})
				pmu.Unlock()
			})
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			order <- i
			rel()
		}()
		waitFor(t, "waiter to queue", func() bool { _, w := s.Stats(); return w == i+1 })
	}
	hold()
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("grant order: got waiter %d, want %d", got, want)
		}
		want++
	}
	pmu.Lock()
	defer pmu.Unlock()
	for i, calls := range positions {
		if len(calls) == 0 || calls[0].pos != i+1 || calls[0].qlen != i+1 {
			t.Fatalf("waiter %d first position call = %v, want {%d %d}", i, calls, i+1, i+1)
		}
		// Positions only go down. A waiter may be granted before it reads its
		// latest position, so the last report need not be 1.
		for k := 1; k < len(calls); k++ {
			if calls[k].pos >= calls[k-1].pos {
				t.Fatalf("waiter %d positions not decreasing: %v", i, calls)
			}
		}
	}
	if in, w := s.Stats(); in != 0 || w != 0 {
		t.Fatalf("Stats after = %d,%d", in, w)
	}
}

func TestNoCallbackWhenFree(t *testing.T) {
	t.Parallel()
	s := NewSlots(2, 0)
	called := false
	rel, err := s.Acquire(context.Background(), func(int, int) { called = true })
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	if called {
		t.Fatal("onPosition called though a slot was free")
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	s := NewSlots(1, 2)
	hold := mustAcquire(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			rel, err := s.Acquire(ctx, nil)
			if err == nil {
				rel()
			}
			errs <- err
		}()
		waitFor(t, "queued", func() bool { _, w := s.Stats(); return w == i+1 })
	}
	start := time.Now()
	_, err := s.Acquire(context.Background(), nil)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: err = %v, want ErrQueueFull", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("ErrQueueFull was not immediate")
	}
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("queued waiter err = %v, want context.Canceled", err)
		}
	}
	hold()
	if in, w := s.Stats(); in != 0 || w != 0 {
		t.Fatalf("Stats after = %d,%d", in, w)
	}
}

func TestCancelWhileWaitingUpdatesOthers(t *testing.T) {
	t.Parallel()
	s := NewSlots(1, 0)
	hold := mustAcquire(t, s)

	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := s.Acquire(ctxA, nil)
		errA <- err
	}()
	waitFor(t, "A queued", func() bool { _, w := s.Stats(); return w == 1 })

	posB := make(chan int, 10)
	gotB := make(chan func(), 1)
	go func() {
		rel, err := s.Acquire(context.Background(), func(p, _ int) { posB <- p })
		if err != nil {
			t.Errorf("B: %v", err)
			gotB <- func() {}
			return
		}
		gotB <- rel
	}()
	if p := <-posB; p != 2 {
		t.Fatalf("B first position %d, want 2", p)
	}
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("A err = %v", err)
	}
	select {
	case p := <-posB:
		if p != 1 {
			t.Fatalf("B moved to %d, want 1", p)
		}
	case <-time.After(waitBound):
		t.Fatal("B was not told it moved up")
	}
	hold()
	select {
	case rel := <-gotB:
		rel()
	case <-time.After(waitBound):
		t.Fatal("B never got the slot")
	}
	if in, w := s.Stats(); in != 0 || w != 0 {
		t.Fatalf("Stats after = %d,%d", in, w)
	}
}

func TestReleaseIdempotent(t *testing.T) {
	t.Parallel()
	s := NewSlots(2, 0)
	a := mustAcquire(t, s)
	b := mustAcquire(t, s)
	a()
	a()
	a()
	if in, _ := s.Stats(); in != 1 {
		t.Fatalf("inUse = %d after releasing a thrice, want 1", in)
	}
	b()
	if in, _ := s.Stats(); in != 0 {
		t.Fatalf("inUse = %d, want 0", in)
	}
}

func TestAcquireWithDoneContext(t *testing.T) {
	t.Parallel()
	s := NewSlots(1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Acquire(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if in, _ := s.Stats(); in != 0 {
		t.Fatalf("inUse = %d", in)
	}
}

// TestNoLeakOnCancelRace races cancellation against grants many times and
// checks the books balance: every slot is back and the limit never broke.
func TestNoLeakOnCancelRace(t *testing.T) {
	t.Parallel()
	const limit = 3
	s := NewSlots(limit, 0)
	var mu sync.Mutex
	held, maxHeld := 0, 0
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*50*time.Microsecond)
			defer cancel()
			rel, err := s.Acquire(ctx, func(int, int) {})
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v", err)
				}
				return
			}
			mu.Lock()
			held++
			maxHeld = max(maxHeld, held)
			mu.Unlock()
			time.Sleep(20 * time.Microsecond)
			mu.Lock()
			held--
			mu.Unlock()
			rel()
		}()
	}
	wg.Wait()
	if in, w := s.Stats(); in != 0 || w != 0 {
		t.Fatalf("Stats after race = %d,%d, want 0,0 (slot leak)", in, w)
	}
	if maxHeld > limit {
		t.Fatalf("max held %d > limit %d", maxHeld, limit)
	}
	// The limiter still works after the storm.
	var rels []func()
	for range limit {
		rels = append(rels, mustAcquire(t, s))
	}
	for _, r := range rels {
		r()
	}
}
