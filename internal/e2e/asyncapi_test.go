package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
)

// jobObject is the async job as the API renders it (notes: the job
// object of the async API contract). Pointers tell absent from zero.
type jobObject struct {
	ID         string       `json:"id"`
	Object     string       `json:"object"`
	Status     string       `json:"status"`
	Model      string       `json:"model"`
	Backend    string       `json:"backend"`
	Kind       string       `json:"kind"`
	Prompt     string       `json:"prompt"`
	N          int          `json:"n"`
	Size       string       `json:"size"`
	CreatedAt  int64        `json:"created_at"`
	StartedAt  *int64       `json:"started_at"`
	FinishedAt *int64       `json:"finished_at"`
	Progress   *jobProgress `json:"progress"`
	Data       []jobImage   `json:"data"`
	Error      *struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	WebhookURL string `json:"webhook_url"`
	Links      struct {
		Self   string `json:"self"`
		Events string `json:"events"`
		Cancel string `json:"cancel"`
	} `json:"links"`
}

type jobProgress struct {
	Fraction      float64 `json:"fraction"`
	ImagesDone    int     `json:"images_done"`
	QueuePosition *int    `json:"queue_position"`
}

type jobImage struct {
	URL     string `json:"url"`
	B64JSON string `json:"b64_json"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	MIME    string `json:"mime"`
}

// jobIDPattern is the contract's id shape: img_ and 26 base32 characters
// (either case, so the test does not pin one base32 alphabet).
var jobIDPattern = regexp.MustCompile(`^img_[0-9A-Za-z]{26}$`)

// terminalStatus reports whether a job status is final.
func terminalStatus(s string) bool {
	return s == "succeeded" || s == "failed" || s == "canceled"
}

// checkAccepted asserts a 202 answer is a well-formed new async job and
// returns it.
func checkAccepted(status int, h http.Header, body []byte) (*jobObject, error) {
	if status != http.StatusAccepted {
		return nil, fmt.Errorf("status %d, want 202: %s", status, truncateBytes(body))
	}
	var j jobObject
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("202 body is not a job object: %w: %s", err, truncateBytes(body))
	}
	if !jobIDPattern.MatchString(j.ID) {
		return nil, fmt.Errorf("job id %q does not match %s", j.ID, jobIDPattern)
	}
	if j.Object != "image.job" {
		return nil, fmt.Errorf("job %s: object %q, want image.job", j.ID, j.Object)
	}
	if want := "/v1/images/jobs/" + j.ID; h.Get("Location") != want {
		return nil, fmt.Errorf("job %s: Location %q, want %q", j.ID, h.Get("Location"), want)
	}
	if j.Progress == nil {
		return nil, fmt.Errorf("job %s: no progress object", j.ID)
	}
	if j.Links.Self != "/v1/images/jobs/"+j.ID || j.Links.Events != "/v1/images/jobs/"+j.ID+"/events" {
		return nil, fmt.Errorf("job %s: links %+v", j.ID, j.Links)
	}
	return &j, nil
}

func truncateBytes(b []byte) string {
	const keep = 400
	if len(b) > keep {
		return string(b[:keep]) + "…"
	}
	return string(b)
}

// editForm is a multipart edits body built once, so a re-send carries
// exactly the same bytes (boundary included).
type editForm struct {
	body        []byte
	contentType string
}

// newEditForm builds an edits body with one PNG input and the given text
// fields, in a stable order.
func newEditForm(img []byte, fields [][2]string) editForm {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			panic(err)
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="in.png"`)
	h.Set("Content-Type", "image/png")
	pw, err := mw.CreatePart(h)
	if err != nil {
		panic(err)
	}
	_, _ = pw.Write(img)
	if err := mw.Close(); err != nil {
		panic(err)
	}
	return editForm{body: buf.Bytes(), contentType: mw.FormDataContentType()}
}

// asyncEdit is an async edits body for model with the given prompt.
func asyncEdit(model, prompt string, img []byte) editForm {
	return newEditForm(img, [][2]string{{"model", model}, {"prompt", prompt}, {"async", "true"}})
}

// apiCall is one raw HTTP exchange with easel.
type apiCall struct {
	status int
	header http.Header
	body   []byte
}

