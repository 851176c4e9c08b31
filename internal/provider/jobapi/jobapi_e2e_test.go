package jobapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

func TestGenerateAgainstFake(t *testing.T) {
	t.Parallel()
	clock := newVClock()
	srv := jobapitest.New(jobapitest.Options{JobDuration: 5 * time.Second, Progress: true, Now: clock.Now})
	defer srv.Close()
	var mu sync.Mutex
	var saved [][2]string
	p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), clock, Options{
		OnUpstreamID: func(jobID, upstreamID string) {
			mu.Lock()
			defer mu.Unlock()
			saved = append(saved, [2]string{jobID, upstreamID})
		},
	})
	var ev events
	req := editRequest(t, 300, 200)
	res, err := p.Generate(context.Background(), req, ev.emit)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	ids := srv.JobIDs()
	if len(ids) != 1 {
		t.Fatalf("fake accepted %d jobs, want 1", len(ids))
	}
	id := ids[0]
	if res.UpstreamID != id {
		t.Errorf("UpstreamID = %q, want %q", res.UpstreamID, id)
	}
	if diff := cmp.Diff([][2]string{{"job-1", id}}, saved); diff != "" {
		t.Errorf("OnUpstreamID calls (-want +got):\n%s", diff)
	}
	if len(res.Images) != 1 || res.Images[0].MIME != "image/png" {
		t.Fatalf("images = %d (first %q), want one PNG", len(res.Images), firstMIME(res))
	}
	// match_input_image: the result keeps the input's size.
	if w, h := decodeSize(t, res.Images[0].Data); w != 300 || h != 200 {
		t.Errorf("result is %dx%d, want 300x200", w, h)
	}

	subs := srv.SubmitLog()
	if len(subs) != 1 {
		t.Fatalf("%d submits recorded, want 1", len(subs))
	}
	wantFields := map[string]string{
		"prompt":          "a watercolour version",
		"negative_prompt": "",
		"model_type":      "nano_banana",
		"aspect_ratio":    "match_input_image",
	}
	if diff := cmp.Diff(wantFields, subs[0].Fields); diff != "" {
		t.Errorf("submit fields (-want +got):\n%s", diff)
	}
	if subs[0].ImageType != "image/png" || subs[0].ImageName != "in.png" {
		t.Errorf("image part = %q %q, want in.png image/png (the real type)", subs[0].ImageName, subs[0].ImageType)
	}

	// Only honest, necessary headers on every request.
	allowed := map[string]bool{"User-Agent": true, "Accept": true, "Accept-Encoding": true, "Content-Type": true, "Content-Length": true}
	for _, r := range srv.Requests() {
		if ua := r.Header.Get("User-Agent"); ua != testUA {
			t.Errorf("%s %s: User-Agent %q, want %q", r.Method, r.Path, ua, testUA)
		}
		for k := range r.Header {
			if !allowed[k] {
				t.Errorf("%s %s: unexpected header %s: %q", r.Method, r.Path, k, r.Header.Get(k))
			}
		}
	}

	// Events: the upstream id early (for the job record, then for people),
	// then queued, started, progress.
	got := ev.all()
	if len(got) < 4 {
		t.Fatalf("events = %+v, want accepted, log, queued, started and progress", got)
	}
	if got[0].Type != provider.EventAccepted || got[0].UpstreamID != id {
		t.Errorf("first event = %+v, want accepted with upstream id %q", got[0], id)
	}
	if got[1].Type != provider.EventLog || got[1].Message != "accepted by the upstream" || strings.Contains(fmt.Sprint(got[1:]), id) {
		t.Errorf("second event = %+v, want log %q and the upstream id only in the accepted event", got[1], "accepted by the upstream")
	}
	if got[2].Type != provider.EventQueued || got[2].Source != "upstream" {
		t.Errorf("third event = %+v, want upstream queued", got[2])
	}
	var fractions []float64
	started := 0
	for _, e := range got {
		switch e.Type {
		case provider.EventProgress:
			fractions = append(fractions, e.Fraction)
		case provider.EventStarted:
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d started events, want 1", started)
	}
	// Polls at 1s, 2.5s and 4.75s of a 5s job: 20%, 50%, 95%.
	if diff := cmp.Diff([]float64{0.2, 0.5, 0.95}, fractions); diff != "" {
		t.Errorf("progress fractions (-want +got):\n%s", diff)
	}
}

