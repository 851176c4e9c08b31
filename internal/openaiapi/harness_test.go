package openaiapi_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/blob/local"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/logbuf"
	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/openaiapi"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/server"
)

const testKey = "sk-test_abcdefgh_0123456789abcdefghijklmnopqrstuv"

// fakeProvider draws flat PNGs of the requested size. The prompt scripts
// its behaviour:
//
//	"error:<kind> ..."  fail with that provider error kind
//	"block ..."         emit started, then wait for ctx to end
//	"wait ..."          emit started, then wait for release (or ctx)
//	"preview ..."       emit three previews before the result
//
// Anything else emits queued, started, three progress steps and a log line.
type fakeProvider struct {
	release chan struct{}
	// plain ignores the prompt script (for fuzzing, where any prompt can
	// occur and every one must succeed).
	plain bool

	mu      sync.Mutex
	calls   int
	prompts []string
	inputs  [][]provider.InputImage
	masks   []*provider.InputImage
	kinds   []provider.Kind
	// started gets one value per blocking call once it is running;
	// canceled gets one when a blocking call saw its context end.
	started  chan struct{}
	canceled chan struct{}
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{
		release:  make(chan struct{}),
		started:  make(chan struct{}, 16),
		canceled: make(chan struct{}, 16),
	}
}

func (f *fakeProvider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		TextToImage:    true,
		ImageToImage:   true,
		MaxInputImages: 16,
		MaxN:           2,
		Size:           provider.SizeRule{DefaultWidth: 64, DefaultHeight: 64},
		Seed:           true,
		Steps:          true,
		NegativePrompt: true,
		DefaultSteps:   9,
	}
}

func (f *fakeProvider) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeProvider) Generate(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	f.mu.Lock()
	f.calls++
	f.prompts = append(f.prompts, req.Prompt)
	f.inputs = append(f.inputs, req.Images)
	f.masks = append(f.masks, req.Mask)
	f.kinds = append(f.kinds, req.Kind)
	f.mu.Unlock()

	word, _, _ := strings.Cut(req.Prompt, " ")
	if f.plain {
		word = ""
	}
	switch word {
	case "error:ratelimit":
		return nil, &provider.Error{Kind: provider.KindRateLimited, Message: "upstream quota exhausted", RetryAfter: 1500 * time.Millisecond}
	case "error:unavailable":
		return nil, &provider.Error{Kind: provider.KindUnavailable, Message: "upstream is down", RetryAfter: 2 * time.Second}
	case "error:timeout":
		return nil, &provider.Error{Kind: provider.KindTimeout, Message: "upstream stalled"}
	case "error:upstream":
		return nil, &provider.Error{Kind: provider.KindUpstream, Message: "upstream crashed"}
	case "error:protocol":
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "upstream spoke gibberish"}
	case "error:badrequest":
		return nil, &provider.Error{Kind: provider.KindBadRequest, Message: "prompt refused by upstream"}
	case "block":
		emit(provider.Event{Type: provider.EventStarted})
		f.started <- struct{}{}
		<-ctx.Done()
		f.canceled <- struct{}{}
		return nil, ctx.Err()
	case "wait":
		emit(provider.Event{Type: provider.EventStarted})
		f.started <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			f.canceled <- struct{}{}
			return nil, ctx.Err()
		}
	case "preview":
		emit(provider.Event{Type: provider.EventStarted})
		for range 3 {
			emit(provider.Event{Type: provider.EventPreview, Index: req.Index, Data: drawPNG(8, 8), MIME: "image/png"})
		}
	default:
		emit(provider.Event{Type: provider.EventQueued, Position: 2, QueueSize: 3})
		emit(provider.Event{Type: provider.EventStarted})
		for step := 1; step <= 3; step++ {
			emit(provider.Event{Type: provider.EventProgress, Step: step, Total: 3, Unit: "steps"})
		}
		emit(provider.Event{Type: provider.EventLog, Message: "warming up"})
	}
	w, h := req.Width, req.Height
	if w == 0 || h == 0 {
		w, h = 64, 64
	}
	if f.plain {
		// Fuzzed sizes can reach tens of megapixels; drawing them would
		// only slow the fuzzer down.
		w, h = min(w, 32), min(h, 32)
	}
	res := &provider.Result{}
	for i := range req.N {
		res.Images = append(res.Images, provider.Image{Data: drawPNG(w, h, byte(req.Index+i)), MIME: "image/png"})
	}
	return res, nil
}

