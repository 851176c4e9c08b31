package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/jobs"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/server"
	"github.com/easelgw/easel/internal/store"
)

// Jobs is what the async and job endpoints need (*jobs.Manager).
type Jobs interface {
	ClaimSync(ctx context.Context, keyID, idemKey, requestHash string) (string, bool, error)
	Wait(ctx context.Context, id, keyID string) (*jobs.View, error)
	Submit(ctx context.Context, req *gen.Request, sub jobs.Submission) (*store.JobRecord, bool, error)
	Get(ctx context.Context, id, keyID string) (*jobs.View, error)
	List(ctx context.Context, keyID, cursor string, limit int) ([]*jobs.View, string, error)
	Cancel(ctx context.Context, id, keyID string) (*jobs.View, error)
	Follow(ctx context.Context, id, keyID string, emit func(provider.Event) error) (*jobs.View, error)
	// Epoch names the server run event ids belong to.
	Epoch() string
}

// errIdempotencyReused answers a key reused with another request.
var errIdempotencyReused = &apiError{Status: http.StatusUnprocessableEntity, Type: "invalid_request_error", Code: "idempotency_key_reused",
	Message: "This Idempotency-Key was already used with a different request; use a new key for a new request."}

// maxWebhookURL bounds a webhook_url.
const maxWebhookURL = 2048

// asyncFields are the extension fields of every job-starting request.
type asyncFields struct {
	// Async asks for a 202 and a job to follow.
	Async bool
	// WebhookURL is told when an async job ends.
	WebhookURL string
}

// decode reads async and webhook_url from a request body.
func (f *asyncFields) decode(o object) *apiError {
	var e *apiError
	if f.Async, _, e = o.boolean("async", "async"); e != nil {
		return e
	}
	f.WebhookURL, e = webhookParam(o)
	return e
}

// webhookParam reads and checks the webhook_url extension field. Where it
// may point (private networks, ports) is checked at delivery, by the same
// guard as image URLs.
func webhookParam(o object) (string, *apiError) {
	u, ok, e := o.str("webhook_url", "webhook_url")
	if e != nil || !ok {
		return "", e
	}
	if err := checkWebhookURL(u); err != nil {
		return "", badRequest("webhook_url", "invalid_value", "'webhook_url' "+err.Error()+".")
	}
	return u, nil
}

func checkWebhookURL(raw string) error {
	if len(raw) > maxWebhookURL {
		return errors.New("is longer than " + strconv.Itoa(maxWebhookURL) + " characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return errors.New("must be an absolute http(s) URL without credentials or fragment")
	}
	return nil
}

// wantsAsync reports whether a request asks for a 202: the body's "async"
// or the RFC 7240 preference respond-async; prefer says the header did.
func wantsAsync(r *http.Request, bodyAsync bool) (async, prefer bool) {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			token, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(token), "respond-async") {
				return true, true
			}
		}
	}
	return bodyAsync, false
}

// idempotencyKey reads the Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, *apiError) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	k := vals[0]
	if len(vals) > 1 || k == "" || len(k) > jobs.MaxIdempotencyKeyLen {
		return "", &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_idempotency_key",
			Message: "Idempotency-Key must be sent once, with 1 to " + strconv.Itoa(jobs.MaxIdempotencyKeyLen) + " characters."}
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_idempotency_key",
				Message: "Idempotency-Key must be printable ASCII."}
		}
	}
	return k, nil
}

type asyncParams struct {
	prefer         bool
	responseFormat string
	webhookURL     string
	// release ends the job's admission (limits).
	release func(int)
}