func firstMIME(res *provider.Result) string {
	if len(res.Images) == 0 {
		return ""
	}
	return res.Images[0].MIME
}

// TestPollCounts checks the default schedule's cost: the number of polls
// the schedule implies (computed), and the same number live against the
// fake on a shared virtual clock.
func TestPollCounts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		job       time.Duration
		wantPolls int
	}{
		// Polls at 1, 2.5, 4.75, 8.125 s: the fourth sees the 5 s job done.
		{5 * time.Second, 4},
		// 1, 2.5, 4.75, 8.125, 13.19, 20.78, 30.78, 40.78, 50.78, 60.78 s.
		{60 * time.Second, 10},
		// Done before the first poll: one poll.
		{500 * time.Millisecond, 1},
	}
	for _, tc := range cases {
		t.Run(tc.job.String(), func(t *testing.T) {
			t.Parallel()
			pc := defaultedPoll(t)
			if got, done := simulatePolls(pc, tc.job); got != tc.wantPolls || !done {
				t.Errorf("schedule: %d polls (done %v), want %d", got, done, tc.wantPolls)
			}
			clock := newVClock()
			srv := jobapitest.New(jobapitest.Options{JobDuration: tc.job, Now: clock.Now})
			defer srv.Close()
			p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), clock, Options{})
			if _, err := p.Generate(context.Background(), editRequest(t, 64, 64), nil); err != nil {
				t.Fatalf("Generate: %v", err)
			}
			id := srv.JobIDs()[0]
			if got := srv.Polls(id); got != tc.wantPolls {
				t.Errorf("live: %d polls, want %d", got, tc.wantPolls)
			}
			if srv.Submits() != 1 || srv.Fetches() != 1 {
				t.Errorf("live: %d submits, %d fetches, want 1 and 1", srv.Submits(), srv.Fetches())
			}
		})
	}
}

