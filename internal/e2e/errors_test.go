package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	body := []byte(`{"model":"z-image-turbo","prompt":"a cat"}`)
	missing, missingBody := b.do(t, http.MethodPost, "/v1/images/generations", "", body)
	wrong, wrongBody := b.do(t, http.MethodPost, "/v1/images/generations", "e2e-Wrong7Vx2Lm9Rt4Zs8Wn3", body)
	for name, resp := range map[string]*http.Response{"missing key": missing, "wrong key": wrong} {
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
	}
	checkEnvelope(t, missingBody, "", "", "*")
	if !bytes.Equal(missingBody, wrongBody) {
		t.Errorf("missing and wrong key bodies differ:\n%s\n%s", missingBody, wrongBody)
	}
	if n := len(b.fake.Joins()); n != 0 {
		t.Errorf("unauthenticated requests reached the backend %d times", n)
	}

	// The SDK with a wrong key gets the same answer as an *openai.Error.
	_, err := b.client.Models.List(testCtx(t), withKey("e2e-Wrong7Vx2Lm9Rt4Zs8Wn3"))
	apiError(t, err, http.StatusUnauthorized)
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	// Parallel subtests run after this function returns; the check waits
	// for them (cleanups run after subtests, before setup's own).
	t.Cleanup(func() {
		if n := len(b.fake.Joins()); n != 0 {
			t.Errorf("invalid requests reached the backend %d times", n)
		}
	})
	cases := []struct {
		name   string
		params openai.ImageGenerateParams
		status int
		param  string
		code   string
	}{
		{"unknown model", openai.ImageGenerateParams{Model: "no-such-model", Prompt: "a cat"}, http.StatusNotFound, "model", "model_not_found"},
		{"empty prompt", openai.ImageGenerateParams{Model: modelID, Prompt: ""}, http.StatusBadRequest, "prompt", ""},
		{"n=0", openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", N: openai.Int(0)}, http.StatusBadRequest, "n", ""},
		{"n=11", openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", N: openai.Int(11)}, http.StatusBadRequest, "n", ""},
		{"size not WxH", openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "large"}, http.StatusBadRequest, "size", "invalid_value"},
		{"size too big", openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "99999x512"}, http.StatusBadRequest, "size", "invalid_value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.client.Images.Generate(testCtx(t), tc.params)
			ae := apiError(t, err, tc.status)
			if ae.Param != tc.param {
				t.Errorf("param = %q, want %q", ae.Param, tc.param)
			}
			if tc.code != "" && ae.Code != tc.code {
				t.Errorf("code = %q, want %q", ae.Code, tc.code)
			}
			if ae.Type != "invalid_request_error" || ae.Message == "" {
				t.Errorf("type %q message %q", ae.Type, ae.Message)
			}
		})
	}

	t.Run("body over 1 MiB", func(t *testing.T) {
		t.Parallel()
		big, err := json.Marshal(map[string]any{"model": modelID, "prompt": strings.Repeat("a", 1<<20)})
		if err != nil {
			t.Fatal(err)
		}
		resp, body := b.do(t, http.MethodPost, "/v1/images/generations", testKey, big)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413: %s", resp.StatusCode, body)
		}
		checkEnvelope(t, body, "invalid_request_error", "", "payload_too_large")
	})

	t.Run("raw envelope", func(t *testing.T) {
		t.Parallel()
		resp, body := b.postJSON(t, "/v1/images/generations", map[string]any{"model": modelID, "prompt": "a cat", "n": 0})
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("n=0 = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		checkEnvelope(t, body, "invalid_request_error", "n", "*")
	})

}

