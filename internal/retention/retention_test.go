package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/blob/local"
	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/logbuf"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// clock is a settable test clock. It starts two hours ahead of the wall
// clock, so files written now are already past the default grace period;
// tests that need a young file set its time explicitly.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	st    *sqlite.Store
	b     *local.Bucket
	dir   string
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "easel.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := local.New(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatalf("opening bucket: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &env{st: st, b: b, dir: dir, clock: newClock()}
}

func (e *env) options() Options {
	return Options{
		Jobs:        e.st.Jobs(),
		Idempotency: e.st.Idempotency(),
		Usage:       e.st.Usage(),
		Blobs:       e.b,
		Now:         e.clock.Now,
	}
}

func (e *env) cleaner(t *testing.T, mod func(*Options)) *Cleaner {
	t.Helper()
	o := e.options()
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func (e *env) put(t *testing.T, data string) string {
	t.Helper()
	key, err := e.b.Put(t.Context(), []byte(data), "image/png")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return key
}

// setAge sets key's modification time to d before the test clock.
func (e *env) setAge(t *testing.T, key string, d time.Duration) {
	t.Helper()
	at := e.clock.Now().Add(-d)
	if err := os.Chtimes(filepath.Join(e.dir, key[0:2], key[2:4], key), at, at); err != nil {
		t.Fatal(err)
	}
}

func (e *env) exists(t *testing.T, key string) bool {
	t.Helper()
	rc, _, err := e.b.Get(t.Context(), key)
	if errors.Is(err, blob.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	_ = rc.Close()
	return true
}

// job creates a record. finishedAgo < 0 leaves the job running.
func (e *env) job(t *testing.T, id string, finishedAgo time.Duration, images, inputs []string) {
	t.Helper()
	rec := jobRecord(id, e.clock.Now(), finishedAgo, images, inputs)
	if err := e.st.Jobs().Create(t.Context(), rec); err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
}

func jobRecord(id string, now time.Time, finishedAgo time.Duration, images, inputs []string) *store.JobRecord {
	rec := &store.JobRecord{ID: id, KeyID: "k", Model: "m", Status: store.StatusRunning, N: len(images), InputKeys: inputs}
	rec.Created = now.Add(-time.Minute)
	if finishedAgo >= 0 {
		rec.Created = now.Add(-finishedAgo - time.Minute)
		rec.Status, rec.Finished = store.StatusSucceeded, now.Add(-finishedAgo)
	}
	for _, k := range images {
		rec.Images = append(rec.Images, store.ImageRecord{Key: k, MIME: "image/png", Width: 1, Height: 1, Bytes: 1})
	}
	return rec
}

func (e *env) hasJob(t *testing.T, id string) bool {
	t.Helper()
	_, err := e.st.Jobs().Get(t.Context(), id, "")
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return true
}

const day = 24 * time.Hour

func TestSweepRemovesExpiredKeepsLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	blobs := map[string]string{}
	for _, name := range []string{"ancient-only", "shared", "ancient-input", "stale-result", "stale-input", "live-result", "live-input", "running-input", "running-result"} {
		blobs[name] = e.put(t, "bytes of "+name)
	}
	// Past the record retention (30 days): the record goes with its
	// unshared files; "shared" is also named by a live job.
	e.job(t, "ancient", 31*day, []string{blobs["ancient-only"], blobs["shared"]}, []string{blobs["ancient-input"]})
	// Past the results retention (7 days) only: the record stays, its
	// files go.
	e.job(t, "stale", 8*day, []string{blobs["stale-result"]}, []string{blobs["stale-input"]})
	e.job(t, "live", day, []string{blobs["live-result"], blobs["shared"]}, []string{blobs["live-input"]})
	e.job(t, "running", -1, []string{blobs["running-result"]}, []string{blobs["running-input"]})

	c := e.cleaner(t, nil)
	rep, err := c.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	removed := []string{"ancient-only", "ancient-input", "stale-result", "stale-input"}
	var bytes int64
	for _, n := range removed {
		bytes += int64(len("bytes of " + n))
	}
	want := Report{Jobs: 1, Referenced: 5, Blobs: len(removed), Bytes: bytes}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	for name, key := range blobs {
		if got, want := e.exists(t, key), !slices.Contains(removed, name); got != want {
			t.Errorf("blob %s exists = %v, want %v", name, got, want)
		}
	}
	for id, want := range map[string]bool{"ancient": false, "stale": true, "live": true, "running": true} {
		if got := e.hasJob(t, id); got != want {
			t.Errorf("job %s exists = %v, want %v", id, got, want)
		}
	}

	// A second pass finds nothing more to do.
	rep, err = c.Sweep(t.Context())
	if err != nil || rep.removed() {
		t.Errorf("second Sweep = %+v, %v; want nothing removed", rep, err)
	}

	// Once the live job's results expire too, its files go, including the
	// one it shared.
	e.clock.Advance(7 * day)
	rep, err = c.Sweep(t.Context())
	if err != nil {
		t.Fatalf("third Sweep: %v", err)
	}
	if rep.Blobs != 3 || e.exists(t, blobs["shared"]) || !e.exists(t, blobs["running-input"]) {
		t.Errorf("third Sweep removed %d blobs (want 3: live-result, live-input, shared); shared exists %v, running-input exists %v",
			rep.Blobs, e.exists(t, blobs["shared"]), e.exists(t, blobs["running-input"]))
	}
}

func TestOrphanGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := e.put(t, "orphan written before a crash")
	young := e.put(t, "written by a job that has not recorded it yet")
	e.setAge(t, old, 2*time.Hour)
	e.setAge(t, young, 10*time.Minute)
	c := e.cleaner(t, nil)

	rep, err := c.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if rep.Blobs != 1 || e.exists(t, old) || !e.exists(t, young) {
		t.Fatalf("first Sweep: removed %d, old exists %v, young exists %v; want old only", rep.Blobs, e.exists(t, old), e.exists(t, young))
	}
	e.clock.Advance(time.Hour)
	if rep, err = c.Sweep(t.Context()); err != nil || rep.Blobs != 1 || e.exists(t, young) {
		t.Fatalf("Sweep past grace: %+v, %v; young exists %v", rep, err, e.exists(t, young))
	}
}

