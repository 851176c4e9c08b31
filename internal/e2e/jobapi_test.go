package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// Model ids of the job-API backend, as an operator would name them.
const (
	jobModel = "nano-banana"
	// jobKey is the service key the backend sends from I2I_KEY; the fake
	// does not demand it, the tests check where it went.
	jobKey = "Bearer i2i-canary-key-5be02c"
)

// The polling schedule of the job-API backend under test: polls at 50 ms,
// 150 ms and 350 ms after the submit is accepted, then every 400 ms, until
// the 2 s deadline. A job that runs for jobDuration is therefore seen
// processing twice and completed at the third poll, with at least 100 ms
// of slack on either side of each poll.
const (
	jobDuration  = 250 * time.Millisecond
	jobPolls     = 3
	jobDeadline  = 2 * time.Second
	deadlineSlop = 3 * time.Second
)

// setupJobAPI starts a job-API fake and easel with a backend from the
// reference preset whose URLs and schedule point at the fake. Results are
// stored without fsync, the setting this package's other tests leave on.
func setupJobAPI(t *testing.T) (*bundle, *jobapitest.Server) {
	t.Helper()
	fake := jobapitest.New(jobapitest.Options{JobDuration: jobDuration})
	t.Cleanup(fake.Close)
	backend := fmt.Sprintf(`  - name: i2i
    preset: aiimagetoimage-nano-banana
    jobapi:
      submit:
        url: %q
        header_env: {Authorization: I2I_KEY}
      poll:
        url: %q
        interval: 50ms
        backoff: 2
        max_interval: 400ms
        deadline: %s
`, fake.SubmitURL(), fake.PollURLTemplate(), jobDeadline)
	b := setup(t, scenario{
		extraBackends: backend,
		extraModels:   "  - id: " + jobModel + "\n    backends: [i2i]\n",
		extraTop:      "storage:\n  fsync: false\n",
		env:           map[string]string{"I2I_KEY": jobKey},
	})
	return b, fake
}

// jobEdit sends an edit of src through the official SDK.
func jobEdit(t *testing.T, b *bundle, src []byte, size openai.ImageEditParamsSize) (*openai.ImagesResponse, error) {
	t.Helper()
	return b.client.Images.Edit(testCtx(t), openai.ImageEditParams{
		Image:  openai.ImageEditParamsImageUnion{OfFile: bytes.NewReader(src)},
		Prompt: "make it a watercolour",
		Model:  jobModel,
		Size:   size,
	})
}

// lastSubmit is the newest submit the fake recorded.
func lastSubmit(t *testing.T, fake *jobapitest.Server) jobapitest.SubmitRecord {
	t.Helper()
	log := fake.SubmitLog()
	if len(log) == 0 {
		t.Fatal("the fake recorded no submit")
	}
	return log[len(log)-1]
}

// counts snapshots the fake's counters, to assert what one request cost.
type counts struct{ submits, polls, fetches, jobs int }

func countsOf(f *jobapitest.Server) counts {
	return counts{f.Submits(), f.TotalPolls(), f.Fetches(), len(f.JobIDs())}
}

func (c counts) since(before counts) counts {
	return counts{c.submits - before.submits, c.polls - before.polls, c.fetches - before.fetches, c.jobs - before.jobs}
}