// submitAsync queues req and answers 202 with the job.
func (a *API) submitAsync(w http.ResponseWriter, r *http.Request, req *gen.Request, p asyncParams) {
	if a.jobs == nil {
		a.writeError(w, r, badRequest("async", "unsupported_value", "Async jobs are not enabled on this server."))
		return
	}
	accepted := false
	defer func() {
		if !accepted && p.release != nil {
			p.release(0)
		}
	}()
	idem, e := idempotencyKey(r)
	if e != nil {
		a.writeError(w, r, e)
		return
	}
	ctx := r.Context()
	if p.webhookURL == "" {
		if id, ok := keys.FromContext(ctx); ok {
			p.webhookURL = id.WebhookURL
		}
	}
	sub := jobs.Submission{
		KeyID:          server.KeyID(ctx),
		IdempotencyKey: idem,
		WebhookURL:     p.webhookURL,
		ResponseFormat: p.responseFormat,
		BaseURL:        a.baseURL(r),
		Endpoint:       r.URL.Path,
	}
	sub.RequestHash = jobs.RequestHash(req, sub)
	sub.Release = p.release
	rec, replayed, err := a.jobs.Submit(ctx, req, sub)
	if err != nil {
		if errors.Is(err, jobs.ErrIdempotencyMismatch) {
			err = errIdempotencyReused
		}
		a.writeError(w, r, err)
		return
	}
	// The job now owns its admission; a replay's own reservation is
	// given back, since it runs nothing new.
	accepted = !replayed
	// The 202 shows the job as it was accepted, whatever a fast worker
	// has done since, so a replay answers exactly what the first request
	// got; the job's links tell its current state. Submit's record is all
	// that takes: no second read.
	v := acceptedView(jobs.RecordView(rec))
	h := w.Header()
	h.Set("Location", jobPath(rec.ID))
	h.Set("X-Easel-Job-Id", rec.ID)
	if p.prefer {
		h.Set("Preference-Applied", "respond-async")
	}
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, a.jobObject(v, a.baseURL(r), "url"))
}

func jobPath(id string) string { return "/v1/images/jobs/" + id }

// acceptedView is a job as it stood when it was accepted.
func acceptedView(v *jobs.View) *jobs.View {
	rec := *v.Record
	rec.Status = store.StatusQueued
	rec.Backend = ""
	rec.Started, rec.Finished = time.Time{}, time.Time{}
	rec.Images, rec.Error, rec.UpstreamIDs = nil, nil, nil
	rec.Width, rec.Height = v.Request.Width, v.Request.Height
	return &jobs.View{Record: &rec, Request: v.Request}
}

// jobObject is a job as the API shows it.
type jobObject struct {
	ID             string        `json:"id"`
	Object         string        `json:"object"`
	Status         string        `json:"status"`
	Model          string        `json:"model"`
	Backend        string        `json:"backend,omitempty"`
	Kind           string        `json:"kind"`
	Prompt         string        `json:"prompt"`
	N              int           `json:"n"`
	Size           string        `json:"size,omitempty"`
	CreatedAt      int64         `json:"created_at"`
	StartedAt      int64         `json:"started_at,omitempty"`
	FinishedAt     int64         `json:"finished_at,omitempty"`
	Progress       jobs.Progress `json:"progress"`
	Data           []jobImage    `json:"data,omitempty"`
	ResultsExpired bool          `json:"results_expired,omitempty"`
	Error          *errorDetail  `json:"error,omitempty"`
	WebhookURL     string        `json:"webhook_url,omitempty"`
	Links          jobLinks      `json:"links"`
}