// defaultedPoll returns the preset's poll config with New's defaults.
func defaultedPoll(t *testing.T) PollConfig {
	t.Helper()
	cfg, _ := Preset(PresetAIImageToImage)
	p, err := New("x", cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p.cfg.Poll
}

// TestPollCountRealTime runs the default schedule scaled by 1/4 in real
// time (interval 250ms, cap 2.5s, a 1.25s job): the same four polls as a
// 5s job on the default schedule. It does not run in parallel with the
// package's other tests, whose load could delay a poll past the 62ms margin
// between the third poll and the job's end.
func TestPollCountRealTime(t *testing.T) {
	srv := jobapitest.New(jobapitest.Options{JobDuration: 1250 * time.Millisecond})
	defer srv.Close()
	cfg := fakeConfig(t, srv, PresetAIImageToImage)
	cfg.Poll.Interval, cfg.Poll.MaxInterval = 250*time.Millisecond, 2500*time.Millisecond
	p := newTestProvider(t, cfg, nil, Options{})
	start := time.Now()
	if _, err := p.Generate(context.Background(), editRequest(t, 64, 64), nil); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	elapsed := time.Since(start)
	if got := srv.Polls(srv.JobIDs()[0]); got != 4 {
		t.Errorf("%d polls, want 4", got)
	}
	// Polls at 0.25, 0.625, 1.1875, 2.03 s.
	if elapsed < 2*time.Second || elapsed > 4*time.Second {
		t.Errorf("took %v, want about 2.03s", elapsed)
	}
}

// TestRequestsPerImage reports upstream requests per image (submit + polls +
// downloads) for 5 s and 60 s jobs on the default schedule, computed from
// the schedule and cross-checked live against the fake on virtual time, next
// to the reference script's cost (4 requests plus one poll every 3 s).
func TestRequestsPerImage(t *testing.T) {
	t.Parallel()
	pc := defaultedPoll(t)
	for _, job := range []time.Duration{5 * time.Second, 60 * time.Second} {
		polls, _, seen := simulateSchedule(pc, job)
		computed := 1 + polls + 1
		clock := newVClock()
		srv := jobapitest.New(jobapitest.Options{JobDuration: job, Now: clock.Now})
		p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), clock, Options{})
		if _, err := p.Generate(context.Background(), editRequest(t, 64, 64), nil); err != nil {
			srv.Close()
			t.Fatalf("Generate: %v", err)
		}
		live := srv.Submits() + srv.TotalPolls() + srv.Fetches()
		srv.Close()
		refPolls := int((job + 3*time.Second - 1) / (3 * time.Second))
		reference := 4 + refPolls
		t.Logf("job %v: %d upstream requests per image (1 submit + %d polls + 1 download, computed from the schedule; live against the fake: %d), done seen at %v; reference script: %d, done seen at %v",
			job, computed, polls, live, seen, reference, time.Duration(refPolls)*3*time.Second)
		if live != computed {
			t.Errorf("job %v: live %d requests, schedule implies %d", job, live, computed)
		}
		if computed > reference {
			t.Errorf("job %v: %d requests, more than the reference's %d", job, computed, reference)
		}
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	type check struct {
		kind       provider.ErrorKind
		notStarted bool
		retryAfter time.Duration
		contains   []string
		submits    int
		polls      int // -1: don't check
		fetches    int
	}
	cases := []struct {
		name   string
		opts   jobapitest.Options
		config func(*Config)
		want   check
	}{
		{
			name: "body code 429 at submit",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteSubmit, Kind: jobapitest.BodyCode429}}},
			want: check{kind: provider.KindRateLimited, notStarted: true, contains: []string{"code 429", "daily limit"}, submits: 1},
		},
		{
			name: "HTTP 429 HTML at submit",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteSubmit, Kind: jobapitest.HTTP429HTML, RetryAfter: "7"}}},
			want: check{kind: provider.KindRateLimited, notStarted: true, retryAfter: 7 * time.Second, contains: []string{"HTTP 429", "error code: 1015"}, submits: 1},
		},
		{
			name: "HTTP 500 at submit",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteSubmit, Kind: jobapitest.HTTP500}}},
			want: check{kind: provider.KindUnavailable, contains: []string{"HTTP 500", "Internal Server Error"}, submits: 1},
		},
		{
			name: "malformed JSON at submit",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteSubmit, Kind: jobapitest.MalformedJSON}}},
			want: check{kind: provider.KindProtocol, contains: []string{"not JSON"}, submits: 1},
		},
		{
			name: "malformed JSON at poll",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RoutePoll, Kind: jobapitest.MalformedJSON}}},
			want: check{kind: provider.KindProtocol, contains: []string{"status answer is not JSON"}, submits: 1, polls: 0},
		},
		{
			name: "job never finishes",
			opts: jobapitest.Options{NeverFinish: true},
			// 1, 2.5, 4.75, 8.125, 13.19, 20.78, then every 10 s to 590.78,
			// and a last look at 600 s: 6 + 57 + 1 polls.
			want: check{kind: provider.KindTimeout, contains: []string{"did not finish within 600s"}, submits: 1, polls: 64},
		},
		{
			name: "failed job keeps the upstream message",
			opts: jobapitest.Options{FailMessage: "Your image was flagged by the <b>safety</b> filter &amp; rejected"},
			want: check{kind: provider.KindUpstream, contains: []string{"failed: Your image was flagged by the safety filter & rejected"}, submits: 1, polls: -1},
		},
		{
			name: "result URL 404 forever",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteResult, Kind: jobapitest.NotFound}}},
			want: check{kind: provider.KindUpstream, contains: []string{"result unavailable", "3 attempts", "HTTP 404"}, submits: 1, polls: -1, fetches: 3},
		},
		{
			name: "result URL 403 twice",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteResult, Kind: jobapitest.Forbidden}}},
			want: check{kind: provider.KindUpstream, contains: []string{"unavailable", "403"}, submits: 1, polls: -1, fetches: 2},
		},
		{
			name: "result is not an image",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteResult, Kind: jobapitest.NotImage}}},
			want: check{kind: provider.KindProtocol, contains: []string{"not a PNG"}, submits: 1, polls: -1, fetches: 1},
		},
		{
			name:   "unknown model_type is refused by the body code",
			config: func(c *Config) { c.Models, c.Model = nil, "turbo_max" },
			want:   check{kind: provider.KindBadRequest, notStarted: true, contains: []string{"code 400", `invalid model_type "turbo_max"`}, submits: 1},
		},
		{
			name: "polls failing with HTTP 500 give up after max_errors",
			opts: jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP500}}},
			want: check{kind: provider.KindUnavailable, contains: []string{"failed 5 times in a row", "HTTP 500"}, submits: 1, polls: 0},
		},
		{
			name:   "slow submit hits the request timeout",
			opts:   jobapitest.Options{Faults: []jobapitest.Fault{{Route: jobapitest.RouteSubmit, Kind: jobapitest.SlowResponse, Delay: time.Minute}}},
			config: func(c *Config) { c.RequestTimeout = 200 * time.Millisecond },
			want:   check{kind: provider.KindTimeout, contains: []string{"did not answer in time"}, submits: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newVClock()
			tc.opts.Now = clock.Now
			srv := jobapitest.New(tc.opts)
			defer srv.Close()
			cfg := fakeConfig(t, srv, PresetAIImageToImage)
			if tc.config != nil {
				tc.config(&cfg)
			}
			p := newTestProvider(t, cfg, clock, Options{})
			start := time.Now()
			res, err := p.Generate(context.Background(), editRequest(t, 64, 48), nil)
			if err == nil {
				t.Fatalf("Generate succeeded with %d images, want an error", len(res.Images))
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			pe := providerError(t, err)
			if pe.Kind != tc.want.kind {
				t.Errorf("kind = %v, want %v (%v)", pe.Kind, tc.want.kind, err)
			}
			if pe.NotStarted != tc.want.notStarted {
				t.Errorf("NotStarted = %v, want %v", pe.NotStarted, tc.want.notStarted)
			}
			if pe.RetryAfter != tc.want.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", pe.RetryAfter, tc.want.retryAfter)
			}
			for _, s := range tc.want.contains {
				if !strings.Contains(pe.Message, s) {
					t.Errorf("message %q does not contain %q", pe.Message, s)
				}
			}
			if strings.ContainsAny(pe.Message, "<>") {
				t.Errorf("message %q still holds markup", pe.Message)
			}
			if got := srv.Submits(); got != tc.want.submits {
				t.Errorf("%d submits, want %d", got, tc.want.submits)
			}
			if tc.want.polls >= 0 {
				got := 0
				for _, id := range srv.JobIDs() {
					got += srv.Polls(id)
				}
				if got != tc.want.polls {
					t.Errorf("%d polls reached the job, want %d", got, tc.want.polls)
				}
			}
			if got := srv.Fetches(); got != tc.want.fetches {
				t.Errorf("%d fetches, want %d", got, tc.want.fetches)
			}
		})
	}
}