// TestJobAPISuccess edits images through the reference preset: the
// result's shape follows the requested ratio, the job costs exactly the
// polls of the configured schedule, and the service key reaches the API
// and nothing else.
func TestJobAPISuccess(t *testing.T) {
	t.Parallel()
	b, fake := setupJobAPI(t)
	src, _ := gradient(40, 30)

	t.Run("size maps to the nearest ratio", func(t *testing.T) {
		before := countsOf(fake)
		resp, err := jobEdit(t, b, src, openai.ImageEditParamsSize1536x1024)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 1 {
			t.Fatalf("%d images", len(resp.Data))
		}
		cfg := decodeB64PNG(t, resp.Data[0].B64JSON)
		// 1536x1024 is 3:2; the fake draws 3:2 at 256 on the long side.
		if cfg.Width != 256 || cfg.Height != 170 {
			t.Errorf("result %dx%d, want 256x170", cfg.Width, cfg.Height)
		}
		sub := lastSubmit(t, fake)
		want := map[string]string{"aspect_ratio": "3:2", "model_type": "nano_banana", "prompt": "make it a watercolour", "negative_prompt": ""}
		for k, v := range want {
			if sub.Fields[k] != v {
				t.Errorf("submit field %s = %q, want %q", k, sub.Fields[k], v)
			}
		}
		if sub.ImageType != "image/png" || sub.ImageBytes != len(src) {
			t.Errorf("image part %s, %d bytes; want image/png, %d bytes", sub.ImageType, sub.ImageBytes, len(src))
		}
		if ua := sub.Header.Get("User-Agent"); ua != "easel/v0.0.0-e2e" {
			t.Errorf("User-Agent = %q", ua)
		}
		if got := sub.Header.Get("Authorization"); got != jobKey {
			t.Errorf("submit Authorization = %q, want the configured key", got)
		}
		if polls := fake.Polls(sub.JobID); polls != jobPolls {
			t.Errorf("job %s was polled %d times, want %d", sub.JobID, polls, jobPolls)
		}
		if d := countsOf(fake).since(before); d != (counts{submits: 1, polls: jobPolls, fetches: 1, jobs: 1}) {
			t.Errorf("requests for one edit = %+v", d)
		}
	})

	t.Run("aspect_ratio extension", func(t *testing.T) {
		resp, data := b.postJSON(t, "/v1/images/edits", map[string]any{
			"model":           jobModel,
			"prompt":          "widen it",
			"aspect_ratio":    "16:9",
			"response_format": "url",
			"images":          []map[string]string{{"image_url": "data:image/png;base64," + base64.StdEncoding.EncodeToString(src)}},
		})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		var got struct {
			Data []struct {
				URL string `json:"url"`
			} `json:"data"`
		}
		if err := json.Unmarshal(data, &got); err != nil || len(got.Data) != 1 {
			t.Fatalf("response %s (%v)", data, err)
		}
		// The result was stored without fsync and is served whole.
		status, ctype, body := b.fetchImage(t, got.Data[0].URL)
		if status != http.StatusOK || ctype != "image/png" {
			t.Fatalf("result URL: %d %s", status, ctype)
		}
		if cfg := decodePNG(t, body); cfg.Width != 256 || cfg.Height != 144 {
			t.Errorf("result %dx%d, want 256x144", cfg.Width, cfg.Height)
		}
		if r := lastSubmit(t, fake).Fields["aspect_ratio"]; r != "16:9" {
			t.Errorf("aspect_ratio sent = %q", r)
		}
	})

	t.Run("no size leaves the service its default ratio", func(t *testing.T) {
		resp, err := jobEdit(t, b, src, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 1 {
			t.Fatalf("%d images", len(resp.Data))
		}
		if r := lastSubmit(t, fake).Fields["aspect_ratio"]; r != "match_input_image" {
			t.Errorf("aspect_ratio sent = %q, want the preset's default match_input_image", r)
		}
	})

	t.Run("a named ratio is passed through", func(t *testing.T) {
		resp, data := b.postJSON(t, "/v1/images/edits", map[string]any{
			"model":        jobModel,
			"prompt":       "keep the shape",
			"aspect_ratio": "match_input_image",
			"images":       []map[string]string{{"image_url": "data:image/png;base64," + base64.StdEncoding.EncodeToString(src)}},
		})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
		if r := lastSubmit(t, fake).Fields["aspect_ratio"]; r != "match_input_image" {
			t.Errorf("aspect_ratio sent = %q", r)
		}
	})

	t.Run("a failed poll is repeated", func(t *testing.T) {
		before := countsOf(fake)
		fake.Inject(jobapitest.Fault{Route: jobapitest.RoutePoll, Kind: jobapitest.HTTP500, Times: 1})
		if _, err := jobEdit(t, b, src, ""); err != nil {
			t.Fatal(err)
		}
		d := countsOf(fake).since(before)
		if d.submits != 1 || d.fetches != 1 || d.polls < jobPolls || d.polls > jobPolls+1 {
			t.Errorf("requests = %+v, want one submit, one fetch and %d or %d polls", d, jobPolls, jobPolls+1)
		}
	})

	t.Run("a text-only request is refused before any call", func(t *testing.T) {
		before := countsOf(fake)
		_, err := b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Prompt: "a fox", Model: jobModel})
		apiError(t, err, http.StatusBadRequest)
		if d := countsOf(fake).since(before); d != (counts{}) {
			t.Errorf("requests = %+v, want none", d)
		}
	})

	// The key went to the submit and every poll, never to a result URL,
	// and never back to the client.
	for _, r := range fake.Requests() {
		got := r.Header.Get("Authorization")
		switch r.Route {
		case jobapitest.RouteResult:
			if got != "" {
				t.Errorf("result download %s carried Authorization", r.Path)
			}
		default:
			if got != jobKey {
				t.Errorf("%s %s carried Authorization %q", r.Route, r.Path, got)
			}
		}
	}
	if found, complete := b.rec.contains("i2i-canary-key"); found || !complete {
		t.Errorf("service key seen by the client = %v (record complete %v)", found, complete)
	}
}