// TestGraceShortenedByResults checks that a results retention shorter than
// the grace period wins, so a short retention really removes files soon.
func TestGraceShortenedByResults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.put(t, "short-lived")
	e.job(t, "j", 10*time.Second, []string{key}, nil)
	e.setAge(t, key, 12*time.Second)
	c := e.cleaner(t, func(o *Options) { o.Results = 5 * time.Second; o.Records = time.Minute })
	if rep, err := c.Sweep(t.Context()); err != nil || rep.Blobs != 1 || e.exists(t, key) {
		t.Fatalf("Sweep = %+v, %v; blob exists %v; want it removed", rep, err, e.exists(t, key))
	}
	if !e.hasJob(t, "j") {
		t.Fatal("record removed before its retention")
	}
}

// TestRePutSavesOldBlob: a new job storing bytes that an expired job also
// had renews the object, so the sweep spares it until the new job records
// it.
func TestRePutSavesOldBlob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.put(t, "popular image")
	e.job(t, "old", 10*day, []string{key}, nil)
	e.setAge(t, key, 10*day)
	// The wall clock is two hours behind the test clock, so a renewed time
	// is still "old" for it: move the test clock back to the wall clock.
	e.clock.Advance(-2 * time.Hour)
	if again := e.put(t, "popular image"); again != key {
		t.Fatalf("re-Put key %s, want %s", again, key)
	}
	c := e.cleaner(t, nil)
	if rep, err := c.Sweep(t.Context()); err != nil || rep.Blobs != 0 || !e.exists(t, key) {
		t.Fatalf("Sweep = %+v, %v; want the renewed blob kept", rep, err)
	}
}

func TestTempFilesCollected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.put(t, "beside a temp file")
	e.job(t, "j", -1, []string{key}, nil)
	leaf := filepath.Join(e.dir, key[0:2], key[2:4])
	oldTemp, youngTemp := filepath.Join(leaf, ".tmp-0123456789abcdef"), filepath.Join(leaf, ".tmp-fedcba9876543210")
	for p, ago := range map[string]time.Duration{oldTemp: 2 * time.Hour, youngTemp: time.Minute} {
		if err := os.WriteFile(p, []byte("part"), 0o640); err != nil {
			t.Fatal(err)
		}
		at := e.clock.Now().Add(-ago)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := e.cleaner(t, nil).Sweep(t.Context())
	if err != nil || rep.Temp != 1 || rep.Blobs != 0 {
		t.Fatalf("Sweep = %+v, %v; want one temp file and no blob removed", rep, err)
	}
	if _, err := os.Stat(oldTemp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old temp file: %v", err)
	}
	if _, err := os.Stat(youngTemp); err != nil {
		t.Errorf("young temp file (a write in progress) removed: %v", err)
	}
}