// TestTransientFaultsRecover checks faults a job survives: polls and
// downloads are GETs, safe to repeat.
func TestTransientFaultsRecover(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		fault       jobapitest.Fault
		wantFetches int
		minSlept    time.Duration
	}{
		{"poll HTTP 500 twice", jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP500, Times: 2}, 1, 0},
		{"poll HTTP 429 with Retry-After", jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP429HTML, Times: 1, RetryAfter: "30"}, 1, 31 * time.Second},
		{"poll body code 429", jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.BodyCode429, Times: 1}, 1, 0},
		{"result 404 twice then 200", jobapitest.Fault{Route: jobapitest.RouteResult, Kind: jobapitest.NotFound, Times: 2}, 3, 0},
		{"result 403 once, fresh URL after a re-poll", jobapitest.Fault{Route: jobapitest.RouteResult, Kind: jobapitest.Forbidden, Times: 1}, 2, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newVClock()
			srv := jobapitest.New(jobapitest.Options{JobDuration: 3 * time.Second, Now: clock.Now, Faults: []jobapitest.Fault{tc.fault}})
			defer srv.Close()
			p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), clock, Options{})
			res, err := p.Generate(context.Background(), editRequest(t, 64, 48), nil)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if len(res.Images) != 1 {
				t.Fatalf("%d images, want 1", len(res.Images))
			}
			if got := srv.Fetches(); got != tc.wantFetches {
				t.Errorf("%d fetches, want %d", got, tc.wantFetches)
			}
			if got := clock.Slept(); got < tc.minSlept {
				t.Errorf("waited %v in all, want at least %v", got, tc.minSlept)
			}
		})
	}
}

