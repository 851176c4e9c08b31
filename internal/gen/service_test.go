package gen

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

func eventTypes(evs []provider.Event) []provider.EventType {
	var out []provider.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestEventsOrderAndResult(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, func(_ context.Context, _ int, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
		emit(provider.Event{Type: provider.EventQueued, Position: 2, QueueSize: 5})
		emit(provider.Event{Type: provider.EventStarted})
		emit(provider.Event{Type: provider.EventProgress, Step: 1, Total: 2})
		emit(provider.Event{Type: provider.EventProgress, Step: 2, Total: 2})
		// Only the runner may announce images and the end.
		emit(provider.Event{Type: provider.EventImage})
		emit(provider.Event{Type: provider.EventSucceeded})
		seed := int64(7)
		return &provider.Result{Images: []provider.Image{{Data: pngBytes(8, 6, 1), MIME: "image/png", Seed: &seed}}}, nil
	})
	b := setup(t, one("a", fake), nil)
	job, snap := runJob(t, b.svc, context.Background(), genReq(1))

	want := []provider.EventType{provider.EventQueued, provider.EventStarted, provider.EventProgress, provider.EventProgress, provider.EventImage, provider.EventSucceeded}
	evs := events(job)
	if diff := cmp.Diff(want, eventTypes(evs)); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
	if evs[0].Source != "upstream" || evs[0].Position != 2 {
		t.Errorf("upstream queued event = %+v", evs[0])
	}
	if snap.Status != StatusSucceeded || snap.Backend != "a" || snap.Started.IsZero() || snap.Finished.IsZero() || snap.Err != nil {
		t.Fatalf("snapshot = %+v", snap)
	}
	img := snap.Images[0]
	if img.Format != "png" || img.MIME != "image/png" || img.Width != 8 || img.Height != 6 || img.Seed == nil || *img.Seed != 7 {
		t.Fatalf("stored image = %+v", img)
	}
	data := readBlob(t, b.blobs, img.Key)
	if int64(len(data)) != img.Bytes {
		t.Fatalf("blob is %d bytes, snapshot says %d", len(data), img.Bytes)
	}
	if got := snap.Progress[0]; got.Step != 2 || got.Total != 2 {
		t.Errorf("progress = %+v", got)
	}
	select {
	case <-job.Done():
	default:
		t.Fatal("Done not closed after the terminal event")
	}
	if got, ok := b.svc.Get(job.ID()); !ok || got != job {
		t.Fatal("Get does not return the finished job")
	}
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		maxN, n   int
		wantCalls []callSpec
	}{
		{"maxN 1", 1, 3, []callSpec{{0, 1}, {1, 1}, {2, 1}}},
		{"maxN 4", 4, 10, []callSpec{{0, 4}, {4, 4}, {8, 2}}},
		{"maxN 0 means 1", 0, 2, []callSpec{{0, 1}, {1, 1}}},
		{"fits in one", 4, 3, []callSpec{{0, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			caps := basicCaps
			caps.MaxN = tc.maxN
			fake := newFake(caps, nil)
			b := setup(t, one("a", fake), nil)
			req := genReq(tc.n)
			seed := int64(100)
			req.Seed = &seed
			job, snap := runJob(t, b.svc, context.Background(), req)
			if snap.Status != StatusSucceeded {
				t.Fatalf("status %s err %v", snap.Status, snap.Err)
			}
			var got []callSpec
			for _, c := range fake.recorded() {
				got = append(got, callSpec{c.req.Index, c.req.N})
				if c.req.Seed == nil || *c.req.Seed != seed+int64(c.req.Index) {
					t.Errorf("call at index %d got seed %v, want %d", c.req.Index, c.req.Seed, seed+int64(c.req.Index))
				}
				if c.req.JobID != job.ID() || c.req.Model != "m" {
					t.Errorf("call request = %+v", c.req)
				}
			}
			sort.Slice(got, func(i, j int) bool { return got[i].index < got[j].index })
			if diff := cmp.Diff(tc.wantCalls, got, cmp.AllowUnexported(callSpec{})); diff != "" {
				t.Fatalf("calls (-want +got):\n%s", diff)
			}
			keys := map[string]bool{}
			for i, img := range snap.Images {
				if img.Key == "" {
					t.Fatalf("image %d missing", i)
				}
				keys[img.Key] = true
			}
			if len(keys) != tc.n {
				t.Fatalf("%d distinct images, want %d", len(keys), tc.n)
			}
			var imageEvents []int
			for _, e := range events(job) {
				if e.Type == provider.EventImage {
					imageEvents = append(imageEvents, e.Index)
				}
			}
			slices.Sort(imageEvents)
			if len(imageEvents) != tc.n || imageEvents[0] != 0 || imageEvents[tc.n-1] != tc.n-1 {
				t.Fatalf("image events for %v", imageEvents)
			}
		})
	}
}

