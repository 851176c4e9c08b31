package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/blob/local"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
	"github.com/easelgw/easel/internal/webhook"
)

// testWait bounds every wait in these tests.
const testWait = 15 * time.Second

var caps = provider.Capabilities{
	TextToImage: true, ImageToImage: true, MaxInputImages: 2, MaxN: 1,
	Size: provider.SizeRule{Min: 64, Max: 2048, Multiple: 8},
}

// fake is a provider that can hold its calls until released and can
// resume upstream work by id, recording both.
type fake struct {
	mu        sync.Mutex
	generates []string // job ids
	resumes   []string // upstream ids
	inputs    [][]byte // first input image of each call
	gate      chan struct{}
	started   chan string
}

func newFake() *fake { return &fake{started: make(chan string, 100)} }

func (f *fake) Capabilities() provider.Capabilities { return caps }

func (f *fake) hold() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *fake) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

func (f *fake) wait(ctx context.Context) error {
	f.mu.Lock()
	g := f.gate
	f.mu.Unlock()
	if g == nil {
		return nil
	}
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fake) Generate(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	f.mu.Lock()
	f.generates = append(f.generates, req.JobID)
	if len(req.Images) > 0 {
		f.inputs = append(f.inputs, req.Images[0].Data)
	}
	f.mu.Unlock()
	emit(provider.Event{Type: provider.EventAccepted, UpstreamID: "up-" + req.JobID})
	return f.finish(ctx, req, emit)
}

func (f *fake) Resume(ctx context.Context, id string, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	f.mu.Lock()
	f.resumes = append(f.resumes, id)
	f.mu.Unlock()
	emit(provider.Event{Type: provider.EventAccepted, UpstreamID: id})
	return f.finish(ctx, req, emit)
}

func (f *fake) finish(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	emit(provider.Event{Type: provider.EventStarted})
	select {
	case f.started <- req.JobID:
	default: // nobody is counting starts (benchmarks)
	}
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	emit(provider.Event{Type: provider.EventProgress, Step: 1, Total: 2})
	return &provider.Result{Images: []provider.Image{{Data: pngOf(req.Width/8, req.Height/8), MIME: "image/png"}}}, nil
}

func (f *fake) counts() (generates, resumes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.generates), len(f.resumes)
}

func pngOf(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, max(w, 1), max(h, 1)))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	img.SetNRGBA(0, 0, color.NRGBA{A: 255})
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// bundle is one gateway's job layer over a data directory.
type bundle struct {
	dir   string
	st    *sqlite.Store
	gen   *gen.Service
	m     *Manager
	fake  *fake
	hooks *webhookSink
}

type options struct {
	webhookURL bool
	noStart    bool
}

