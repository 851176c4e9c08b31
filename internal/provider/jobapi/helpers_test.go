package jobapi

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// testUA is the User-Agent the tests configure.
const testUA = "easel/test"

// vclock is a virtual clock shared by a provider and a fake: sleeping
// advances it at once, so schedules of minutes run in microseconds while
// every HTTP exchange stays real.
type vclock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func newVClock() *vclock {
	return &vclock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *vclock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.t = c.t.Add(d)
		c.slept += d
	}
	return nil
}

func (c *vclock) Slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

// fakeConfig is the aiimagetoimage preset pointed at a fake.
func fakeConfig(t testing.TB, srv *jobapitest.Server, preset string) Config {
	t.Helper()
	cfg, ok := Preset(preset)
	if !ok {
		t.Fatalf("no preset %q", preset)
	}
	cfg.Submit.URL = srv.SubmitURL()
	cfg.Poll.URL = srv.PollURLTemplate()
	return cfg
}

// newTestProvider builds a provider; with a clock it runs on virtual time.
func newTestProvider(t testing.TB, cfg Config, clock *vclock, opts Options) *Provider {
	t.Helper()
	if opts.UserAgent == "" {
		opts.UserAgent = testUA
	}
	p, err := New("test", cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if clock != nil {
		p.now, p.sleep = clock.Now, clock.Sleep
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// pngBytes encodes a w×h PNG.
func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	img.SetNRGBA(0, 0, color.NRGBA{R: 1, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatalf("encoding PNG: %v", err)
	}
	return buf.Bytes()
}

// editRequest is an edit of one w×h PNG with no size asked.
func editRequest(t testing.TB, w, h int) *provider.Request {
	t.Helper()
	return &provider.Request{
		JobID:  "job-1",
		Kind:   provider.KindEdit,
		Model:  "img2img",
		Prompt: "a watercolour version",
		N:      1,
		Images: []provider.InputImage{{Data: pngBytes(t, w, h), MIME: "image/png", Name: "in.png", Width: w, Height: h}},
	}
}

// events records emitted events.
type events struct {
	mu   sync.Mutex
	list []provider.Event
}

func (e *events) emit(ev provider.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) all() []provider.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]provider.Event(nil), e.list...)
}

// providerError asserts err is a *provider.Error and returns it.
func providerError(t testing.TB, err error) *provider.Error {
	t.Helper()
	if err == nil {
		t.Fatal("Generate succeeded, want an error")
	}
	pe, ok := provider.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	return pe
}

// decodeSize reads the size of a PNG/JPEG result.
func decodeSize(t testing.TB, b []byte) (int, int) {
	t.Helper()
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding result: %v", err)
	}
	return cfg.Width, cfg.Height
}

// simulatePolls counts the polls the schedule of pc spends on a job that
// finishes job after acceptance, with instant answers: the poll at or after
// job sees it done. It returns the count and whether the job was seen done
// before the deadline ended polling.
func simulatePolls(pc PollConfig, job time.Duration) (polls int, done bool) {
	polls, done, _ = simulateSchedule(pc, job)
	return polls, done
}

// simulateSchedule is simulatePolls also returning when the last poll ran.
func simulateSchedule(pc PollConfig, job time.Duration) (polls int, done bool, at time.Duration) {
	sched := newSchedule(pc, false)
	var t time.Duration
	for {
		w := sched.next()
		final := false
		if rem := pc.Deadline - t; w >= rem {
			w, final = max(rem, 0), true
		}
		t += w
		polls++
		if t >= job {
			return polls, true, t
		}
		if final {
			return polls, false, t
		}
	}
}

// pollRoundTripper calls onPoll after each answered poll request.
type pollRoundTripper struct {
	base   http.RoundTripper
	onPoll func()
}

func (rt *pollRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(r)
	if r.URL.Path == jobapitest.PollPath && rt.onPoll != nil {
		rt.onPoll()
	}
	return resp, err
}