// drawPNG returns a w×h PNG; shade makes images of one job differ.
func drawPNG(w, h int, shade ...byte) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var s byte
	if len(shade) > 0 {
		s = shade[0]
	}
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: byte(x), G: byte(y), B: s * 40, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// bundle is one running gateway for a test.
type bundle struct {
	srv       *httptest.Server
	fake      *fakeProvider
	svc       *gen.Service
	signer    *blob.Signer
	bucket    blob.Bucket
	client    openai.Client
	logs      *syncBuffer
	heartbeat time.Duration
}

type setupOpts struct {
	plain          bool
	heartbeat      time.Duration
	defaultFormat  string
	maxPromptChars int
	// fetcher fetches image URLs; nil means noNetworkFetcher(), unless
	// defaultFetcher asks for the API's own default (a netguard client with
	// the safe defaults).
	fetcher        openaiapi.Fetcher
	defaultFetcher bool
	// textOnly adds textOnlyModel, whose backend cannot take images.
	textOnly bool
	// limits override the input limits of the API options.
	maxImageBytes, maxUploadBytes int64
}

// textOnlyModel is served by a backend that cannot take input images.
const textOnlyModel = "text-only"

// textOnlyProvider is the fake without image-to-image.
type textOnlyProvider struct{ *fakeProvider }

func (p textOnlyProvider) Capabilities() provider.Capabilities {
	c := p.fakeProvider.Capabilities()
	c.ImageToImage = false
	c.MaxInputImages = 0
	return c
}

// noNetworkFetcher is a guarded client with the default policy whose
// resolver and dialer refuse everything, so no test (or fuzz input) can
// reach beyond the process.
func noNetworkFetcher() openaiapi.Fetcher {
	return netguard.New(netguard.Options{
		Resolver: refusingResolver{},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("test dialer: no network")
		},
	})
}

type refusingResolver struct{}

func (refusingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return nil, errors.New("test resolver: no DNS")
}

// syncBuffer collects a server log from concurrent writers.
type syncBuffer = logbuf.Buffer

func setup(t testing.TB, so ...setupOpts) *bundle {
	t.Helper()
	var o setupOpts
	if len(so) > 0 {
		o = so[0]
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	bucket, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeProvider()
	fake.plain = o.plain
	models := []gen.Model{
		{ID: "z-image-turbo", Aliases: []string{"dall-e-3"}, Backends: []string{"fake"},
			Description: "test model", Demo: true, Created: time.Unix(1763500000, 0)},
		{ID: "black-forest-labs/flux.1-dev:v2", Backends: []string{"fake"}, Created: time.Unix(1763500001, 0)},
	}
	backends := []gen.Backend{{Name: "fake", Provider: fake, Concurrency: 4}}
	if o.textOnly {
		backends = append(backends, gen.Backend{Name: "fake-t2i", Provider: textOnlyProvider{fake}, Concurrency: 4})
		models = append(models, gen.Model{ID: textOnlyModel, Backends: []string{"fake-t2i"}, Created: time.Unix(1763500002, 0)})
	}
	svc, err := gen.NewService(gen.Options{
		Backends:   backends,
		Models:     models,
		Blobs:      bucket,
		Logger:     log,
		Attempts:   1,
		JobTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Close(ctx)
	})
	signer, err := blob.NewSigner(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	fetcher := o.fetcher
	if fetcher == nil && !o.defaultFetcher {
		fetcher = noNetworkFetcher()
	}
	hb := o.heartbeat
	if hb == 0 {
		hb = time.Minute
	}
	api, err := openaiapi.New(openaiapi.Options{
		Service:               svc,
		Signer:                signer,
		DefaultResponseFormat: o.defaultFormat,
		MaxPromptChars:        o.maxPromptChars,
		Heartbeat:             hb,
		Fetcher:               fetcher,
		MaxImageBytes:         o.maxImageBytes,
		MaxUploadBytes:        o.maxUploadBytes,
		Logger:                log,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	s, err := server.New(server.Options{
		Handler:     mux,
		APIKeys:     []string{testKey},
		Logger:      log,
		PublicPaths: []string{"/v1/files/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	client := openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1"),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(20*time.Second),
	)
	return &bundle{srv: srv, fake: fake, svc: svc, signer: signer, bucket: bucket, client: client, logs: logs, heartbeat: hb}
}

// post sends a raw JSON body with the test key and returns the response
// with its body read.
func (b *bundle) post(t *testing.T, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}