// open builds (or reopens) the job layer on dir.
func open(t testing.TB, dir string, f *fake, sink *webhookSink, o options) *bundle {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "easel.db"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := local.New(filepath.Join(dir, "blobs"), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gen.NewService(gen.Options{
		Backends: []gen.Backend{{Name: "b1", Provider: f, Concurrency: 4}},
		Models:   []gen.Model{{ID: "m", Backends: []string{"b1"}}},
		Blobs:    blobs,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Gen: g, Store: st, Blobs: blobs, SingleProcess: true,
		Backends:     map[string]int{"b1": 4},
		ModelQueue:   map[string]string{"m": "b1"},
		AsyncTimeout: 30 * time.Second,
		FetchPoll:    20 * time.Millisecond,
	}
	if sink != nil {
		opts.Webhooks = webhook.NewDeliverer(webhook.Options{
			Client:  netguard.New(netguard.Options{AllowPrivate: true, AllowedPorts: []int{sink.port()}, MaxRedirects: -1}).HTTPClient(),
			Timeout: 5 * time.Second,
		})
		opts.WebhookSecret = func(context.Context, string) (string, error) { return sink.secret, nil }
		opts.WebhookData = func(rec *store.JobRecord) any {
			return map[string]any{"id": rec.ID, "status": rec.Status, "images": len(rec.Images)}
		}
	}
	m, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !o.noStart {
		if err := m.StartWorkers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b := &bundle{dir: dir, st: st, gen: g, m: m, fake: f, hooks: sink}
	t.Cleanup(func() { b.close(t) })
	return b
}

// close stops the layer gracefully (idempotent).
func (b *bundle) close(t testing.TB) {
	if b.m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.m.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	_ = b.gen.Close(ctx)
	_ = b.st.Close()
	b.m = nil
}

func submit(t *testing.T, b *bundle, prompt string, sub Submission) (*store.JobRecord, bool) {
	t.Helper()
	req := &gen.Request{Model: "m", Prompt: prompt, N: 1, Width: 256, Height: 256}
	sub.RequestHash = RequestHash(req, sub)
	rec, replayed, err := b.m.Submit(context.Background(), req, sub)
	if err != nil {
		t.Fatalf("submit %q: %v", prompt, err)
	}
	return rec, replayed
}

// waitStatus polls a job's record until it is final.
func waitFinal(t *testing.T, b *bundle, id string) *store.JobRecord {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for time.Now().Before(deadline) {
		rec, err := b.st.Jobs().Get(context.Background(), id, "")
		if err == nil && store.Finished(rec.Status) {
			return rec
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish within %s", id, testWait)
	return nil
}

func TestAsyncJobSucceedsAndIsRecorded(t *testing.T) {
	t.Parallel()
	b := open(t, t.TempDir(), newFake(), nil, options{})
	rec, replayed := submit(t, b, "a fox", Submission{KeyID: "k1", ResponseFormat: "url", BaseURL: "http://x"})
	if replayed || rec.Status != store.StatusQueued {
		t.Fatalf("submitted record = %s replayed %v, want queued", rec.Status, replayed)
	}
	final := waitFinal(t, b, rec.ID)
	if final.Status != store.StatusSucceeded || len(final.Images) != 1 || final.Backend != "b1" {
		t.Fatalf("final = %+v", final)
	}
	if final.Started.IsZero() || final.Finished.Before(final.Started) {
		t.Errorf("timestamps: started %v finished %v", final.Started, final.Finished)
	}
	if got := final.UpstreamIDs; len(got) != 1 || got[0] != "up-"+rec.ID {
		t.Errorf("upstream ids = %v", got)
	}
	rc, _, err := b.m.Blobs().Get(context.Background(), final.Images[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if _, err := png.DecodeConfig(bytes.NewReader(data)); err != nil {
		t.Errorf("result is not a PNG: %v", err)
	}
	// Another key does not see it.
	if _, err := b.m.Get(context.Background(), rec.ID, "k2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other key's Get = %v, want ErrNotFound", err)
	}
	v, err := b.m.Get(context.Background(), rec.ID, "k1")
	if err != nil || v.Request.Prompt != "a fox" || v.Progress.Fraction != 1 {
		t.Errorf("view = %+v, %v", v, err)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := open(t, t.TempDir(), newFake(), nil, options{})
	first, _ := submit(t, b, "same", Submission{KeyID: "k1", IdempotencyKey: "key-1"})
	again, replayed := submit(t, b, "same", Submission{KeyID: "k1", IdempotencyKey: "key-1"})
	if !replayed || again.ID != first.ID {
		t.Fatalf("replay gave %s (replayed %v), want %s", again.ID, replayed, first.ID)
	}
	// Another body under the same key is refused and creates nothing.
	req := &gen.Request{Model: "m", Prompt: "different", N: 1, Width: 256, Height: 256}
	sub := Submission{KeyID: "k1", IdempotencyKey: "key-1"}
	sub.RequestHash = RequestHash(req, sub)
	if _, _, err := b.m.Submit(context.Background(), req, sub); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Fatalf("different body: err = %v, want ErrIdempotencyMismatch", err)
	}
	// The same key under another API key is another job.
	other, replayed := submit(t, b, "same", Submission{KeyID: "k2", IdempotencyKey: "key-1"})
	if replayed || other.ID == first.ID {
		t.Fatalf("other API key reused job %s", other.ID)
	}
	waitFinal(t, b, first.ID)
	waitFinal(t, b, other.ID)
	if g, _ := b.fake.counts(); g != 2 {
		t.Errorf("upstream calls = %d, want 2", g)
	}
	list, _, err := b.m.List(context.Background(), "k1", "", 100)
	if err != nil || len(list) != 1 {
		t.Errorf("k1 lists %d jobs (%v), want 1", len(list), err)
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Workers not started: the job stays queued.
	b := open(t, dir, newFake(), nil, options{noStart: true})
	queued, _ := submit(t, b, "q", Submission{KeyID: "k"})
	v, err := b.m.Cancel(context.Background(), queued.ID, "k")
	if err != nil || v.Record.Status != store.StatusCanceled {
		t.Fatalf("cancel queued = %+v, %v", v, err)
	}
	if err := b.m.StartWorkers(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.fake.hold()
	running, _ := submit(t, b, "r", Submission{KeyID: "k"})
	select {
	case <-b.fake.started:
	case <-time.After(testWait):
		t.Fatal("job did not start")
	}
	v, err = b.m.Cancel(context.Background(), running.ID, "k")
	if err != nil || v.Record.Status != store.StatusCanceled {
		t.Fatalf("cancel running = %+v, %v", v.Record, err)
	}
	final := waitFinal(t, b, running.ID)
	if final.Status != store.StatusCanceled || final.Error == nil {
		t.Errorf("running job's record = %s %+v", final.Status, final.Error)
	}
	// The canceled queued job's queue entry ran as a no-op.
	if g, _ := b.fake.counts(); g != 1 {
		t.Errorf("upstream calls = %d, want 1 (the canceled queued job must not run)", g)
	}
	if _, err := b.m.Cancel(context.Background(), running.ID, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel by another key = %v", err)
	}
}

// TestCrashResumesSavedUpstreamJob simulates a SIGKILL while a job runs:
// the queue row is left "running" and the record holds the upstream id. A
// new process resumes the upstream job instead of submitting again.
func TestCrashResumesSavedUpstreamJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFake()
	f.hold()
	b := open(t, dir, f, nil, options{})
	rec, _ := submit(t, b, "resume me", Submission{KeyID: "k"})
	select {
	case <-f.started:
	case <-time.After(testWait):
		t.Fatal("job did not start")
	}
	// The accepted upstream id is saved while the job runs.
	deadline := time.Now().Add(testWait)
	for {
		r, err := b.st.Jobs().Get(context.Background(), rec.ID, "")
		if err == nil && len(r.ResumeState) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("resume state never saved")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Copy the database as a crash would leave it: take a consistent
	// snapshot with the job running.
	crashDir := t.TempDir()
	if _, err := b.st.DB().ExecContext(context.Background(), `VACUUM INTO ?`, filepath.Join(crashDir, "easel.db")); err != nil {
		t.Fatal(err)
	}
	f.release()
	waitFinal(t, b, rec.ID)
	b.close(t)

	// The "restarted" process on the crashed copy (blobs are shared
	// through the same content addresses, so point it at the old ones).
	f2 := newFake()
	b2 := open(t, crashDir, f2, nil, options{})
	final := waitFinal(t, b2, rec.ID)
	if final.Status != store.StatusSucceeded {
		t.Fatalf("after restart: %s %+v", final.Status, final.Error)
	}
	g, r := f2.counts()
	if g != 0 || r != 1 || f2.resumes[0] != "up-"+rec.ID {
		t.Errorf("after restart: %d submits, resumes %v; want 0 submits and one resume of up-%s", g, f2.resumes, rec.ID)
	}
}

// TestQueuedJobsRunAfterRestart: queued jobs, and one a dead process left
// running before any upstream id was saved, each run once after a restart.
func TestQueuedJobsRunAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := open(t, dir, newFake(), nil, options{noStart: true})
	var ids []string
	for i := range 5 {
		rec, _ := submit(t, b, "p"+strconv.Itoa(i), Submission{KeyID: "k"})
		ids = append(ids, rec.ID)
	}
	// Leave one row as a dead process would: running.
	if _, err := b.st.DB().ExecContext(context.Background(), `UPDATE river_job SET state = 'running' WHERE id = (SELECT min(id) FROM river_job)`); err != nil {
		t.Fatal(err)
	}
	b.close(t)
	f := newFake()
	b2 := open(t, dir, f, nil, options{})
	for _, id := range ids {
		if rec := waitFinal(t, b2, id); rec.Status != store.StatusSucceeded {
			t.Errorf("job %s: %s", id, rec.Status)
		}
	}
	if g, _ := f.counts(); g != len(ids) {
		t.Errorf("upstream calls = %d, want %d", g, len(ids))
	}
}

func TestInputsAreStoredAndReloaded(t *testing.T) {
	t.Parallel()
	b := open(t, t.TempDir(), newFake(), nil, options{})
	in := pngOf(16, 16)
	req := &gen.Request{Model: "m", Kind: provider.KindEdit, Prompt: "edit", N: 1, Width: 256, Height: 256,
		Images: []provider.InputImage{{Data: in, MIME: "image/png", Name: "in.png", Width: 16, Height: 16}}}
	sub := Submission{KeyID: "k"}
	sub.RequestHash = RequestHash(req, sub)
	rec, _, err := b.m.Submit(context.Background(), req, sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.InputKeys) != 1 {
		t.Fatalf("input keys = %v", rec.InputKeys)
	}
	waitFinal(t, b, rec.ID)
	b.fake.mu.Lock()
	got := b.fake.inputs
	b.fake.mu.Unlock()
	if len(got) != 1 || !bytes.Equal(got[0], in) {
		t.Errorf("the worker's input differs from the upload")
	}
}

func TestSyncJobsAreRecorded(t *testing.T) {
	t.Parallel()
	b := open(t, t.TempDir(), newFake(), nil, options{})
	job, err := b.m.Run(context.Background(), &gen.Request{Model: "m", Prompt: "sync", N: 1, Width: 128, Height: 128, KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	rec := waitFinal(t, b, job.ID())
	if rec.Status != store.StatusSucceeded || rec.KeyID != "k" || len(rec.Images) != 1 {
		t.Errorf("sync record = %+v", rec)
	}
	r, _ := decodeRequest(rec)
	if r.Async || r.Prompt != "sync" {
		t.Errorf("request summary = %+v", r)
	}
}

func TestFollowReplaysThenEnds(t *testing.T) {
	t.Parallel()
	b := open(t, t.TempDir(), newFake(), nil, options{})
	b.fake.hold()
	rec, _ := submit(t, b, "follow", Submission{KeyID: "k"})
	<-b.fake.started
	var mu sync.Mutex
	var types []provider.EventType
	done := make(chan *View, 1)
	go func() {
		v, err := b.m.Follow(context.Background(), rec.ID, "k", func(ev provider.Event) error {
			mu.Lock()
			types = append(types, ev.Type)
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Errorf("follow: %v", err)
		}
		done <- v
	}()
	time.Sleep(50 * time.Millisecond)
	b.fake.release()
	select {
	case v := <-done:
		if v == nil || v.Record.Status != store.StatusSucceeded {
			t.Fatalf("final view = %+v", v)
		}
	case <-time.After(testWait):
		t.Fatal("follow did not end")
	}
	mu.Lock()
	got := types
	mu.Unlock()
	if len(got) < 4 || got[0] != provider.EventQueued || got[1] != provider.EventAccepted || got[len(got)-1] != provider.EventSucceeded {
		t.Errorf("events = %v", got)
	}
	// After a restart the finished job is described from its record.
	b.close(t)
	b2 := open(t, b.dir, newFake(), nil, options{})
	types = nil
	v, err := b2.m.Follow(context.Background(), rec.ID, "k", func(ev provider.Event) error {
		types = append(types, ev.Type)
		return nil
	})
	if err != nil || v.Record.Status != store.StatusSucceeded {
		t.Fatalf("follow after restart: %v %+v", err, v)
	}
	want := []provider.EventType{provider.EventQueued, provider.EventStarted, provider.EventImage, provider.EventSucceeded}
	if strings.Join(evStrings(types), ",") != strings.Join(evStrings(want), ",") {
		t.Errorf("replayed after restart = %v, want %v", types, want)
	}
}

func evStrings(ts []provider.EventType) []string {
	var out []string
	for _, t := range ts {
		out = append(out, string(t))
	}
	return out
}

// webhookSink verifies Standard Webhooks signatures (written from the
// spec: HMAC-SHA256 over "id.timestamp.body" with the base64 secret after
// "whsec_") and fails the first attempt of each message.
type webhookSink struct {
	srv    *httptest.Server
	secret string

	mu       sync.Mutex
	attempts map[string]int
	verified map[string][]byte
	bad      int
}

func newSink(t *testing.T) *webhookSink {
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s := &webhookSink{secret: secret, attempts: map[string]int{}, verified: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *webhookSink) port() int {
	_, p, _ := strings.Cut(strings.TrimPrefix(s.srv.URL, "http://"), ":")
	n, _ := strconv.Atoi(p)
	return n
}

func (s *webhookSink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s.secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, sig := range strings.Fields(sigs) {
		if v, found := strings.CutPrefix(sig, "v1,"); found && hmac.Equal([]byte(v), []byte(want)) {
			ok = true
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		ok = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.attempts[id]++
	if s.attempts[id] == 1 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	s.verified[id] = body
	w.WriteHeader(http.StatusNoContent)
}

func TestWebhookDeliveredSignedWithRetry(t *testing.T) {
	t.Parallel()
	sink := newSink(t)
	b := open(t, t.TempDir(), newFake(), sink, options{})
	rec, _ := submit(t, b, "hook", Submission{KeyID: "k", WebhookURL: sink.srv.URL + "/hook"})
	waitFinal(t, b, rec.ID)
	// The first attempt fails; River retries on the webhook schedule,
	// whose first delay is 5 s.
	deadline := time.Now().Add(20 * time.Second)
	for {
		sink.mu.Lock()
		n, bad := len(sink.verified), sink.bad
		var body []byte
		var attempts int
		for id, b := range sink.verified {
			body, attempts = b, sink.attempts[id]
		}
		sink.mu.Unlock()
		if bad > 0 {
			t.Fatalf("%d deliveries failed verification", bad)
		}
		if n == 1 {
			if attempts != 2 || !strings.Contains(string(body), `"type":"image.job.succeeded"`) || !strings.Contains(string(body), rec.ID) {
				t.Errorf("delivery: %d attempts, body %s", attempts, body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not delivered; attempts %v", sink.attempts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