// upstreamCase is one failure the fake Space produces and the answer easel
// must give for it.
type upstreamCase struct {
	name     string
	sc       scenario
	status   int
	typ      string
	noRetry  bool   // x-should-retry: false expected
	message  string // substring the message must keep
	maxJoins int    // 0: exactly one join
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	cases := []upstreamCase{
		{
			name: "zerogpu quota",
			sc: scenario{run: func(context.Context, *gradiotest.Call) ([]any, error) {
				return nil, gradiotest.QuotaError(30 * time.Second)
			}},
			status: http.StatusTooManyRequests, typ: "rate_limit_error",
			message: "exceeded your free ZeroGPU quota",
		},
		{
			name: "app error with title",
			sc: scenario{run: func(context.Context, *gradiotest.Call) ([]any, error) {
				return nil, &gradiotest.AppError{Title: "Prompt rejected", Message: "The prompt mentions a forbidden subject."}
			}},
			status: http.StatusBadGateway, typ: "server_error", noRetry: true,
			message: "The prompt mentions a forbidden subject.",
		},
		{
			name: "hidden error",
			sc: scenario{run: func(context.Context, *gradiotest.Call) ([]any, error) {
				return nil, gradiotest.ErrHidden
			}},
			status: http.StatusBadGateway, typ: "server_error", noRetry: true,
		},
		{
			name: "stream dropped",
			sc: scenario{run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
				c.Progress(0, 4, "steps")
				return nil, gradiotest.ErrDropStream
			}},
			status: http.StatusBadGateway, typ: "server_error", noRetry: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.sc)
			start := time.Now()
			_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
			checkUpstreamError(t, b, err, tc)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the error took %s", d)
			}
		})
	}
}

func checkUpstreamError(t *testing.T, b *bundle, err error, tc upstreamCase) {
	t.Helper()
	ae := apiError(t, err, tc.status)
	if ae.Type != tc.typ {
		t.Errorf("type = %q, want %q", ae.Type, tc.typ)
	}
	if ae.Message == "" || !strings.Contains(ae.Message, tc.message) {
		t.Errorf("message %q does not keep %q", ae.Message, tc.message)
	}
	if ae.Param != "" {
		t.Errorf("param = %q, want null", ae.Param)
	}
	h := ae.Response.Header
	if got := h.Get("X-Should-Retry") == "false"; got != tc.noRetry {
		t.Errorf("x-should-retry = %q, want false: %v", h.Get("X-Should-Retry"), tc.noRetry)
	}
	if tc.status == http.StatusTooManyRequests && h.Get("Retry-After") != "30" {
		t.Errorf("Retry-After = %q, want 30 (the quota's wait)", h.Get("Retry-After"))
	}
	joins := len(b.generateJoins())
	switch {
	case tc.maxJoins == 0 && joins != 1:
		t.Errorf("the fake saw %d joins, want 1 (no replay after the work started)", joins)
	case tc.maxJoins > 0 && (joins < 1 || joins > tc.maxJoins):
		t.Errorf("the fake saw %d joins, want 1..%d", joins, tc.maxJoins)
	}
}