// TestJobAPIErrors maps each misbehaviour of the service to the status an
// OpenAI client expects, keeping the upstream's own message where it has
// one.
func TestJobAPIErrors(t *testing.T) {
	t.Parallel()
	b, fake := setupJobAPI(t)
	src, _ := gradient(32, 32)

	cases := []struct {
		name    string
		arrange func()
		status  int
		code    string
		// retryAfter is whether a Retry-After header is required.
		retryAfter bool
		// msg must appear in the error message; notMsg must not.
		msg, notMsg string
		check       func(t *testing.T, d counts)
	}{
		{
			name:       "body code 429",
			arrange:    func() { fake.Inject(jobapitest.Fault{Route: jobapitest.RouteSubmit, Kind: jobapitest.BodyCode429}) },
			status:     http.StatusTooManyRequests,
			code:       "rate_limit_exceeded",
			retryAfter: true,
			msg:        "daily limit",
			check: func(t *testing.T, d counts) {
				// Refused submits prove nothing ran: the runner may retry,
				// within its attempts, but no job exists.
				if d.submits < 1 || d.submits > 3 || d.jobs != 0 || d.polls != 0 {
					t.Errorf("requests = %+v", d)
				}
			},
		},
		{
			name: "HTTP 429 with an HTML page",
			arrange: func() {
				fake.Inject(jobapitest.Fault{Route: jobapitest.RouteSubmit, Kind: jobapitest.HTTP429HTML, RetryAfter: "1"})
			},
			status:     http.StatusTooManyRequests,
			code:       "rate_limit_exceeded",
			retryAfter: true,
			notMsg:     "<",
			check: func(t *testing.T, d counts) {
				if d.submits < 1 || d.submits > 3 || d.jobs != 0 {
					t.Errorf("requests = %+v", d)
				}
			},
		},
		{
			name:    "HTTP 500 on submit",
			arrange: func() { fake.Inject(jobapitest.Fault{Route: jobapitest.RouteSubmit, Kind: jobapitest.HTTP500}) },
			status:  http.StatusServiceUnavailable,
			code:    "service_unavailable",
			msg:     "HTTP 500",
			check: func(t *testing.T, d counts) {
				// A 500 may come after the work began: never resubmitted.
				if d.submits != 1 {
					t.Errorf("submits = %d, want 1", d.submits)
				}
			},
		},
		{
			name:    "malformed JSON",
			arrange: func() { fake.Inject(jobapitest.Fault{Route: jobapitest.RouteSubmit, Kind: jobapitest.MalformedJSON}) },
			status:  http.StatusBadGateway,
			msg:     "not JSON",
			check: func(t *testing.T, d counts) {
				if d.submits != 1 {
					t.Errorf("submits = %d, want 1", d.submits)
				}
			},
		},
		{
			name:    "failed job",
			arrange: func() { fake.SetFailMessage("Content rejected by the safety filter") },
			status:  http.StatusBadGateway,
			msg:     "Content rejected by the safety filter",
			check: func(t *testing.T, d counts) {
				if d.submits != 1 || d.fetches != 0 {
					t.Errorf("requests = %+v", d)
				}
			},
		},
		{
			name:    "result URL 404",
			arrange: func() { fake.Inject(jobapitest.Fault{Route: jobapitest.RouteResult, Kind: jobapitest.NotFound}) },
			status:  http.StatusBadGateway,
			msg:     "404",
			check: func(t *testing.T, d counts) {
				// Downloads are plain GETs: tried again, the job is not.
				if d.submits != 1 || d.fetches < 2 {
					t.Errorf("requests = %+v", d)
				}
			},
		},
		{
			name:    "never finishes",
			arrange: func() { fake.SetNeverFinish(true) },
			status:  http.StatusGatewayTimeout,
			msg:     "did not finish within 2s",
			check: func(t *testing.T, d counts) {
				// 50 ms, 150 ms, 350 ms, then every 400 ms up to 1950 ms,
				// and one last look at the deadline.
				if d.submits != 1 || d.polls != 8 || d.fetches != 0 {
					t.Errorf("requests = %+v, want 1 submit and 8 polls", d)
				}
			},
		},
	}
	// One fake serves every case, so they run in turn, each undoing its
	// fault.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() {
				fake.ClearFaults()
				fake.SetFailMessage("")
				fake.SetNeverFinish(false)
			})
			before := countsOf(fake)
			tc.arrange()
			start := time.Now()
			_, err := jobEdit(t, b, src, "")
			elapsed := time.Since(start)
			ae := apiError(t, err, tc.status)
			if tc.code != "" && ae.Code != tc.code {
				t.Errorf("code = %q, want %q", ae.Code, tc.code)
			}
			if tc.msg != "" && !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("message %q lacks %q", ae.Message, tc.msg)
			}
			if tc.notMsg != "" && strings.Contains(ae.Message, tc.notMsg) {
				t.Errorf("message %q contains %q", ae.Message, tc.notMsg)
			}
			if ra := ae.Response.Header.Get("Retry-After"); tc.retryAfter && ra == "" {
				t.Error("no Retry-After header")
			}
			if tc.status == http.StatusGatewayTimeout && (elapsed < jobDeadline || elapsed > jobDeadline+deadlineSlop) {
				t.Errorf("timed out after %s, want %s plus at most %s", elapsed, jobDeadline, deadlineSlop)
			}
			tc.check(t, countsOf(fake).since(before))
		})
	}

	// The service recovers once the faults are gone.
	if _, err := jobEdit(t, b, src, ""); err != nil {
		t.Fatalf("edit after the faults: %v", err)
	}
}