// send posts form to base+path with the API key and, when set, an
// Idempotency-Key. Transport errors are returned, not fatal, because the
// kill tests expect them.
func send(ctx context.Context, c *http.Client, base, path, apiKey, idemKey string, form editForm) (apiCall, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(form.body))
	if err != nil {
		return apiCall{}, err
	}
	req.Header.Set("Content-Type", form.contentType)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return roundTrip(c, req)
}

// getJSON GETs base+path with the API key.
func getJSON(ctx context.Context, c *http.Client, base, path, apiKey string) (apiCall, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return apiCall{}, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	return roundTrip(c, req)
}

func roundTrip(c *http.Client, req *http.Request) (apiCall, error) {
	resp, err := c.Do(req)
	if err != nil {
		return apiCall{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return apiCall{}, fmt.Errorf("reading the answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return apiCall{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// getJob reads one job.
func getJob(ctx context.Context, c *http.Client, base, apiKey, id string) (*jobObject, error) {
	r, err := getJSON(ctx, c, base, "/v1/images/jobs/"+id, apiKey)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET job %s: status %d: %s", id, r.status, truncateBytes(r.body))
	}
	var j jobObject
	if err := json.Unmarshal(r.body, &j); err != nil {
		return nil, fmt.Errorf("GET job %s: %w: %s", id, err, truncateBytes(r.body))
	}
	if j.ID != id {
		return nil, fmt.Errorf("GET job %s answered job %q", id, j.ID)
	}
	return &j, nil
}

// listJobs pages through GET /v1/images/jobs and returns every id in
// order, duplicates kept so the caller can find them.
func listJobs(ctx context.Context, c *http.Client, base, apiKey string) ([]string, error) {
	var ids []string
	cursor := ""
	for page := 0; page < 1000; page++ {
		path := "/v1/images/jobs?limit=100"
		if cursor != "" {
			path += "&after=" + cursor
		}
		r, err := getJSON(ctx, c, base, path, apiKey)
		if err != nil {
			return nil, err
		}
		if r.status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d: %s", path, r.status, truncateBytes(r.body))
		}
		var l struct {
			Object     string      `json:"object"`
			Data       []jobObject `json:"data"`
			HasMore    bool        `json:"has_more"`
			NextCursor string      `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &l); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		if l.Object != "list" {
			return nil, fmt.Errorf("GET %s: object %q, want list", path, l.Object)
		}
		for _, j := range l.Data {
			ids = append(ids, j.ID)
		}
		if !l.HasMore {
			return ids, nil
		}
		if l.NextCursor == "" || l.NextCursor == cursor {
			return nil, fmt.Errorf("GET %s: has_more with next_cursor %q", path, l.NextCursor)
		}
		cursor = l.NextCursor
	}
	return nil, errors.New("listing jobs: more than 1000 pages")
}

// sseEvent is one server-sent event.
type sseEvent struct {
	ID    string
	Event string
	Data  []byte
}

// eventData is what the contract puts in every event's data.
type eventData struct {
	Type  string     `json:"type"`
	JobID string     `json:"job_id"`
	Time  string     `json:"time"`
	Job   *jobObject `json:"job"`
}

// readSSE parses r and calls fn for each event until fn returns false, the
// stream ends (nil) or reading fails.
func readSSE(r io.Reader, fn func(sseEvent) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	var ev sseEvent
	var data [][]byte
	have := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if have {
				ev.Data = bytes.Join(data, []byte("\n"))
				if !fn(ev) {
					return nil
				}
			}
			ev, data, have = sseEvent{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			ev.ID, have = value, true
		case "event":
			ev.Event, have = value, true
		case "data":
			data, have = append(data, []byte(value)), true
		}
	}
	return sc.Err()
}

// idempotencyTestKey is a key of n characters, distinct per tag.
func idempotencyTestKey(tag string, n int) string {
	k := tag + "-" + strings.Repeat("k", n)
	return k[:n]
}

// requireAPI fails the test at once when the async API is not served:
// every later assertion would fail for the same reason.
func requireAPI(t *testing.T, r apiCall) {
	t.Helper()
	if r.status == http.StatusNotFound || r.status == http.StatusMethodNotAllowed {
		t.Fatalf("the async job API is not served: status %d: %s", r.status, truncateBytes(r.body))
	}
}
