package gen

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
)

func TestRunEndsBeforeReturning(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, nil)
	b := setup(t, one("a", fake), nil)
	job, err := b.svc.Run(context.Background(), genReq(3))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-job.Done():
	default:
		t.Fatal("Run returned before the job ended")
	}
	snap := job.Snapshot()
	if snap.Status != StatusSucceeded || snap.Backend != "a" || snap.Finished.IsZero() || snap.Err != nil {
		t.Fatalf("snapshot = %+v", snap)
	}
	for i, img := range snap.Images {
		if img.Key == "" || int64(len(readBlob(t, b.blobs, img.Key))) != img.Bytes {
			t.Errorf("image %d = %+v", i, img)
		}
	}
	want := []provider.EventType{provider.EventImage, provider.EventImage, provider.EventImage, provider.EventSucceeded}
	var got []provider.EventType
	for _, ev := range events(job) {
		if ev.Type == provider.EventImage || ev.Type == provider.EventSucceeded {
			got = append(got, ev.Type)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image and end events (-want +got):\n%s", diff)
	}
	if g, ok := b.svc.Get(job.ID()); !ok || g != job {
		t.Error("Get does not return the job Run ran")
	}
	// MaxN 1: three calls, run side by side as Start runs them.
	if calls, _, _ := fake.stats(); calls != 3 {
		t.Errorf("%d upstream calls for 3 images at MaxN %d, want 3", calls, basicCaps.MaxN)
	}
}

func TestRunRefusesLikeStart(t *testing.T) {
	t.Parallel()
	b := setup(t, one("a", newFake(basicCaps, nil)), nil)
	var nf *NotFoundError
	if _, err := b.svc.Run(context.Background(), &Request{Model: "nope", Prompt: "x", N: 1}); !errors.As(err, &nf) {
		t.Errorf("unknown model: %v", err)
	}
	var inv *InvalidError
	if _, err := b.svc.Run(context.Background(), &Request{Model: "m", N: 1}); !errors.As(err, &inv) {
		t.Errorf("empty prompt: %v", err)
	}
	if _, err := b.svc.Run(context.Background(), nil); !errors.As(err, &inv) {
		t.Errorf("nil request: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Run(context.Background(), genReq(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestRunStopsWithItsCaller(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, blocking())
	b := setup(t, one("a", fake), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		job *Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		job, err := b.svc.Run(ctx, genReq(1))
		done <- result{job, err}
	}()
	eventually(t, "running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if s := r.job.Snapshot(); s.Status != StatusCanceled || s.Err == nil || s.Err.Kind != provider.KindCanceled {
		t.Fatalf("snapshot after the caller left = %+v", s)
	}
}

func TestCloseWaitsForRun(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, blocking())
	b := setup(t, one("a", fake), nil)
	done := make(chan *Job, 1)
	go func() {
		job, err := b.svc.Run(context.Background(), genReq(1))
		if err != nil {
			t.Error(err)
		}
		done <- job
	}()
	eventually(t, "running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	job := <-done
	if job == nil {
		t.Fatal("Run failed")
	}
	if s := job.Snapshot(); s.Status != StatusCanceled {
		t.Fatalf("status after Close = %s", s.Status)
	}
}

func TestCountBoundOverManyJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, one("a", newFake(basicCaps, nil)), nil)
	const keep = 3
	b.svc.mu.Lock()
	b.svc.maxFinished = keep
	b.svc.mu.Unlock()
	var ids []string
	for i := range 20 {
		job, err := b.svc.Run(context.Background(), genReq(1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, job.ID())
		// Run returns after the job is recorded as finished, so the bound
		// holds after every job, across the list's compactions.
		for k, id := range ids {
			_, ok := b.svc.Get(id)
			if want := k >= len(ids)-keep; ok != want {
				t.Fatalf("after job %d: job %d kept = %v, want %v", i, k, ok, want)
			}
		}
		b.svc.mu.Lock()
		live := len(b.svc.finished) - b.svc.head
		b.svc.mu.Unlock()
		if live != min(len(ids), keep) {
			t.Fatalf("after job %d: %d finished jobs tracked, want %d", i, live, min(len(ids), keep))
		}
	}
}