func TestConcurrencyLimitAndQueuePositions(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	fake := newFake(basicCaps, gated(gate))
	b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 2}}, nil)
	job, err := b.svc.Start(context.Background(), genReq(6))
	if err != nil {
		t.Fatal(err)
	}
	be := b.svc.backends["a"]
	eventually(t, "2 running and 4 queued", func() bool {
		in, waiting := be.slots.Stats()
		_, inFlight, _ := fake.stats()
		return in == 2 && waiting == 4 && inFlight == 2
	})
	// Every waiting call reported a distinct first position.
	eventually(t, "queued events", func() bool {
		n := 0
		for _, e := range events(job) {
			if e.Type == provider.EventQueued {
				n++
			}
		}
		return n >= 4
	})
	first := map[int]int{} // index -> first position
	for _, e := range events(job) {
		if e.Type != provider.EventQueued {
			continue
		}
		if e.Source != "easel" {
			t.Fatalf("queued event source %q", e.Source)
		}
		if _, seen := first[e.Index]; !seen {
			first[e.Index] = e.Position
		}
	}
	var positions []int
	for _, p := range first {
		positions = append(positions, p)
	}
	slices.Sort(positions)
	if diff := cmp.Diff([]int{1, 2, 3, 4}, positions); diff != "" {
		t.Fatalf("first positions (-want +got):\n%s", diff)
	}
	if snap := job.Snapshot(); snap.Status != StatusRunning {
		t.Fatalf("status %s while calls run", snap.Status)
	}
	close(gate)
	snap := wait(t, job)
	if snap.Status != StatusSucceeded {
		t.Fatalf("status %s: %v", snap.Status, snap.Err)
	}
	if calls, _, maxIn := fake.stats(); calls != 6 || maxIn != 2 {
		t.Fatalf("calls %d, max in flight %d; want 6 and 2", calls, maxIn)
	}
	// Someone moved up the queue: a later queued event with a smaller
	// position for the same index.
	moved := false
	last := map[int]int{}
	for _, e := range events(job) {
		if e.Type == provider.EventQueued {
			if p, ok := last[e.Index]; ok && e.Position < p {
				moved = true
			}
			last[e.Index] = e.Position
		}
	}
	if !moved {
		t.Fatal("no position update was reported")
	}
}

func TestNoQueuedEventWhenSlotFree(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, nil)
	b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 5}}, nil)
	job, _ := runJob(t, b.svc, context.Background(), genReq(2))
	for _, e := range events(job) {
		if e.Type == provider.EventQueued {
			t.Fatalf("queued event %+v with free slots", e)
		}
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	fake := newFake(basicCaps, gated(gate))
	b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 1, MaxQueue: 1}}, func(o *Options) { o.Attempts = 1 })
	j1, err := b.svc.Start(context.Background(), genReq(1))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "first running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	j2, err := b.svc.Start(context.Background(), genReq(1))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "second queued", func() bool { _, w := b.svc.backends["a"].slots.Stats(); return w == 1 })
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err == nil || snap.Err.Kind != provider.KindUnavailable || !snap.Err.NotStarted || snap.Err.RetryAfter <= 0 {
		t.Fatalf("third job: status %s err %+v", snap.Status, snap.Err)
	}
	close(gate)
	for _, j := range []*Job{j1, j2} {
		if s := wait(t, j); s.Status != StatusSucceeded {
			t.Fatalf("job %s: %s %v", j.ID(), s.Status, s.Err)
		}
	}
}