func TestStall(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{
		stallTimeout: time.Second,
		run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			c.SilenceHeartbeats()
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	start := time.Now()
	_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
	ae := apiError(t, err, http.StatusGatewayTimeout)
	if ae.Type != "server_error" || ae.Message == "" {
		t.Errorf("type %q message %q", ae.Type, ae.Message)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("stall detected after %s, want about 1s", d)
	}
	if n := len(b.generateJoins()); n != 1 {
		t.Errorf("the fake saw %d joins, want 1", n)
	}
}

// TestQueueFull fills the fake Space's own queue (one running, one
// waiting, max_size 1), so the next join gets Gradio's 503 "Queue is
// full". easel retries a few times, since nothing started, then answers
// 503 itself.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, scenario{
		fakeConcurrency: 1,
		fakeMaxQueue:    1,
		run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []any{c.PNG(512, 512, 1), 1}, nil
		},
	})
	bg, cancelBG := context.WithCancel(testCtx(t))
	defer cancelBG()
	background := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := b.client.Images.Generate(bg, openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
			background <- err
		}()
	}
	waitFor(t, 10*time.Second, "one running and one queued event at the fake", func() bool {
		return b.fake.Running() == 1 && b.fake.QueueSize() == 1
	})
	before := b.fake.Requests("/queue/join")

	start := time.Now()
	_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "a dog", Size: "512x512"})
	ae := apiError(t, err, http.StatusServiceUnavailable)
	if ae.Type != "server_error" {
		t.Errorf("type = %q, want server_error", ae.Type)
	}
	if ae.Response.Header.Get("X-Should-Retry") == "false" {
		t.Error("x-should-retry: false on a refusal where nothing started")
	}
	if ae.Response.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	attempts := b.fake.Requests("/queue/join") - before
	if attempts < 1 || attempts > 3 {
		t.Errorf("easel tried to join %d times, want 1..3", attempts)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the 503 took %s", d)
	}

	// The two blocked jobs still finish normally once the Space frees up.
	close(release)
	for range 2 {
		select {
		case err := <-background:
			if err != nil {
				t.Errorf("background generation: %v", err)
			}
		case <-time.After(callTimeout):
			t.Fatal("background generations did not finish")
		}
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	running := make(chan struct{}, 1)
	following := make(chan struct{}, 1)
	b := setup(t, scenario{
		// easel opens the session stream only once its join returned, so
		// from then on it knows the event id it must cancel.
		hook: func(_ http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/queue/data") {
				select {
				case following <- struct{}{}:
				default:
				}
			}
			return false
		},
		run: func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
			c.Progress(0, 8, "steps")
			running <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := b.client.Images.Generate(ctx, openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
		errc <- err
	}()
	for _, ch := range []chan struct{}{running, following} {
		select {
		case <-ch:
		case <-time.After(callTimeout):
			t.Fatal("the fake never started the job, or easel never followed it")
		}
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("client error = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client call did not return after cancellation")
	}

	joins := b.generateJoins()
	if len(joins) != 1 {
		t.Fatalf("the fake saw %d joins, want 1", len(joins))
	}
	j := joins[0]
	var got gradiotest.Cancel
	waitFor(t, 2*time.Second, "a cancel at the fake", func() bool {
		for _, c := range b.fake.Cancels() {
			if c.EventID == j.EventID {
				got = c
				return true
			}
		}
		return false
	})
	if got.SessionHash != j.SessionHash || got.FnIndex != j.FnIndex || got.SessionHash == "" {
		t.Errorf("cancel = {session %q fn %d event %q}, want the join's {session %q fn %d event %q}",
			got.SessionHash, got.FnIndex, got.EventID, j.SessionHash, j.FnIndex, j.EventID)
	}
}

// TestStreamingUpstreamError checks that a failure after the stream began
// reaches SDK clients as a stream error, not as a silent end.
func TestStreamingUpstreamError(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{run: func(_ context.Context, c *gradiotest.Call) ([]any, error) {
		c.Progress(0, 4, "steps")
		return nil, &gradiotest.AppError{Title: "Prompt rejected", Message: "The prompt mentions a forbidden subject."}
	}})
	stream := b.client.Images.GenerateStreaming(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "a cat", Size: "512x512"})
	defer stream.Close()
	completed := 0
	for stream.Next() {
		if stream.Current().Type == "image_generation.completed" {
			completed++
		}
	}
	err := stream.Err()
	if err == nil || !strings.Contains(err.Error(), "forbidden subject") {
		t.Errorf("stream error = %v, want the upstream's message", err)
	}
	if completed != 0 {
		t.Errorf("got %d completed events from a failed job", completed)
	}

	// Chat streams end with the error object and the terminator.
	resp, body := b.postJSON(t, "/v1/chat/completions", map[string]any{
		"model": modelID, "stream": true,
		"messages": []map[string]any{{"role": "user", "content": "a cat"}},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat stream status %d", resp.StatusCode)
	}
	if !bytes.Contains(body, []byte(`"error":{`)) || !bytes.Contains(body, []byte("forbidden subject")) ||
		!bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Errorf("chat stream does not end with the error and [DONE]:\n%s", tailOf(body, 500))
	}
}
