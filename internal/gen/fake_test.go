package gen

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/HugoSmits86/nativewebp"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/blob/local"
	"github.com/easelgw/easel/internal/provider"
)

// testWait bounds every wait in these tests.
const testWait = 10 * time.Second

// fakeCall is one recorded Generate call.
type fakeCall struct {
	at  time.Time
	req provider.Request
	// ctxErr is the context's error when Generate returned.
	ctxErr error
}

// script decides one Generate call; call is its 0-based number on this
// provider. A nil script succeeds with req.N distinct PNGs.
type script func(ctx context.Context, call int, req *provider.Request, emit func(provider.Event)) (*provider.Result, error)

// fakeProvider is a scriptable provider that records what it was asked.
type fakeProvider struct {
	caps   provider.Capabilities
	script script

	mu          sync.Mutex
	calls       []fakeCall
	inFlight    int
	maxInFlight int
}

func newFake(caps provider.Capabilities, s script) *fakeProvider {
	return &fakeProvider{caps: caps, script: s}
}

func (f *fakeProvider) Capabilities() provider.Capabilities { return f.caps }

func (f *fakeProvider) Generate(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, fakeCall{at: time.Now(), req: *req})
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.mu.Unlock()
	var res *provider.Result
	var err error
	if f.script != nil {
		res, err = f.script(ctx, n, req, emit)
	} else {
		res = okResult(req)
	}
	f.mu.Lock()
	f.inFlight--
	f.calls[n].ctxErr = ctx.Err()
	f.mu.Unlock()
	return res, err
}

func (f *fakeProvider) recorded() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

func (f *fakeProvider) stats() (calls, inFlight, maxInFlight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls), f.inFlight, f.maxInFlight
}

// okResult returns req.N PNGs, each distinct by its job-wide index.
func okResult(req *provider.Request) *provider.Result {
	res := &provider.Result{UpstreamID: "up-" + req.JobID}
	for k := range req.N {
		res.Images = append(res.Images, provider.Image{Data: pngBytes(8, 6, req.Index+k), MIME: "image/png"})
	}
	return res
}

func solid(w, h, tag int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(tag), G: uint8(x), B: uint8(y), A: 255})
		}
	}
	return img
}

func pngBytes(w, h, tag int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, solid(w, h, tag)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func webpBytes(w, h, tag int) []byte {
	var buf bytes.Buffer
	if err := nativewebp.Encode(&buf, solid(w, h, tag), nil); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// blocking returns a script that waits for ctx to end and reports why.
func blocking() script {
	return func(ctx context.Context, _ int, _ *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		<-ctx.Done()
		return nil, &provider.Error{Kind: provider.KindCanceled, Message: "stopped", Err: ctx.Err()}
	}
}

// gated returns a script that waits until gate is closed (or ctx ends),
// then succeeds.
func gated(gate <-chan struct{}) script {
	return func(ctx context.Context, _ int, req *provider.Request, _ func(provider.Event)) (*provider.Result, error) {
		select {
		case <-gate:
			return okResult(req), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

var basicCaps = provider.Capabilities{
	TextToImage: true, ImageToImage: true, MaxInputImages: 2, MaxN: 1,
	Size: provider.SizeRule{Min: 256, Max: 2048, Multiple: 64},
	Seed: true, Steps: true, NegativePrompt: true, MinSteps: 1, MaxSteps: 50,
}

// testBundle is what setup builds.
type testBundle struct {
	svc   *Service
	blobs *local.Bucket
}

// setup builds a Service over the given backends with one model "m"
// (alias "m-alias") served by all of them in order, fast backoff, and a
// local bucket. mod adjusts the options before construction.
func setup(t *testing.T, backends []Backend, mod func(*Options)) *testBundle {
	t.Helper()
	bucket, err := local.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bucket.Close() })
	var names []string
	for _, b := range backends {
		names = append(names, b.Name)
	}
	opts := Options{
		Backends:    backends,
		Models:      []Model{{ID: "m", Aliases: []string{"m-alias"}, Backends: names, Description: "test"}},
		Blobs:       bucket,
		BackoffBase: time.Millisecond,
		BackoffCap:  5 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	svc, err := NewService(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testBundle{svc: svc, blobs: bucket}
}

func one(name string, p provider.Provider) []Backend {
	return []Backend{{Name: name, Provider: p}}
}

func genReq(n int) *Request {
	return &Request{Model: "m", Kind: provider.KindGenerate, Prompt: "a red fox", N: n}
}

// runJob starts req and waits for the job to end.
func runJob(t *testing.T, svc *Service, ctx context.Context, req *Request) (*Job, Snapshot) {
	t.Helper()
	job, err := svc.Start(ctx, req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return job, wait(t, job)
}

func wait(t *testing.T, job *Job) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	snap, err := job.Wait(ctx)
	if err != nil {
		t.Fatalf("job %s did not end: %v", job.ID(), err)
	}
	return snap
}

// events returns the job's recorded events.
func events(job *Job) []provider.Event {
	past, _, stop := job.Subscribe()
	stop()
	return past
}

func readBlob(t *testing.T, b blob.Bucket, key string) []byte {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// eventually polls cond until it holds or testWait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