func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	defer close(gate)
	fake := newFake(basicCaps, gated(gate))
	b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 1, QueueTimeout: 30 * time.Millisecond}}, func(o *Options) { o.Attempts = 1 })
	if _, err := b.svc.Start(context.Background(), genReq(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindUnavailable || !snap.Err.NotStarted {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
}

func TestStagger(t *testing.T) {
	t.Parallel()
	const stagger = 40 * time.Millisecond
	fake := newFake(basicCaps, nil)
	b := setup(t, one("a", fake), func(o *Options) { o.Stagger = stagger })
	_, snap := runJob(t, b.svc, context.Background(), genReq(4))
	if snap.Status != StatusSucceeded {
		t.Fatalf("status %s", snap.Status)
	}
	calls := fake.recorded()
	if len(calls) != 4 {
		t.Fatalf("%d calls", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		gap := calls[i].at.Sub(calls[i-1].at)
		// The runner books starts a few instructions before the fake
		// records them; allow that much.
		if gap < stagger-2*time.Millisecond || gap > stagger+2*time.Second {
			t.Fatalf("gap between starts %d and %d = %s, want >= %s", i-1, i, gap, stagger)
		}
	}
}

func notStarted(kind provider.ErrorKind, retryAfter time.Duration) *provider.Error {
	return &provider.Error{Kind: kind, Message: "busy", NotStarted: true, RetryAfter: retryAfter}
}

// failing returns a script whose first len(errs) calls fail with errs.
func failing(errs ...error) script {
	return func(_ context.Context, call int, req *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		if call < len(errs) {
			return nil, errs[call]
		}
		return okResult(req), nil
	}
}

func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	internal := errors.New("disk on fire")
	tests := []struct {
		name      string
		errs      []error
		attempts  int
		wantCalls int
		wantKind  provider.ErrorKind
		wantOK    bool
	}{
		{"not started is retried", []error{notStarted(provider.KindUnavailable, 0)}, 3, 2, 0, true},
		{"twice then ok", []error{notStarted(provider.KindRateLimited, 0), notStarted(provider.KindUnavailable, 0)}, 3, 3, 0, true},
		{"attempts exhausted", []error{notStarted(provider.KindRateLimited, 0), notStarted(provider.KindRateLimited, 0), notStarted(provider.KindRateLimited, 0)}, 3, 3, provider.KindRateLimited, false},
		{"started failure is not retried", []error{&provider.Error{Kind: provider.KindUpstream, Message: "boom"}}, 3, 1, provider.KindUpstream, false},
		{"bad request is not retried", []error{&provider.Error{Kind: provider.KindBadRequest, Message: "nsfw"}}, 3, 1, provider.KindBadRequest, false},
		{"internal error", []error{internal}, 3, 1, provider.KindUpstream, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(basicCaps, failing(tc.errs...))
			b := setup(t, one("a", fake), func(o *Options) { o.Attempts = tc.attempts })
			job, snap := runJob(t, b.svc, context.Background(), genReq(1))
			if calls, _, _ := fake.stats(); calls != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if tc.wantOK {
				if snap.Status != StatusSucceeded {
					t.Fatalf("status %s err %v", snap.Status, snap.Err)
				}
				return
			}
			if snap.Status != StatusFailed || snap.Err == nil || snap.Err.Kind != tc.wantKind {
				t.Fatalf("status %s err %+v", snap.Status, snap.Err)
			}
			evs := events(job)
			if last := evs[len(evs)-1]; last.Type != provider.EventFailed || last.Message != snap.Err.Message {
				t.Fatalf("last event %+v", last)
			}
			if tc.name == "internal error" && (snap.Err.Message != "internal error" || !errors.Is(snap.Err, internal)) {
				t.Fatalf("internal error not wrapped: %+v", snap.Err)
			}
		})
	}
}

func TestFailover(t *testing.T) {
	t.Parallel()
	a := newFake(basicCaps, func(context.Context, int, *provider.Request, func(provider.Event)) (*provider.Result, error) {
		return nil, notStarted(provider.KindUnavailable, 0)
	})
	bb := newFake(basicCaps, nil)
	b := setup(t, []Backend{{Name: "a", Provider: a}, {Name: "b", Provider: bb}}, nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusSucceeded || snap.Backend != "b" {
		t.Fatalf("status %s backend %q err %v", snap.Status, snap.Backend, snap.Err)
	}
	ca, _, _ := a.stats()
	cb, _, _ := bb.stats()
	if ca != 1 || cb != 1 {
		t.Fatalf("calls a=%d b=%d, want 1 and 1 (fail over before backing off)", ca, cb)
	}
}

func TestFailoverDoesNotRepeatStartedWork(t *testing.T) {
	t.Parallel()
	a := newFake(basicCaps, failing(&provider.Error{Kind: provider.KindUpstream, Message: "reset after send"}))
	bb := newFake(basicCaps, nil)
	b := setup(t, []Backend{{Name: "a", Provider: a}, {Name: "b", Provider: bb}}, nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed {
		t.Fatalf("status %s", snap.Status)
	}
	if cb, _, _ := bb.stats(); cb != 0 {
		t.Fatalf("second backend called %d times after a started failure", cb)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	t.Run("honoured", func(t *testing.T) {
		t.Parallel()
		const ra = 120 * time.Millisecond
		fake := newFake(basicCaps, failing(notStarted(provider.KindRateLimited, ra)))
		b := setup(t, one("a", fake), nil)
		_, snap := runJob(t, b.svc, context.Background(), genReq(1))
		if snap.Status != StatusSucceeded {
			t.Fatalf("status %s", snap.Status)
		}
		calls := fake.recorded()
		if len(calls) != 2 {
			t.Fatalf("%d calls", len(calls))
		}
		if gap := calls[1].at.Sub(calls[0].at); gap < ra || gap > ra+2*time.Second {
			t.Fatalf("retried after %s, want about %s", gap, ra)
		}
	})
	t.Run("over max fails fast", func(t *testing.T) {
		t.Parallel()
		fake := newFake(basicCaps, failing(notStarted(provider.KindRateLimited, 2*time.Minute)))
		b := setup(t, one("a", fake), func(o *Options) { o.MaxRetryAfter = time.Second })
		start := time.Now()
		_, snap := runJob(t, b.svc, context.Background(), genReq(1))
		if time.Since(start) > 2*time.Second {
			t.Fatal("did not fail fast")
		}
		if snap.Status != StatusFailed || snap.Err.Kind != provider.KindRateLimited || snap.Err.RetryAfter != 2*time.Minute {
			t.Fatalf("status %s err %+v", snap.Status, snap.Err)
		}
		if calls, _, _ := fake.stats(); calls != 1 {
			t.Fatalf("%d calls", calls)
		}
	})
	t.Run("patient waits out a long Retry-After", func(t *testing.T) {
		t.Parallel()
		// Two refusals whose Retry-After exceeds MaxRetryAfter, then the
		// work is taken: a patient job waits and succeeds where a normal
		// one fails at once.
		ra := 300 * time.Millisecond
		fake := newFake(basicCaps, func(ctx context.Context, call int, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
			if call < 2 {
				return nil, notStarted(provider.KindRateLimited, ra)
			}
			return okResult(req), nil
		})
		b := setup(t, one("a", fake), func(o *Options) { o.MaxRetryAfter = 50 * time.Millisecond; o.Attempts = 1 })
		req := genReq(1)
		req.Patient = true
		start := time.Now()
		job, snap := runJob(t, b.svc, context.Background(), req)
		if snap.Status != StatusSucceeded {
			t.Fatalf("status %s err %+v", snap.Status, snap.Err)
		}
		if took := time.Since(start); took < 2*ra {
			t.Errorf("succeeded after %s, before the two Retry-Afters (%s each)", took, ra)
		}
		past, _, stop := job.Subscribe()
		stop()
		logs := 0
		for _, ev := range past {
			if ev.Type == provider.EventLog && strings.Contains(ev.Message, "trying again in") {
				logs++
			}
		}
		if logs != 2 {
			t.Errorf("%d retry announcements, want 2", logs)
		}
	})
	t.Run("beyond deadline fails fast", func(t *testing.T) {
		t.Parallel()
		fake := newFake(basicCaps, failing(notStarted(provider.KindRateLimited, 30*time.Second)))
		b := setup(t, one("a", fake), func(o *Options) { o.JobTimeout = 2 * time.Second })
		start := time.Now()
		_, snap := runJob(t, b.svc, context.Background(), genReq(1))
		if time.Since(start) > time.Second {
			t.Fatal("waited although the Retry-After outlasts the deadline")
		}
		if snap.Status != StatusFailed || snap.Err.Kind != provider.KindRateLimited || snap.Err.RetryAfter != 30*time.Second {
			t.Fatalf("status %s err %+v", snap.Status, snap.Err)
		}
	})
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, blocking())
	b := setup(t, one("a", fake), func(o *Options) { o.JobTimeout = 100 * time.Millisecond })
	job, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindTimeout || snap.Err.Message != "job exceeded its deadline of 0.1s" {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
	if c := fake.recorded(); len(c) != 1 || c[0].ctxErr == nil {
		t.Fatalf("provider did not see its context end: %+v", c)
	}
	if evs := events(job); evs[len(evs)-1].Type != provider.EventFailed {
		t.Fatalf("last event %+v", evs[len(evs)-1])
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cancel  func(context.CancelFunc, *Job)
		wantMsg string
	}{
		{"client context", func(c context.CancelFunc, _ *Job) { c() }, "client disconnected"},
		{"Job.Cancel", func(_ context.CancelFunc, j *Job) { j.Cancel() }, "job canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(basicCaps, blocking())
			b := setup(t, one("a", fake), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			job, err := b.svc.Start(ctx, genReq(2))
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "calls running", func() bool { _, in, _ := fake.stats(); return in == 2 })
			tc.cancel(cancel, job)
			snap := wait(t, job)
			if snap.Status != StatusCanceled || snap.Err.Kind != provider.KindCanceled || snap.Err.Message != tc.wantMsg {
				t.Fatalf("status %s err %+v", snap.Status, snap.Err)
			}
			for _, c := range fake.recorded() {
				if c.ctxErr == nil {
					t.Fatal("provider did not see its context end")
				}
			}
			evs := events(job)
			if last := evs[len(evs)-1]; last.Type != provider.EventCanceled || last.Message != tc.wantMsg {
				t.Fatalf("last event %+v", last)
			}
		})
	}
}

func TestFailureCancelsSiblings(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, func(ctx context.Context, _ int, req *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		if req.Index == 1 {
			return nil, &provider.Error{Kind: provider.KindBadRequest, Message: "refused"}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	b := setup(t, one("a", fake), nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(3))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindBadRequest {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
	for _, c := range fake.recorded() {
		if c.req.Index != 1 && c.ctxErr == nil {
			t.Fatalf("sibling %d was not cancelled", c.req.Index)
		}
	}
}

func TestOutputFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format   string
		wantMIME string
	}{
		{"", imageio.MIMEPNG},
		{"png", imageio.MIMEPNG},
		{"jpeg", imageio.MIMEJPEG},
		{"webp", imageio.MIMEWebP},
	}
	for _, tc := range tests {
		t.Run("webp to "+tc.format, func(t *testing.T) {
			t.Parallel()
			fake := newFake(basicCaps, func(_ context.Context, _ int, _ *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
				return &provider.Result{Images: []provider.Image{{Data: webpBytes(10, 7, 3), MIME: "image/png"}}}, nil
			})
			b := setup(t, one("a", fake), nil)
			req := genReq(1)
			req.OutputFormat = tc.format
			_, snap := runJob(t, b.svc, context.Background(), req)
			if snap.Status != StatusSucceeded {
				t.Fatalf("status %s err %v", snap.Status, snap.Err)
			}
			img := snap.Images[0]
			data := readBlob(t, b.blobs, img.Key)
			if got, _ := imageio.Sniff(data); got != tc.wantMIME || img.MIME != tc.wantMIME {
				t.Fatalf("stored %s (snapshot %s), want %s", got, img.MIME, tc.wantMIME)
			}
			if img.Width != 10 || img.Height != 7 {
				t.Fatalf("size %dx%d", img.Width, img.Height)
			}
		})
	}
}

func TestBadUpstreamImage(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, func(context.Context, int, *provider.Request, func(provider.Event)) (*provider.Result, error) {
		return &provider.Result{Images: []provider.Image{{Data: []byte("<html>oops</html>")}}}, nil
	})
	b := setup(t, one("a", fake), nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindProtocol {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
}

func TestTooFewImages(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.MaxN = 4
	fake := newFake(caps, func(_ context.Context, _ int, req *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		r := okResult(req)
		r.Images = r.Images[:1]
		return r, nil
	})
	b := setup(t, one("a", fake), nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(3))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindProtocol {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
}

func TestProviderPanicFailsJob(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, func(context.Context, int, *provider.Request, func(provider.Event)) (*provider.Result, error) {
		panic("provider bug")
	})
	b := setup(t, one("a", fake), nil)
	_, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err.Message != "internal error" {
		t.Fatalf("status %s err %+v", snap.Status, snap.Err)
	}
}

func TestUnsupportedControlsDropped(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.Seed, caps.Steps, caps.NegativePrompt = false, false, false
	fake := newFake(caps, nil)
	b := setup(t, one("a", fake), nil)
	req := genReq(1)
	seed := int64(5)
	req.Seed, req.Steps, req.NegativePrompt = &seed, 999, "blurry"
	_, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Status != StatusSucceeded {
		t.Fatalf("status %s err %v", snap.Status, snap.Err)
	}
	got := fake.recorded()[0].req
	if got.Seed != nil || got.Steps != 0 || got.NegativePrompt != "" {
		t.Fatalf("unsupported controls passed on: %+v", got)
	}
}

func TestModelResolution(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, nil)
	b := setup(t, one("a", fake), func(o *Options) {
		o.Models = append(o.Models, Model{ID: "Other", Backends: []string{"a"}})
	})
	for _, id := range []string{"m", "m-alias", "M-ALIAS", "M"} {
		mi, ok := b.svc.Model(id)
		if !ok || mi.ID != "m" {
			t.Fatalf("Model(%q) = %q,%v", id, mi.ID, ok)
		}
	}
	if mi, ok := b.svc.Model("other"); !ok || mi.ID != "Other" {
		t.Fatalf("case-insensitive fallback: %q %v", mi.ID, ok)
	}
	if _, ok := b.svc.Model("nope"); ok {
		t.Fatal("unknown model found")
	}
	models := b.svc.Models()
	if len(models) != 2 || models[0].ID != "m" || models[1].ID != "Other" || models[0].Capabilities.MaxN != basicCaps.MaxN {
		t.Fatalf("Models = %+v", models)
	}
	req := genReq(1)
	req.Model = "m-alias"
	_, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Model != "m" || fake.recorded()[0].req.Model != "m" {
		t.Fatalf("job model %q, provider model %q", snap.Model, fake.recorded()[0].req.Model)
	}
	req.Model = "nope"
	var nf *NotFoundError
	if _, err := b.svc.Start(context.Background(), req); !errors.As(err, &nf) || nf.Model != "nope" {
		t.Fatalf("err = %v", err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	genOnly := basicCaps
	genOnly.ImageToImage = false
	editOnly := basicCaps
	editOnly.TextToImage = false
	in := provider.InputImage{Data: pngBytes(4, 4, 0), MIME: "image/png", Name: "a.png", Width: 4, Height: 4}
	withRatios := basicCaps
	withRatios.AspectRatios = []string{"match_input_image", "1:1", "16:9"}
	tests := []struct {
		name      string
		caps      provider.Capabilities
		mod       func(*Request)
		wantParam string // "" means valid
	}{
		{"ok", basicCaps, func(*Request) {}, ""},
		{"empty prompt", basicCaps, func(r *Request) { r.Prompt = "  " }, "prompt"},
		{"n zero", basicCaps, func(r *Request) { r.N = 0 }, "n"},
		{"n over max", basicCaps, func(r *Request) { r.N = 11 }, "n"},
		{"n at max", basicCaps, func(r *Request) { r.N = 10 }, ""},
		{"too many pixels", basicCaps, func(r *Request) { r.Width, r.Height = 8000, 8000 }, "size"},
		{"half a size", basicCaps, func(r *Request) { r.Width = 512 }, "size"},
		{"edit on generate-only", genOnly, func(r *Request) { r.Kind = provider.KindEdit; r.Images = []provider.InputImage{in} }, "image"},
		{"generate on edit-only", editOnly, func(*Request) {}, "image"},
		{"edit without image", basicCaps, func(r *Request) { r.Kind = provider.KindEdit }, "image"},
		{"too many inputs", basicCaps, func(r *Request) { r.Kind = provider.KindEdit; r.Images = []provider.InputImage{in, in, in} }, "image"},
		{"edit ok", basicCaps, func(r *Request) { r.Kind = provider.KindEdit; r.Images = []provider.InputImage{in, in} }, ""},
		{"steps below", basicCaps, func(r *Request) { r.Steps = -1 }, "steps"},
		{"steps above", basicCaps, func(r *Request) { r.Steps = 51 }, "steps"},
		{"steps ok", basicCaps, func(r *Request) { r.Steps = 50 }, ""},
		{"steps unsupported ignored", func() provider.Capabilities { c := basicCaps; c.Steps = false; return c }(), func(r *Request) { r.Steps = 500 }, ""},
		{"bad output format", basicCaps, func(r *Request) { r.OutputFormat = "bmp" }, "output_format"},
		{"bad aspect ratio", basicCaps, func(r *Request) { r.AspectRatio = "wide" }, "aspect_ratio"},
		{"symbolic ratio the backend lists", withRatios, func(r *Request) { r.AspectRatio = "match_input_image" }, ""},
		{"symbolic ratio the backend lacks", basicCaps, func(r *Request) { r.AspectRatio = "match_input_image" }, "aspect_ratio"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(tc.caps, nil)
			b := setup(t, one("a", fake), nil)
			req := genReq(1)
			tc.mod(req)
			job, err := b.svc.Start(context.Background(), req)
			if tc.wantParam == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				wait(t, job)
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Param != tc.wantParam || inv.Message == "" {
				t.Fatalf("err = %v, want InvalidError on %q", err, tc.wantParam)
			}
			if calls, _, _ := fake.stats(); calls != 0 {
				t.Fatal("provider called for an invalid request")
			}
		})
	}
}

func TestNewServiceValidation(t *testing.T) {
	t.Parallel()
	p := newFake(basicCaps, nil)
	_, err := NewService(Options{
		Backends: []Backend{{Name: "a", Provider: p}, {Name: "a", Provider: p}, {Name: "b"}},
		Models: []Model{
			{ID: "x", Aliases: []string{"y"}, Backends: []string{"a"}},
			{ID: "y", Backends: []string{"missing"}},
			{ID: "z"},
		},
	})
	if err == nil {
		t.Fatal("bad options accepted")
	}
	joined, ok := errors.Unwrap(err).(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not a join: %v", err)
	}
	// no blobs, duplicate backend, backend without provider, duplicate id,
	// unknown backend, model without backend.
	if n := len(joined.Unwrap()); n != 6 {
		t.Fatalf("%d problems reported, want 6:\n%v", n, err)
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^img_[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newJobID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	o := withDefaults(Options{})
	got := []any{o.MaxN, o.MaxPixels, o.JobTimeout, o.Attempts, o.BackoffBase, o.BackoffCap, o.MaxRetryAfter, o.KeepFinished, o.Stagger}
	want := []any{10, 40_000_000, 300 * time.Second, 3, 500 * time.Millisecond, 8 * time.Second, 60 * time.Second, time.Hour, time.Duration(0)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("defaults (-want +got):\n%s", diff)
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	base, cap := 500*time.Millisecond, 8*time.Second
	for round := range 40 {
		limit := min(cap, base<<min(round, 20))
		for range 50 {
			if d := backoff(base, cap, round); d < 0 || d > limit {
				t.Fatalf("round %d: backoff %s outside [0,%s]", round, d, limit)
			}
		}
	}
}

func TestKeepFinished(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(1_800_000_000)
	fake := newFake(basicCaps, nil)
	b := setup(t, one("a", fake), func(o *Options) {
		o.KeepFinished = time.Minute
		o.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	})
	b.svc.mu.Lock()
	b.svc.maxFinished = 2
	b.svc.mu.Unlock()
	var ids []string
	for range 3 {
		job, _ := runJob(t, b.svc, context.Background(), genReq(1))
		eventually(t, "job recorded as finished", func() bool {
			b.svc.mu.Lock()
			defer b.svc.mu.Unlock()
			_, running := b.svc.running[job.ID()]
			return !running
		})
		ids = append(ids, job.ID())
	}
	if _, ok := b.svc.Get(ids[0]); ok {
		t.Fatal("oldest job kept beyond the count bound")
	}
	for _, id := range ids[1:] {
		if _, ok := b.svc.Get(id); !ok {
			t.Fatalf("recent job %s not kept", id)
		}
	}
	now.Add(120)
	for _, id := range ids {
		if _, ok := b.svc.Get(id); ok {
			t.Fatalf("job %s kept past KeepFinished", id)
		}
	}
}

func TestCloseCancelsAndRefuses(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, blocking())
	b := setup(t, one("a", fake), nil)
	job, err := b.svc.Start(context.Background(), genReq(1))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-job.Done():
	default:
		t.Fatal("Close returned before the job ended")
	}
	if s := job.Snapshot(); s.Status != StatusCanceled {
		t.Fatalf("status %s", s.Status)
	}
	if _, err := b.svc.Start(context.Background(), genReq(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// TestNoGoroutineLeak is not parallel: it counts the process's goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		gate := make(chan struct{})
		fake := newFake(basicCaps, gated(gate))
		b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 1}}, func(o *Options) { o.Stagger = time.Millisecond })
		ctx, cancel := context.WithCancel(context.Background())
		j1, _ := b.svc.Start(context.Background(), genReq(3))
		j2, _ := b.svc.Start(ctx, genReq(2))
		j3, _ := b.svc.Start(context.Background(), genReq(1))
		_, live, stop := j3.Subscribe()
		eventually(t, "queue formed", func() bool { _, w := b.svc.backends["a"].slots.Stats(); return w > 0 })
		cancel()
		wait(t, j2)
		close(gate)
		wait(t, j1)
		wait(t, j3)
		for range live {
		}
		stop()
		closeCtx, cc := context.WithTimeout(context.Background(), testWait)
		defer cc()
		if err := b.svc.Close(closeCtx); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(testWait)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEventIndexStamping(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.MaxN = 2
	fake := newFake(caps, func(_ context.Context, _ int, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
		emit(provider.Event{Type: provider.EventProgress, Index: 77, Step: 1, Total: 4})
		emit(provider.Event{Type: provider.EventPreview, Index: req.Index + 1, Data: []byte("p"), Message: "in range"})
		emit(provider.Event{Type: provider.EventPreview, Index: 99, Data: []byte("p"), Message: "out of range"})
		return okResult(req), nil
	})
	b := setup(t, one("a", fake), nil)
	job, err := b.svc.Start(context.Background(), genReq(4))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, job)
	progress := map[int]bool{}
	previews := map[string][]int{}
	for _, e := range events(job) {
		switch e.Type {
		case provider.EventProgress:
			progress[e.Index] = true
		case provider.EventPreview:
			previews[e.Message] = append(previews[e.Message], e.Index)
		}
	}
	if diff := cmp.Diff(map[int]bool{0: true, 2: true}, progress); diff != "" {
		t.Fatalf("progress indexes (-want +got):\n%s", diff)
	}
	for msg, want := range map[string][]int{"in range": {1, 3}, "out of range": {0, 2}} {
		got := slices.Sorted(slices.Values(previews[msg]))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%s preview indexes (-want +got):\n%s", msg, diff)
		}
	}
}

func TestDeadlineWhileQueued(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	// The first call holds its slot past its own deadline, as an upstream
	// that ignores cancellation would.
	fake := newFake(basicCaps, func(_ context.Context, _ int, req *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		<-gate
		return okResult(req), nil
	})
	b := setup(t, []Backend{{Name: "a", Provider: fake, Concurrency: 1}}, func(o *Options) { o.JobTimeout = 150 * time.Millisecond })
	first, err := b.svc.Start(context.Background(), genReq(1))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "first running", func() bool { _, in, _ := fake.stats(); return in == 1 })
	job, snap := runJob(t, b.svc, context.Background(), genReq(1))
	if snap.Status != StatusFailed || snap.Err.Kind != provider.KindTimeout || !snap.Started.IsZero() {
		t.Fatalf("queued job: status %s err %+v started %v", snap.Status, snap.Err, snap.Started)
	}
	var queued bool
	for _, e := range events(job) {
		queued = queued || (e.Type == provider.EventQueued && e.Source == "easel" && e.Position == 1)
	}
	if !queued {
		t.Fatal("no easel queued event")
	}
	if calls, _, _ := fake.stats(); calls != 1 {
		t.Fatalf("%d upstream calls, want 1", calls)
	}
	close(gate)
	wait(t, first)
	if in, w := b.svc.backends["a"].slots.Stats(); in != 0 || w != 0 {
		t.Fatalf("slots after = %d,%d", in, w)
	}
}

func TestEditRequestPassedOn(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, nil)
	b := setup(t, one("a", fake), nil)
	in := provider.InputImage{Data: pngBytes(4, 4, 0), MIME: "image/png", Name: "a.png", Width: 4, Height: 4}
	req := genReq(1)
	req.Kind = provider.KindEdit
	req.Images = []provider.InputImage{in}
	req.Mask = &in
	req.Width, req.Height = 1000, 700
	_, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Status != StatusSucceeded || snap.Width != 1024 || snap.Height != 704 {
		t.Fatalf("status %s size %dx%d", snap.Status, snap.Width, snap.Height)
	}
	got := fake.recorded()[0].req
	if got.Kind != provider.KindEdit || len(got.Images) != 1 || got.Mask == nil || got.Width != 1024 || got.Height != 704 {
		t.Fatalf("provider request = %+v", got)
	}
}

// TestUpstreamIDsRecorded: the id an upstream gives the work lands in the
// job record for every image that work draws, so the job can later be found,
// cancelled or resumed upstream.
func TestUpstreamIDsRecorded(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.MaxN = 2
	fake := newFake(caps, func(ctx context.Context, call int, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
		emit(provider.Event{Type: provider.EventAccepted, UpstreamID: fmt.Sprintf("up-%d", req.Index)})
		return okResult(req), nil
	})
	b := setup(t, one("a", fake), nil)
	job, err := b.svc.Start(context.Background(), genReq(3))
	if err != nil {
		t.Fatal(err)
	}
	snap := wait(t, job)
	if snap.Status != StatusSucceeded {
		t.Fatalf("status %s: %v", snap.Status, snap.Err)
	}
	// MaxN 2 splits n=3 into calls for images {0,1} and {2}.
	if diff := cmp.Diff([]string{"up-0", "up-0", "up-2"}, snap.UpstreamIDs); diff != "" {
		t.Errorf("upstream ids (-want +got):\n%s", diff)
	}
}