func TestJobIDIsURLEncoded(t *testing.T) {
	t.Parallel()
	clock := newVClock()
	srv := jobapitest.New(jobapitest.Options{JobDuration: time.Second, Now: clock.Now, JobIDPrefix: "a&b=c/d e?f#g%h+"})
	defer srv.Close()
	p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), clock, Options{})
	res, err := p.Generate(context.Background(), editRequest(t, 64, 64), nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	id := srv.JobIDs()[0]
	if res.UpstreamID != id {
		t.Errorf("UpstreamID = %q, want %q", res.UpstreamID, id)
	}
	if srv.Polls(id) != 1 {
		t.Errorf("%d polls reached job %q, want 1", srv.Polls(id), id)
	}
	want := "job_id=a%26b%3Dc%2Fd%20e%3Ff%23g%25h%2B"
	for _, r := range srv.Requests() {
		if r.Route == jobapitest.RoutePoll && !strings.HasPrefix(r.RawQuery, want) {
			t.Errorf("poll query %q, want prefix %q", r.RawQuery, want)
		}
	}
}

func TestCancelStopsPolling(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{NeverFinish: true})
	defer srv.Close()
	cfg := fakeConfig(t, srv, PresetAIImageToImage)
	cfg.Poll.Interval, cfg.Poll.Backoff, cfg.Poll.MaxInterval = 20*time.Millisecond, 1, 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	answered := 0
	client := &http.Client{Transport: &pollRoundTripper{base: http.DefaultTransport, onPoll: func() {
		mu.Lock()
		defer mu.Unlock()
		if answered++; answered == 3 {
			cancel()
		}
	}}}
	p := newTestProvider(t, cfg, nil, Options{HTTPClient: client})
	_, err := p.Generate(ctx, editRequest(t, 64, 64), nil)
	pe := providerError(t, err)
	if pe.Kind != provider.KindCanceled || !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want canceled", err)
	}
	atReturn := srv.TotalPolls()
	if atReturn != 3 {
		t.Errorf("%d polls when Generate returned, want 3 (no poll after cancel)", atReturn)
	}
	// Nothing may keep polling in the background: give a stray poller five
	// intervals to show itself.
	time.Sleep(100 * time.Millisecond)
	if got := srv.TotalPolls(); got != atReturn {
		t.Errorf("polls went on after return: %d, then %d", atReturn, got)
	}
}

func TestCancelDuringWaitReturnsAtOnce(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{NeverFinish: true})
	defer srv.Close()
	cfg := fakeConfig(t, srv, PresetAIImageToImage)
	cfg.Poll.Interval = time.Hour
	cfg.Poll.MaxInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newTestProvider(t, cfg, nil, Options{OnUpstreamID: func(string, string) { cancel() }})
	start := time.Now()
	_, err := p.Generate(ctx, editRequest(t, 64, 64), nil)
	if pe := providerError(t, err); pe.Kind != provider.KindCanceled {
		t.Errorf("kind = %v, want canceled", pe.Kind)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to notice the cancel", d)
	}
	if srv.TotalPolls() != 0 {
		t.Errorf("%d polls after a cancel before the first one", srv.TotalPolls())
	}
}

// TestDeadlineRealTime runs the deadline on the real clock (the exact poll
// count of a never-finishing job is asserted on virtual time in
// TestFaults); not in parallel, so that load does not blur the timing.
func TestDeadlineRealTime(t *testing.T) {
	srv := jobapitest.New(jobapitest.Options{NeverFinish: true})
	defer srv.Close()
	cfg := fakeConfig(t, srv, PresetAIImageToImage)
	cfg.Poll.Interval, cfg.Poll.MaxInterval, cfg.Poll.Deadline = 50*time.Millisecond, 100*time.Millisecond, 400*time.Millisecond
	p := newTestProvider(t, cfg, nil, Options{})
	start := time.Now()
	res, err := p.Generate(context.Background(), editRequest(t, 64, 64), nil)
	elapsed := time.Since(start)
	if res != nil {
		t.Fatalf("got a result %+v past the deadline", res)
	}
	pe := providerError(t, err)
	if pe.Kind != provider.KindTimeout || !strings.Contains(pe.Message, "did not finish within 0.4s") {
		t.Errorf("error = %v, want a timeout naming 0.4s", err)
	}
	if elapsed < 400*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want just past 400ms", elapsed)
	}
	// Waits of 50, 75, then 100 ms (the cap): polls at .05 .125 .225 .325
	// s and a last one at the .4 s deadline; a late answer may cost one.
	if got := srv.TotalPolls(); got < 4 || got > 5 {
		t.Errorf("%d polls, want 5 (4 if an answer came late)", got)
	}
}

func TestAspectRatioEndToEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		w, h         int
		ratio        string
		wantRatio    string
		wantW, wantH int
	}{
		{"size 1920x1080 maps to 16:9", 1920, 1080, "", "16:9", 256, 144},
		{"explicit 2:3", 0, 0, "2:3", "2:3", 170, 256},
		{"explicit ratio not listed maps to nearest", 0, 0, "21:9", "16:9", 256, 144},
		{"no size: match the input", 0, 0, "", "match_input_image", 120, 90},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newVClock()
			srv := jobapitest.New(jobapitest.Options{JobDuration: time.Second, Now: clock.Now})
			defer srv.Close()
			p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImageStandard), clock, Options{})
			req := editRequest(t, 120, 90)
			req.Width, req.Height, req.AspectRatio = tc.w, tc.h, tc.ratio
			res, err := p.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			sub := srv.SubmitLog()[0]
			if sub.Fields["aspect_ratio"] != tc.wantRatio || sub.Fields["model_type"] != "standard" {
				t.Errorf("sent aspect_ratio %q model_type %q, want %q standard", sub.Fields["aspect_ratio"], sub.Fields["model_type"], tc.wantRatio)
			}
			if w, h := decodeSize(t, res.Images[0].Data); w != tc.wantW || h != tc.wantH {
				t.Errorf("result %dx%d, want %dx%d", w, h, tc.wantW, tc.wantH)
			}
		})
	}
}

func TestRefusedBeforeSubmit(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{})
	defer srv.Close()
	p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), newVClock(), Options{})
	two := editRequest(t, 8, 8)
	two.Images = append(two.Images, two.Images[0])
	many := editRequest(t, 8, 8)
	many.N = 2
	for name, req := range map[string]*provider.Request{
		"text to image": {JobID: "j", Kind: provider.KindGenerate, Prompt: "a cat", N: 1},
		"two images":    two,
		"n of 2":        many,
	} {
		_, err := p.Generate(context.Background(), req, nil)
		if pe := providerError(t, err); pe.Kind != provider.KindBadRequest || !pe.NotStarted {
			t.Errorf("%s: error %v, want a not-started bad request", name, err)
		}
	}
	if srv.Submits() != 0 {
		t.Errorf("%d submits for refused requests", srv.Submits())
	}
}

func TestResume(t *testing.T) {
	t.Parallel()
	clock := newVClock()
	srv := jobapitest.New(jobapitest.Options{JobDuration: 30 * time.Second, Now: clock.Now})
	defer srv.Close()
	cfg := fakeConfig(t, srv, PresetAIImageToImage)

	// A first gateway submits, saves the id and goes away.
	ctx, cancel := context.WithCancel(context.Background())
	var saved string
	first := newTestProvider(t, cfg, clock, Options{OnUpstreamID: func(_, id string) { saved = id; cancel() }})
	if _, err := first.Generate(ctx, editRequest(t, 64, 64), nil); err == nil {
		t.Fatal("the first gateway's Generate should have been cancelled")
	}
	if saved == "" {
		t.Fatal("no upstream id saved")
	}
	// The job finishes while nobody watches; a restarted gateway resumes.
	_ = clock.Sleep(context.Background(), 40*time.Second)
	second := newTestProvider(t, cfg, clock, Options{})
	var ev events
	res, err := second.Resume(context.Background(), saved, editRequest(t, 64, 64), ev.emit)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if res.UpstreamID != saved || len(res.Images) != 1 {
		t.Errorf("Resume gave id %q and %d images, want %q and 1", res.UpstreamID, len(res.Images), saved)
	}
	if srv.Submits() != 1 {
		t.Errorf("%d submits, want 1: resuming must not submit again", srv.Submits())
	}
	if srv.Polls(saved) != 1 {
		t.Errorf("%d polls, want 1 (an immediate poll finds the job done)", srv.Polls(saved))
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	srv := jobapitest.New(jobapitest.Options{})
	p := newTestProvider(t, fakeConfig(t, srv, PresetAIImageToImage), nil, Options{})
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("Check against a live fake: %v", err)
	}
	if srv.Submits() != 0 || srv.TotalPolls() != 0 {
		t.Error("Check submitted or polled")
	}
	srv.Close()
	err := p.Check(context.Background())
	if pe, ok := provider.AsError(err); !ok || pe.Kind != provider.KindUnavailable {
		t.Errorf("Check against a closed port: %v, want unavailable", err)
	}
}