type jobImage struct {
	URL     string `json:"url,omitempty"`
	B64JSON string `json:"b64_json,omitempty"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	MIME    string `json:"mime,omitempty"`
}

type errorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

type jobLinks struct {
	Self   string `json:"self"`
	Events string `json:"events"`
	Cancel string `json:"cancel"`
}

// JobObject renders a finished record as the job endpoint would, with
// result URLs on the base the job was submitted to (or the configured
// public URL); webhooks carry it.
func (a *API) JobObject(rec *store.JobRecord) any {
	v := jobs.RecordView(rec)
	base := a.publicURL
	if base == "" {
		base = v.Request.BaseURL
	}
	return a.jobObject(v, base, "url")
}

func (a *API) jobObject(v *jobs.View, base, format string) jobObject {
	rec := v.Record
	o := jobObject{
		ID:         rec.ID,
		Object:     "image.job",
		Status:     rec.Status,
		Model:      rec.Model,
		Backend:    rec.Backend,
		Kind:       string(v.Request.Kind),
		Prompt:     v.Request.Prompt,
		N:          rec.N,
		CreatedAt:  rec.Created.Unix(),
		Progress:   v.Progress,
		WebhookURL: rec.WebhookURL,
		Links:      jobLinks{Self: jobPath(rec.ID), Events: jobPath(rec.ID) + "/events", Cancel: jobPath(rec.ID) + "/cancel"},
	}
	if o.Kind == "" {
		o.Kind = string(provider.KindGenerate)
	}
	if rec.Width > 0 && rec.Height > 0 {
		o.Size = strconv.Itoa(rec.Width) + "x" + strconv.Itoa(rec.Height)
	}
	if !rec.Started.IsZero() {
		o.StartedAt = rec.Started.Unix()
	}
	if !rec.Finished.IsZero() {
		o.FinishedAt = rec.Finished.Unix()
	}
	if a.resultsTTL > 0 && !rec.Finished.IsZero() && time.Since(rec.Finished) > a.resultsTTL {
		o.ResultsExpired = len(rec.Images) > 0
	} else {
		for _, img := range rec.Images {
			if img.Key == "" {
				continue // not produced (yet)
			}
			ji := jobImage{Width: img.Width, Height: img.Height, MIME: img.MIME}
			if format != "b64_json" {
				ji.URL = a.signer.URL(base, img.Key, a.urlTTL)
			}
			o.Data = append(o.Data, ji)
		}
	}
	if rec.Error != nil && (rec.Status == store.StatusFailed || rec.Status == store.StatusCanceled) {
		e := fromProvider(recordError(rec.Error))
		o.Error = &errorDetail{Message: e.Message, Type: e.Type, Code: e.Code}
	}
	return o
}

// recordError turns a stored job error back into the provider error it
// was.
func recordError(je *store.JobError) *provider.Error {
	kind, ok := provider.ParseErrorKind(je.Kind)
	if !ok {
		kind = provider.KindUpstream
	}
	return &provider.Error{Kind: kind, Message: je.Message, RetryAfter: time.Duration(je.RetryAfterMS) * time.Millisecond}
}

// jobsError maps the job manager's lookups.
func jobsError(err error, id string) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "id", Code: "job_not_found",
			Message: "No job '" + truncate(id, 64) + "' was found."}
	}
	return err
}

// ownerFilter is the key whose jobs a caller sees: its own, or every
// key's when auth is off.
func ownerFilter(r *http.Request) string { return server.KeyID(r.Context()) }

func (a *API) handleGetJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	format := r.URL.Query().Get("response_format")
	if format != "" && format != "url" && format != "b64_json" {
		a.writeError(w, r, badRequest("response_format", "invalid_value", "'response_format' must be 'url' or 'b64_json'."))
		return
	}
	v, err := a.jobs.Get(r.Context(), id, ownerFilter(r))
	if err != nil {
		a.writeError(w, r, jobsError(err, id))
		return
	}
	o := a.jobObject(v, a.baseURL(r), format)
	if format == "b64_json" && !o.ResultsExpired {
		i := 0
		for _, img := range v.Record.Images {
			if img.Key == "" {
				continue
			}
			b64, err := a.readB64(r.Context(), gen.StoredImage{Key: img.Key, MIME: img.MIME})
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			o.Data[i].B64JSON = b64
			i++
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, o)
}

type jobList struct {
	Object     string      `json:"object"`
	Data       []jobObject `json:"data"`
	HasMore    bool        `json:"has_more"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

func (a *API) handleListJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < store.MinListLimit || n > store.MaxListLimit {
			a.writeError(w, r, badRequest("limit", "invalid_value", "'limit' must be an integer from 1 to 100."))
			return
		}
		limit = n
	}
	owner := ownerFilter(r)
	if q.Get("all") == "true" && server.IsAdmin(r.Context()) {
		owner = "" // an admin key may list every key's jobs
	}
	views, next, err := a.jobs.List(r.Context(), owner, q.Get("after"), limit)
	if errors.Is(err, store.ErrBadCursor) {
		a.writeError(w, r, badRequest("after", "invalid_value", "'after' is not a cursor this server gave out."))
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := jobList{Object: "list", Data: make([]jobObject, 0, len(views)), HasMore: next != "", NextCursor: next}
	base := a.baseURL(r)
	for _, v := range views {
		out.Data = append(out.Data, a.jobObject(v, base, "url"))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func (a *API) handleCancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := a.jobs.Cancel(r.Context(), id, ownerFilter(r))
	if err != nil {
		a.writeError(w, r, jobsError(err, id))
		return
	}
	writeJSON(w, http.StatusOK, a.jobObject(v, a.baseURL(r), "url"))
}

// jobEvent is one event of the job events stream.
type jobEvent struct {
	Type      string       `json:"type"`
	JobID     string       `json:"job_id"`
	Time      time.Time    `json:"time"`
	Index     int          `json:"index"`
	Position  int          `json:"position,omitempty"`
	QueueSize int          `json:"queue_size,omitempty"`
	Source    string       `json:"source,omitempty"`
	ETA       float64      `json:"eta,omitempty"`
	Step      *int         `json:"step,omitempty"`
	Total     int          `json:"total,omitempty"`
	Fraction  float64      `json:"fraction,omitempty"`
	Unit      string       `json:"unit,omitempty"`
	Message   string       `json:"message,omitempty"`
	Image     *jobImage    `json:"image,omitempty"`
	Error     *errorDetail `json:"error,omitempty"`
	Job       *jobObject   `json:"job,omitempty"`
}

// shutdownRetryMS is the reconnect delay event streams suggest when the
// server shuts down.
const shutdownRetryMS = 2000

type followResult struct {
	v   *jobs.View
	err error
}

func (a *API) handleJobEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	keyID := ownerFilter(r)
	// Ownership is checked before the stream starts, so an unknown job is
	// a plain 404.
	if _, err := a.jobs.Get(r.Context(), id, keyID); err != nil {
		a.writeError(w, r, jobsError(err, id))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	evs := make(chan provider.Event, 64)
	done := make(chan followResult, 1)
	go func() {
		v, err := a.jobs.Follow(ctx, id, keyID, func(ev provider.Event) error {
			select {
			case evs <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		done <- followResult{v, err}
	}()
	// Event ids are "<epoch>.<n>". A reconnecting client sends the id of
	// the last event it got; within one server run the replay is the same
	// sequence, so the events up to it are skipped. An id from another run
	// (before a restart) replays everything: that run's live progress is
	// gone, and the new sequence does not line up with it.
	epoch := a.jobs.Epoch()
	skip := 0
	if last, n, ok := strings.Cut(r.Header.Get("Last-Event-ID"), "."); ok && last == epoch {
		skip, _ = strconv.Atoi(n)
	}
	sse := startSSE(w)
	base := a.baseURL(r)
	seq := 0
	var final *provider.Event
	send := func(ev provider.Event) error {
		if terminal(ev.Type) {
			// Held until the final view is known, to carry the job.
			final = &ev
			return nil
		}
		if ev.Type == provider.EventPreview || ev.Type == provider.EventAccepted {
			return nil // previews are for the image stream; upstream ids stay internal
		}
		je := a.jobEvent(id, ev)
		if ev.Type == provider.EventImage {
			if v, err := a.jobs.Get(ctx, id, keyID); err == nil && ev.Index < len(v.Record.Images) {
				img := v.Record.Images[ev.Index]
				if img.Key != "" {
					je.Image = &jobImage{URL: a.signer.URL(base, img.Key, a.urlTTL), Width: img.Width, Height: img.Height, MIME: img.MIME}
				}
			}
		}
		seq++
		if seq <= skip {
			return nil
		}
		return writeJobEvent(sse, epoch, seq, je)
	}
	ticker := time.NewTicker(a.heartbeat)
	defer ticker.Stop()
	for {
		select {
		case ev := <-evs:
			if send(ev) != nil {
				return
			}
		case <-ticker.C:
			if sse.comment("keep-alive") != nil {
				return
			}
		case <-a.stopping:
			_ = sse.write([]byte(": server shutting down; reconnect with Last-Event-ID\nretry: " + strconv.Itoa(shutdownRetryMS) + "\n\n"))
			return
		case res := <-done:
			for {
				select {
				case ev := <-evs:
					if send(ev) != nil {
						return
					}
					continue
				default:
				}
				break
			}
			if res.err != nil {
				return // client gone or shutdown; the client reconnects
			}
			obj := a.jobObject(res.v, base, "url")
			ev := provider.Event{Time: time.Now()}
			if final != nil {
				ev = *final
			}
			switch obj.Status {
			case store.StatusSucceeded:
				ev.Type = provider.EventSucceeded
			case store.StatusCanceled:
				ev.Type = provider.EventCanceled
			default:
				ev.Type = provider.EventFailed
			}
			je := a.jobEvent(id, ev)
			je.Job = &obj
			je.Error = obj.Error
			seq++
			if seq > skip {
				_ = writeJobEvent(sse, epoch, seq, je)
			}
			return
		}
	}
}

func (a *API) jobEvent(id string, ev provider.Event) jobEvent {
	je := jobEvent{
		Type: string(ev.Type), JobID: id, Time: ev.Time.UTC(), Index: ev.Index,
		Position: ev.Position, QueueSize: ev.QueueSize, Source: ev.Source, ETA: ev.ETA,
		Total: ev.Total, Fraction: ev.Fraction, Unit: ev.Unit, Message: ev.Message,
	}
	if ev.Type == provider.EventProgress && ev.Total > 0 {
		// Step 0 of n is a real report (upstreams count from 0).
		step := ev.Step
		je.Step = &step
	}
	return je
}

func writeJobEvent(sse *sseWriter, epoch string, seq int, je jobEvent) error {
	data, err := json.Marshal(je)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(data)+64)
	buf = append(buf, "id: "...)
	buf = append(buf, epoch...)
	buf = append(buf, '.')
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, "\nevent: "...)
	buf = append(buf, je.Type...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	return sse.write(buf)
}

// statusResponse is the reference script's status shape.
type statusResponse struct {
	JobID     string   `json:"job_id"`
	Status    string   `json:"status"`
	Progress  int      `json:"progress"`
	ImageURL  string   `json:"image_url,omitempty"`
	ImageURLs []string `json:"image_urls,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// handleQueryStatus is GET /v1/query/status?job_id=..., for clients of the
// reference script.
func (a *API) handleQueryStatus(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("job_id")
	if id == "" {
		a.writeError(w, r, badRequest("job_id", "missing_required_parameter", "'job_id' is required."))
		return
	}
	v, err := a.jobs.Get(r.Context(), id, ownerFilter(r))
	if err != nil {
		a.writeError(w, r, jobsError(err, id))
		return
	}
	o := a.jobObject(v, a.baseURL(r), "url")
	out := statusResponse{JobID: id, Progress: int(math.Round(o.Progress.Fraction * 100))}
	switch o.Status {
	case store.StatusQueued:
		out.Status = "pending"
	case store.StatusRunning:
		out.Status = "processing"
	case store.StatusSucceeded:
		out.Status, out.Progress = "completed", 100
	default:
		out.Status = o.Status
	}
	for _, d := range o.Data {
		out.ImageURLs = append(out.ImageURLs, d.URL)
	}
	if len(out.ImageURLs) > 0 {
		out.ImageURL = out.ImageURLs[0]
	}
	if o.Error != nil {
		out.Error = o.Error.Message
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