// TestDownloadDuringDelete is D12: a download that opened the file before
// the sweep deleted it reads it to the end; afterwards the file is gone.
func TestDownloadDuringDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	key, err := e.b.Put(t.Context(), data, "image/png")
	if err != nil {
		t.Fatal(err)
	}
	e.job(t, "expired", 8*day, []string{key}, nil)

	rc, info, err := e.b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	head := make([]byte, 4096)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	rep, err := e.cleaner(t, nil).Sweep(t.Context())
	if err != nil || rep.Blobs != 1 || rep.Bytes != info.Size {
		t.Fatalf("Sweep = %+v, %v; want the blob removed", rep, err)
	}
	if e.exists(t, key) {
		t.Fatal("blob still there after the sweep")
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading the rest after delete: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, data) {
		t.Fatalf("download got %d bytes, want the %d written", len(got), len(data))
	}
}

// countingJobs records the size of every DeleteFinishedBefore batch.
type countingJobs struct {
	store.Jobs
	mu      sync.Mutex
	batches []int
	limits  []int
}

func (c *countingJobs) DeleteFinishedBefore(ctx context.Context, t time.Time, limit int) ([]*store.JobRecord, error) {
	recs, err := c.Jobs.DeleteFinishedBefore(ctx, t, limit)
	c.mu.Lock()
	c.batches = append(c.batches, len(recs))
	c.limits = append(c.limits, limit)
	c.mu.Unlock()
	return recs, err
}

func TestBacklogInBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const backlog = 2500
	now := e.clock.Now()
	var keys []string
	tx, err := e.st.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range backlog {
		key := e.put(t, fmt.Sprintf("backlog image %d", i))
		keys = append(keys, key)
		rec := jobRecord(fmt.Sprintf("old-%05d", i), now, 40*day+time.Duration(i)*time.Second, []string{key}, nil)
		if err := e.st.CreateJobTx(t.Context(), tx, rec); err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	keep := e.put(t, "still live")
	e.job(t, "live", -1, nil, []string{keep})

	jobs := &countingJobs{Jobs: e.st.Jobs()}
	c := e.cleaner(t, func(o *Options) { o.Jobs = jobs })
	rep, err := c.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if rep.Jobs != backlog || rep.Blobs != backlog {
		t.Errorf("Sweep removed %d jobs and %d blobs, want %d of each", rep.Jobs, rep.Blobs, backlog)
	}
	want := []int{500, 500, 500, 500, 500, 0}
	if diff := cmp.Diff(want, jobs.batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	for _, l := range jobs.limits {
		if l != DefaultBatchSize {
			t.Errorf("batch limit %d, want %d", l, DefaultBatchSize)
		}
	}
	if n := slices.IndexFunc(keys, func(k string) bool { return e.exists(t, k) }); n >= 0 {
		t.Errorf("backlog blob %d survived", n)
	}
	if !e.exists(t, keep) || !e.hasJob(t, "live") {
		t.Error("live job or its input removed")
	}
}

func TestPurgesIdempotencyAndUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	for key, expires := range map[string]time.Time{"gone": now.Add(-time.Minute), "kept": now.Add(time.Hour)} {
		if _, _, err := e.st.Idempotency().Claim(ctx, "k", key, "h", "job-"+key, expires); err != nil {
			t.Fatal(err)
		}
	}
	for _, ago := range []time.Duration{49 * time.Hour, 50 * time.Hour, time.Hour} {
		if err := e.st.Usage().Record(ctx, "k", now.Add(-ago), 2); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := e.cleaner(t, nil).Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if rep.IdempotencyKeys != 1 || rep.UsageRows != 2 {
		t.Errorf("Sweep purged %d keys and %d usage rows, want 1 and 2", rep.IdempotencyKeys, rep.UsageRows)
	}
	if n, err := e.st.Usage().ImagesSince(ctx, "k", now.Add(-100*time.Hour)); err != nil || n != 2 {
		t.Errorf("usage left = %d, %v; want the recent 2", n, err)
	}
	// The live claim still answers with its job; the purged one is free.
	if got, _, err := e.st.Idempotency().Claim(ctx, "k", "kept", "h", "other", now.Add(time.Hour)); err != nil || got != "job-kept" {
		t.Errorf("Claim(kept) = %q, %v; want job-kept", got, err)
	}
}

// failingMark is a job store whose scan of live keys fails half-way.
type failingMark struct{ store.Jobs }

var errMark = errors.New("database went away")

func (f failingMark) BlobKeys(ctx context.Context, after time.Time, fn func(string) error) error {
	return errMark
}

func TestNoSweepWithoutCompleteMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.put(t, "live but unseen")
	e.job(t, "live", -1, []string{key}, nil)
	c := e.cleaner(t, func(o *Options) { o.Jobs = failingMark{e.st.Jobs()} })
	rep, err := c.Sweep(t.Context())
	if !errors.Is(err, errMark) {
		t.Fatalf("Sweep error = %v, want errMark", err)
	}
	if rep.Blobs != 0 || !e.exists(t, key) {
		t.Fatalf("Sweep deleted %d blobs after a failed mark", rep.Blobs)
	}
}

