package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// secondKey is a second environment key: another owner.
const secondKey = "e2e-Other-P4sQ8wX2nV7cR5tY"

func twoKeys() map[string]string {
	return map[string]string{"EASEL_API_KEYS": testKey + "," + secondKey}
}

// submitAsyncGen posts an async generation and returns the accepted job.
func submitAsyncGen(t *testing.T, b *bundle, key, prompt string) jobObject {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": modelID, "prompt": prompt, "async": true, "size": "512x512"})
	resp, data := b.do(t, http.MethodPost, "/v1/images/generations", key, body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("async submit: %d %s", resp.StatusCode, data)
	}
	var o jobObject
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/images/jobs/"+o.ID || o.Status != "queued" || o.Links.Events != loc+"/events" {
		t.Fatalf("accepted: Location %q, job %+v", loc, o)
	}
	return o
}

// pollJob waits until a job is terminal.
func pollJob(t *testing.T, b *bundle, key, id string) jobObject {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for {
		resp, data := b.do(t, http.MethodGet, "/v1/images/jobs/"+id, key, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("get job: %d %s", resp.StatusCode, data)
		}
		var o jobObject
		if err := json.Unmarshal(data, &o); err != nil {
			t.Fatal(err)
		}
		if terminalStatus(o.Status) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, o.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJobsAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{env: twoKeys()})

	// Prefer: respond-async works without the body field.
	resp, data := b.do(t, http.MethodPost, "/v1/images/generations", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
	body, _ := json.Marshal(map[string]any{"model": modelID, "prompt": "by header"})
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, b.base+"/v1/images/generations", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "wait=10, respond-async")
	hr, err := b.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusAccepted || hr.Header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("Prefer: %d, Preference-Applied %q", hr.StatusCode, hr.Header.Get("Preference-Applied"))
	}

	var ids []string
	for i := range 3 {
		ids = append(ids, submitAsyncGen(t, b, testKey, "fox "+strconv.Itoa(i)).ID)
	}
	theirs := submitAsyncGen(t, b, secondKey, "theirs")

	done := pollJob(t, b, testKey, ids[0])
	if done.Status != "succeeded" || len(done.Data) != 1 || done.Size != "512x512" || done.Prompt != "fox 0" || done.FinishedAt == nil {
		t.Fatalf("finished job = %+v", done)
	}
	// The URL is the gateway's own, signed, and serves a PNG.
	resp, data = b.do(t, http.MethodGet, done.Data[0].URL, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("result url: %d", resp.StatusCode)
	}
	if _, err := png.DecodeConfig(bytes.NewReader(data)); err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	// b64_json on request.
	resp, data = b.do(t, http.MethodGet, "/v1/images/jobs/"+ids[0]+"?response_format=b64_json", testKey, nil)
	var inl jobObject
	_ = json.Unmarshal(data, &inl)
	if resp.StatusCode != http.StatusOK || len(inl.Data) != 1 || inl.Data[0].B64JSON == "" || inl.Data[0].URL != "" {
		t.Fatalf("b64_json view: %d %s", resp.StatusCode, truncateBytes(data))
	}
	if raw, err := base64.StdEncoding.DecodeString(inl.Data[0].B64JSON); err != nil || !bytes.HasPrefix(raw, []byte("\x89PNG")) {
		t.Errorf("b64_json does not decode to a PNG")
	}

	// Ownership: the other key sees none of ours, and the reverse.
	for _, path := range []string{"/v1/images/jobs/" + ids[0], "/v1/images/jobs/" + ids[0] + "/events", "/v1/query/status?job_id=" + ids[0]} {
		if resp, data := b.do(t, http.MethodGet, path, secondKey, nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(data), "job_not_found") {
			t.Errorf("other key GET %s: %d %s", path, resp.StatusCode, data)
		}
	}
	if resp, _ := b.do(t, http.MethodPost, "/v1/images/jobs/"+ids[0]+"/cancel", secondKey, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("other key cancel: %d", resp.StatusCode)
	}

	// Listing: newest first, paginated, only our own (4: three plus the
	// Prefer one), with every page's cursor leading to the next.
	for _, id := range ids {
		pollJob(t, b, testKey, id)
	}
	var seen []string
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/v1/images/jobs?limit=3"
		if cursor != "" {
			path += "&after=" + cursor
		}
		resp, data := b.do(t, http.MethodGet, path, testKey, nil)
		var l struct {
			Object     string      `json:"object"`
			Data       []jobObject `json:"data"`
			HasMore    bool        `json:"has_more"`
			NextCursor string      `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &l) != nil || l.Object != "list" {
			t.Fatalf("list: %d %s", resp.StatusCode, data)
		}
		for _, o := range l.Data {
			seen = append(seen, o.ID)
		}
		if !l.HasMore {
			break
		}
		cursor = l.NextCursor
	}
	pos := map[string]int{}
	for i, id := range seen {
		pos[id] = i
	}
	// Newest first; jobs accepted in the same millisecond may tie, so
	// only jobs two submissions apart are compared.
	if len(seen) != 4 || len(pos) != 4 || pos[ids[2]] >= pos[ids[0]] {
		t.Errorf("listed %v, want 4 distinct jobs newest first (submitted %v)", seen, ids)
	}
	for _, id := range ids {
		if _, ok := pos[id]; !ok {
			t.Errorf("job %s missing from the list", id)
		}
	}
	for _, id := range seen {
		if id == theirs.ID {
			t.Errorf("our list shows the other key's job")
		}
	}
	if resp, _ := b.do(t, http.MethodGet, "/v1/images/jobs?after=bogus", testKey, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", resp.StatusCode)
	}

	// The reference script's status shape.
	resp, data = b.do(t, http.MethodGet, "/v1/query/status?job_id="+ids[0], testKey, nil)
	var st struct {
		JobID    string `json:"job_id"`
		Status   string `json:"status"`
		Progress int    `json:"progress"`
		ImageURL string `json:"image_url"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &st) != nil || st.Status != "completed" || st.Progress != 100 || !strings.Contains(st.ImageURL, "/v1/files/") {
		t.Errorf("query/status: %d %s", resp.StatusCode, data)
	}
}

func TestJobEventsAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{
		endpoints: gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 4, StepDelay: 20 * time.Millisecond}),
	})

	o := submitAsyncGen(t, b, testKey, "watch me")
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, b.base+o.Links.Events, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := b.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("events content type %q", ct)
	}
	var types []string
	var last eventData
	lastID := 0
	err = readSSE(resp.Body, func(ev sseEvent) bool {
		types = append(types, ev.Event)
		var d eventData
		if json.Unmarshal(ev.Data, &d) != nil {
			t.Errorf("event data not JSON: %s", ev.Data)
		}
		_, num, _ := strings.Cut(ev.ID, ".")
		if n, _ := strconv.Atoi(num); n != lastID+1 {
			t.Errorf("event id %q after %d", ev.ID, lastID)
		} else {
			lastID = n
		}
		last = d
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(types, ",")
	if !strings.HasPrefix(joined, "queued,") || !strings.Contains(joined, "progress") || !strings.HasSuffix(joined, "image,succeeded") {
		t.Errorf("event types %s", joined)
	}
	if last.Job == nil || last.Job.Status != "succeeded" || len(last.Job.Data) != 1 {
		t.Errorf("terminal event carries job %+v", last.Job)
	}

	// Cancel: a finished job stays finished.
	resp2, data := b.do(t, http.MethodPost, "/v1/images/jobs/"+o.ID+"/cancel", testKey, nil)
	var c jobObject
	if resp2.StatusCode != http.StatusOK || json.Unmarshal(data, &c) != nil || c.Status != "succeeded" {
		t.Errorf("cancel finished: %d %s", resp2.StatusCode, data)
	}
}

func TestJobCancelRunning(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{
		endpoints: gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 200, StepDelay: 50 * time.Millisecond}),
	})
	o := submitAsyncGen(t, b, testKey, "slow")
	// Wait until it runs, then cancel it.
	deadline := time.Now().Add(callTimeout)
	for {
		resp, data := b.do(t, http.MethodGet, "/v1/images/jobs/"+o.ID, testKey, nil)
		var j jobObject
		_ = json.Unmarshal(data, &j)
		if resp.StatusCode == http.StatusOK && j.Status == "running" && j.Progress != nil && j.Progress.Fraction > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never ran: %s", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	resp, data := b.do(t, http.MethodPost, "/v1/images/jobs/"+o.ID+"/cancel", testKey, nil)
	var c jobObject
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &c) != nil || c.Status != "canceled" || c.Error == nil {
		t.Fatalf("cancel running: %d %s", resp.StatusCode, data)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancel took %s", took)
	}
}

func TestAsyncRequestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	cases := []struct {
		name   string
		body   map[string]any
		header map[string]string
		status int
		code   string
	}{
		{"stream and async", map[string]any{"prompt": "p", "async": true, "stream": true}, nil, 400, "invalid_value"},
		{"bad webhook", map[string]any{"prompt": "p", "async": true, "webhook_url": "ftp://x"}, nil, 400, "invalid_value"},
		{"webhook with credentials", map[string]any{"prompt": "p", "async": true, "webhook_url": "https://u:p@h.example/"}, nil, 400, "invalid_value"},
		{"async not boolean", map[string]any{"prompt": "p", "async": "yes"}, nil, 400, ""},
		{"idempotency key too long", map[string]any{"prompt": "p", "async": true}, map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, 400, "invalid_idempotency_key"},
		{"unknown model", map[string]any{"prompt": "p", "async": true, "model": "nope"}, nil, 404, "model_not_found"},
	}
	for _, tc := range cases {
		body, _ := json.Marshal(tc.body)
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, b.base+"/v1/images/generations", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := b.raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.code != "" && e.Error.Code != tc.code) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, e.Error.Code, tc.status, tc.code)
		}
	}
	// Nothing was recorded for the refused requests.
	_, data := b.do(t, http.MethodGet, "/v1/images/jobs", testKey, nil)
	if !strings.Contains(string(data), `"data":[]`) {
		t.Errorf("refused requests left jobs: %s", data)
	}
}

// TestSyncIdempotencyWithSDK: the official SDK re-sending a generation
// with the same Idempotency-Key gets the first result; the upstream ran
// once.
func TestSyncIdempotencyWithSDK(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{})
	params := openai.ImageGenerateParams{Model: modelID, Prompt: "once only", ResponseFormat: openai.ImageGenerateParamsResponseFormatURL}
	first, err := b.client.Images.Generate(testCtx(t), params, option.WithHeader("Idempotency-Key", "sync-1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.client.Images.Generate(testCtx(t), params, option.WithHeader("Idempotency-Key", "sync-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Data) != 1 || len(again.Data) != 1 || keyOf(first.Data[0].URL) != keyOf(again.Data[0].URL) {
		t.Errorf("replay gave another image: %v vs %v", first.Data, again.Data)
	}
	if n := len(b.generateJoins()); n != 1 {
		t.Errorf("upstream ran %d times, want 1", n)
	}
	_, err = b.client.Images.Generate(testCtx(t), openai.ImageGenerateParams{Model: modelID, Prompt: "something else"}, option.WithHeader("Idempotency-Key", "sync-1"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnprocessableEntity || apiErr.Code != "idempotency_key_reused" {
		t.Errorf("reuse with another body: %v", err)
	}
}

// keyOf is the blob key of a signed result URL.
func keyOf(u string) string {
	path, _, _ := strings.Cut(u, "?")
	return path[strings.LastIndex(path, "/")+1:]
}

// TestKeyLimits: the config's default limits apply to environment keys;
// each is reached and reported with Retry-After in OpenAI's envelope.
func TestKeyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, scenario{
		endpoints: gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 40, StepDelay: 50 * time.Millisecond}),
		extraTop:  "limits:\n  concurrent_jobs: 1\n  images_per_day: 2\n",
	})
	first := submitAsyncGen(t, b, testKey, "one")
	// A second job while the first runs: concurrency.
	body, _ := json.Marshal(map[string]any{"model": modelID, "prompt": "two", "async": true})
	resp, data := b.do(t, http.MethodPost, "/v1/images/generations", testKey, body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(data), "concurrency_limit_exceeded") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second concurrent job: %d %s (Retry-After %q)", resp.StatusCode, data, resp.Header.Get("Retry-After"))
	}
	if got := pollJob(t, b, testKey, first.ID); got.Status != "succeeded" {
		t.Fatalf("first job: %s", got.Status)
	}
	// One image left of two today; asking for two is refused for the day.
	body, _ = json.Marshal(map[string]any{"model": modelID, "prompt": "three", "n": 2})
	resp, data = b.do(t, http.MethodPost, "/v1/images/generations", testKey, body)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(data), "quota_exceeded") || ra < 3600 {
		t.Fatalf("over quota: %d %s (Retry-After %q)", resp.StatusCode, data, resp.Header.Get("Retry-After"))
	}
	if n := len(b.generateJoins()); n != 1 {
		t.Errorf("refused jobs reached the upstream: %d joins", n)
	}
}
