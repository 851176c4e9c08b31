package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// otherKey is a second API key, to check that idempotency keys are per
// API key and jobs are private to their key.
const otherKey = "e2e-Hp3Rw8Nc2Vb6Xq9Jt5Lm"

// setupAsync starts easel in-process with the job-API backend of
// setupJobAPI and two API keys.
func setupAsync(t *testing.T) (*bundle, *jobapitest.Server) {
	t.Helper()
	fake := jobapitest.New(jobapitest.Options{JobDuration: jobDuration})
	t.Cleanup(fake.Close)
	backend := fmt.Sprintf(`  - name: i2i
    preset: aiimagetoimage-nano-banana
    concurrency: 4
    jobapi:
      submit:
        url: %q
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
		env:           map[string]string{"EASEL_API_KEYS": testKey + "," + otherKey},
	})
	return b, fake
}

// submitsFor counts the fake's accepted submits of prompt.
func submitsFor(fake *jobapitest.Server, prompt string) int {
	n := 0
	for _, s := range fake.SubmitLog() {
		if s.Fields["prompt"] == prompt && s.JobID != "" {
			n++
		}
	}
	return n
}

// requestFields are the parts of a job object fixed by its request:
// equal for every rendering of one job, whatever its progress.
func requestFields(o *jobObject) map[string]any {
	return map[string]any{
		"id": o.ID, "object": o.Object, "model": o.Model, "kind": o.Kind, "prompt": o.Prompt,
		"n": o.N, "created_at": o.CreatedAt, "links": o.Links, "webhook_url": o.WebhookURL,
	}
}

// waitJob polls a job until it is terminal.
func waitJob(t *testing.T, b *bundle, key, id string) *jobObject {
	t.Helper()
	ctx := testCtx(t)
	for {
		o, err := getJob(ctx, b.raw, b.base, key, id)
		if err != nil {
			t.Fatal(err)
		}
		if terminalStatus(o.Status) {
			return o
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("job %s still %s after %s", id, o.Status, callTimeout)
		}
	}
}

// TestAsyncIdempotency checks the Idempotency-Key contract of the async
// API (reliability spec D5 a, b, c, d, f, g) and the sync replay.
func TestAsyncIdempotency(t *testing.T) {
	t.Parallel()
	b, fake := setupAsync(t)
	img, _ := gradient(40, 30)
	post := func(t *testing.T, apiKey, idem string, form editForm) apiCall {
		t.Helper()
		r, err := send(testCtx(t), b.raw, b.base, "/v1/images/edits", apiKey, idem, form)
		if err != nil {
			t.Fatal(err)
		}
		requireAPI(t, r)
		return r
	}
	accepted := func(t *testing.T, r apiCall) *jobObject {
		t.Helper()
		o, err := checkAccepted(r.status, r.header, r.body)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	jobCount := func(t *testing.T, apiKey string) int {
		t.Helper()
		ids, err := listJobs(testCtx(t), b.raw, b.base, apiKey)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}

	t.Run("same key and body replay the job", func(t *testing.T) {
		form := asyncEdit(jobModel, "idem replay", img)
		first := accepted(t, post(t, testKey, "idem-replay", form))
		if first.Status != "queued" {
			t.Errorf("new job status %q, want queued", first.Status)
		}
		r := post(t, testKey, "idem-replay", form)
		again := accepted(t, r)
		if d := cmp.Diff(requestFields(first), requestFields(again)); d != "" {
			t.Errorf("replay is another job (-first +replay):\n%s", d)
		}
		done := waitJob(t, b, testKey, first.ID)
		if done.Status != "succeeded" {
			t.Fatalf("job ended %s", done.Status)
		}
		// After the end, the key still names the same job.
		late := accepted(t, post(t, testKey, "idem-replay", form))
		if late.ID != first.ID {
			t.Errorf("replay after the end: job %s, want %s", late.ID, first.ID)
		}
		if n := submitsFor(fake, "idem replay"); n != 1 {
			t.Errorf("upstream submits = %d, want 1", n)
		}
	})

	t.Run("same key other body is 422", func(t *testing.T) {
		before := jobCount(t, testKey)
		first := accepted(t, post(t, testKey, "idem-mismatch", asyncEdit(jobModel, "idem mismatch one", img)))
		r := post(t, testKey, "idem-mismatch", asyncEdit(jobModel, "idem mismatch two", img))
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("status %d, want 422: %s", r.status, r.body)
		}
		checkErrorCode(t, r, http.StatusUnprocessableEntity, "invalid_request_error", "idempotency_key_reused")
		waitJob(t, b, testKey, first.ID)
		if n := submitsFor(fake, "idem mismatch two"); n != 0 {
			t.Errorf("the refused body reached the upstream %d times", n)
		}
		if got := jobCount(t, testKey); got != before+1 {
			t.Errorf("jobs: %d, want %d (one for the first body, none for the refused one)", got, before+1)
		}
	})

	t.Run("key length", func(t *testing.T) {
		before := jobCount(t, testKey)
		r := post(t, testKey, idempotencyTestKey("long", 256), asyncEdit(jobModel, "idem 256", img))
		if r.status != http.StatusBadRequest {
			t.Fatalf("256-character key: status %d, want 400: %s", r.status, r.body)
		}
		checkErrorCode(t, r, http.StatusBadRequest, "invalid_request_error", "invalid_idempotency_key")
		if got := jobCount(t, testKey); got != before {
			t.Errorf("a refused key created a job: %d jobs, want %d", got, before)
		}
		o := accepted(t, post(t, testKey, idempotencyTestKey("long", 255), asyncEdit(jobModel, "idem 255", img)))
		waitJob(t, b, testKey, o.ID)
	})

	t.Run("a refused request saves nothing", func(t *testing.T) {
		bad := newEditForm(img, [][2]string{{"model", jobModel}, {"prompt", "idem corrected"}, {"async", "true"}, {"n", "0"}})
		r := post(t, testKey, "idem-corrected", bad)
		if r.status != http.StatusBadRequest {
			t.Fatalf("n=0: status %d, want 400: %s", r.status, r.body)
		}
		o := accepted(t, post(t, testKey, "idem-corrected", asyncEdit(jobModel, "idem corrected", img)))
		if done := waitJob(t, b, testKey, o.ID); done.Status != "succeeded" {
			t.Errorf("corrected job ended %s", done.Status)
		}
	})

	t.Run("keys are per API key", func(t *testing.T) {
		form := asyncEdit(jobModel, "idem two keys", img)
		mine := accepted(t, post(t, testKey, "idem-shared", form))
		theirs := accepted(t, post(t, otherKey, "idem-shared", form))
		if mine.ID == theirs.ID {
			t.Fatalf("two API keys share job %s", mine.ID)
		}
		// Each key sees only its own job.
		r, err := getJSON(testCtx(t), b.raw, b.base, "/v1/images/jobs/"+theirs.ID, testKey)
		if err != nil {
			t.Fatal(err)
		}
		checkErrorCode(t, r, http.StatusNotFound, "", "job_not_found")
		waitJob(t, b, testKey, mine.ID)
		waitJob(t, b, otherKey, theirs.ID)
		if n := submitsFor(fake, "idem two keys"); n != 2 {
			t.Errorf("upstream submits = %d, want 2", n)
		}
	})

	t.Run("concurrent requests with one key make one job", func(t *testing.T) {
		form := asyncEdit(jobModel, "idem concurrent", img)
		const clients = 8
		answers := make([]apiCall, clients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := send(testCtx(t), b.raw, b.base, "/v1/images/edits", testKey, "idem-concurrent", form)
				if err != nil {
					t.Error(err)
				}
				answers[i] = r
			}()
		}
		close(start)
		wg.Wait()
		ids := map[string]bool{}
		for _, r := range answers {
			switch r.status {
			case http.StatusAccepted:
				var o jobObject
				if err := json.Unmarshal(r.body, &o); err != nil {
					t.Fatal(err)
				}
				ids[o.ID] = true
			case http.StatusConflict:
			default:
				t.Errorf("status %d, want 202 or 409: %s", r.status, r.body)
			}
		}
		if len(ids) != 1 {
			t.Fatalf("%d distinct jobs for one key, want 1", len(ids))
		}
		for id := range ids {
			waitJob(t, b, testKey, id)
		}
		if n := submitsFor(fake, "idem concurrent"); n != 1 {
			t.Errorf("upstream submits = %d, want 1", n)
		}
	})

	t.Run("Prefer respond-async", func(t *testing.T) {
		form := newEditForm(img, [][2]string{{"model", jobModel}, {"prompt", "idem prefer"}})
		req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, b.base+"/v1/images/edits", strings.NewReader(string(form.body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", form.contentType)
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Prefer", "respond-async")
		r, err := roundTrip(b.raw, req)
		if err != nil {
			t.Fatal(err)
		}
		o := accepted(t, r)
		if got := r.header.Get("Preference-Applied"); got != "respond-async" {
			t.Errorf("Preference-Applied = %q", got)
		}
		waitJob(t, b, testKey, o.ID)
	})

	t.Run("unknown job is 404", func(t *testing.T) {
		r, err := getJSON(testCtx(t), b.raw, b.base, "/v1/images/jobs/img_"+strings.Repeat("a", 26), testKey)
		if err != nil {
			t.Fatal(err)
		}
		checkErrorCode(t, r, http.StatusNotFound, "", "job_not_found")
	})

	t.Run("sync replay returns the same result", func(t *testing.T) {
		form := newEditForm(img, [][2]string{{"model", jobModel}, {"prompt", "idem sync"}, {"response_format", "url"}})
		urls := make([]string, 2)
		jobIDs := make([]string, 2)
		for i := range urls {
			r := post(t, testKey, "idem-sync", form)
			if r.status != http.StatusOK {
				t.Fatalf("sync edit %d: status %d: %s", i+1, r.status, r.body)
			}
			jobIDs[i] = r.header.Get("X-Easel-Job-Id")
			var out struct {
				Data []struct {
					URL string `json:"url"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.body, &out); err != nil || len(out.Data) != 1 {
				t.Fatalf("sync edit %d: %s (%v)", i+1, r.body, err)
			}
			urls[i] = out.Data[0].URL
		}
		if jobIDs[0] != jobIDs[1] {
			t.Errorf("replayed sync edit ran job %s, the first ran %s", jobIDs[1], jobIDs[0])
		}
		if blobKeyOf(urls[0]) != blobKeyOf(urls[1]) {
			t.Errorf("replayed sync edit has another image: %s vs %s", urls[0], urls[1])
		}
		if n := submitsFor(fake, "idem sync"); n != 1 {
			t.Errorf("upstream submits = %d, want 1", n)
		}
	})
}

// checkErrorCode asserts an OpenAI error envelope with the given status,
// type ("" for any) and code; param is not part of these contracts.
func checkErrorCode(t *testing.T, r apiCall, status int, typ, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
		return
	}
	var e envelope
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" {
		t.Errorf("not an error envelope (%v): %s", err, r.body)
		return
	}
	if typ != "" && e.Error.Type != typ {
		t.Errorf("error type %q, want %q", e.Error.Type, typ)
	}
	if got := nullableString(e.Error.Code); got != code {
		t.Errorf("error code %s, want %q", e.Error.Code, code)
	}
}