// plainBucket hides everything but blob.Bucket and Lister, as a bucket
// without conditional deletes would look.
type plainBucket struct{ b *local.Bucket }

func (p plainBucket) Put(ctx context.Context, data []byte, mime string) (string, error) {
	return p.b.Put(ctx, data, mime)
}

func (p plainBucket) Get(ctx context.Context, key string) (blob.ReadSeekCloser, blob.Info, error) {
	return p.b.Get(ctx, key)
}

func (p plainBucket) Delete(ctx context.Context, key string) error { return p.b.Delete(ctx, key) }

func (p plainBucket) Walk(ctx context.Context, fn func(blob.Info) error) error {
	return p.b.Walk(ctx, fn)
}

// noListBucket cannot list.
type noListBucket struct{ blob.Bucket }

func TestPlainBucketSwept(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orphan := e.put(t, "orphan")
	live := e.put(t, "live")
	e.job(t, "j", -1, []string{live}, nil)
	c := e.cleaner(t, func(o *Options) { o.Blobs = plainBucket{e.b} })
	if rep, err := c.Sweep(t.Context()); err != nil || rep.Blobs != 1 || e.exists(t, orphan) || !e.exists(t, live) {
		t.Fatalf("Sweep = %+v, %v", rep, err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		mod  func(*Options)
		want []string // substrings of the error; none means valid
	}{
		{"defaults", func(*Options) {}, nil},
		{"no jobs", func(o *Options) { o.Jobs = nil }, []string{"no job store"}},
		{"no blobs", func(o *Options) { o.Blobs = nil }, []string{"no blob bucket"}},
		{"no lister", func(o *Options) { o.Blobs = noListBucket{e.b} }, []string{"cannot list"}},
		{"no idempotency or usage", func(o *Options) { o.Idempotency, o.Usage = nil, nil }, nil},
		{"negatives", func(o *Options) {
			o.Results, o.Records, o.Interval, o.Grace, o.BatchSize = -1, -1, -1, -1, -1
		}, []string{"results", "records", "interval", "grace", "batch size"}},
		{"everything wrong", func(o *Options) { o.Jobs, o.Blobs, o.Grace = nil, nil, -time.Second },
			[]string{"no job store", "no blob bucket", "grace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := e.options()
			tt.mod(&o)
			c, err := New(o)
			if len(tt.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a cleaner", c, err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted invalid options")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.cleaner(t, nil)
	got := []time.Duration{c.results, c.records, c.interval, c.grace, time.Duration(c.batchSize)}
	want := []time.Duration{7 * day, 30 * day, 10 * time.Minute, time.Hour, 500}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// The cleaner's defaults are the configuration's, so a cleaner built
	// from a zero config section behaves like the documented defaults.
	if DefaultResults != config.DefaultResultsRetention || DefaultRecords != config.DefaultJobsRetention ||
		DefaultInterval != config.DefaultRetentionInterval {
		t.Error("retention defaults differ from the configuration's")
	}
	short := e.cleaner(t, func(o *Options) { o.Results = time.Minute })
	if short.grace != time.Minute {
		t.Errorf("grace with 1m results = %v, want 1m", short.grace)
	}
}

// syncBuffer collects a server log from concurrent writers.
type syncBuffer = logbuf.Buffer

func TestRunSweepsAtStartAndOnInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.put(t, "orphan at start")
	var logs syncBuffer
	c := e.cleaner(t, func(o *Options) {
		o.Interval = 5 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	type result struct {
		rep Report
		err error
	}
	sweeps := make(chan result, 100)
	c.afterSweep = func(r Report, err error) {
		select {
		case sweeps <- result{r, err}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	timeout := time.After(30 * time.Second)
	next := func() result {
		select {
		case r := <-sweeps:
			return r
		case <-timeout:
			t.Fatal("no sweep within 30s")
			return result{}
		}
	}
	if r := next(); r.err != nil || r.rep.Blobs != 1 || e.exists(t, first) {
		t.Fatalf("first sweep = %+v, %v; want the orphan removed", r.rep, r.err)
	}
	// A file that appears later goes at a later tick.
	second := e.put(t, "orphan later")
	for e.exists(t, second) {
		if r := next(); r.err != nil {
			t.Fatalf("sweep error: %v", r.err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	out := logs.String()
	if n := strings.Count(out, `msg="retention sweep"`); n != 2 {
		t.Errorf("%d info summaries logged, want 2 (one per sweep that removed something):\n%s", n, out)
	}
	if !strings.Contains(out, "blobs=1") {
		t.Errorf("summary lacks counts:\n%s", out)
	}
}
