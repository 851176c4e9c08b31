// Package jobapitest is a faithful in-process fake of the reference job API
// (the aiimagetoimage service described in the project's jobapi-protocol
// spec): a multipart submit answered with a body-level code and a job id, a
// status URL that reports "processing" for a configurable time and then
// "completed" with result URLs, and the result files themselves, real PNGs
// whose size follows the requested aspect ratio.
//
// On demand it misbehaves the way the real service and the edge in front of
// it do: a body-level code 429, an HTTP 429 HTML page, HTTP 500, malformed
// JSON, jobs that never finish or fail, result URLs that 404 or 403, and slow
// answers. It counts every request per route and per job so tests can assert
// what a job cost. It listens on loopback only and keeps its journals
// bounded, so it can also serve a demo.
package jobapitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // input images may be GIFs
	_ "image/jpeg" // input images may be JPEGs
	"image/png"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	_ "golang.org/x/image/webp" // input images may be WebPs
)

// Paths of the fake's routes, as on the real service.
const (
	SubmitPath = "/api/img2img/image-generate/image2image"
	PollPath   = "/api/result/get"
	filesPath  = "/files/"
)

// Route names a group of the fake's endpoints, for faults and counters.
type Route string

// The fake's routes.
const (
	RouteSubmit Route = "submit"
	RoutePoll   Route = "poll"
	RouteResult Route = "result"
)

// FaultKind says how a request misbehaves.
type FaultKind int

const (
	// BodyCode429 answers HTTP 200 with {"code":429,"message":...}, the
	// service's own daily-allowance refusal.
	BodyCode429 FaultKind = iota + 1
	// HTTP429HTML answers a real HTTP 429 with an HTML page, as an edge
	// proxy does ("error code: 1015").
	HTTP429HTML
	// HTTP500 answers HTTP 500 with a plain-text body.
	HTTP500
	// MalformedJSON answers HTTP 200 application/json with a truncated
	// JSON document.
	MalformedJSON
	// NotFound answers HTTP 404.
	NotFound
	// Forbidden answers HTTP 403, as an expired signed URL does.
	Forbidden
	// SlowResponse waits Fault.Delay (or until the client gives up)
	// before answering normally.
	SlowResponse
	// NotImage serves an HTML page with status 200 at a result URL.
	NotImage
)

// Fault is one injected misbehaviour.
type Fault struct {
	// Route is where the fault applies.
	Route Route
	// Kind is what happens.
	Kind FaultKind
	// Times is how many matching requests it hits; 0 means all of them.
	Times int
	// RetryAfter, when set, is sent as the Retry-After header of 429
	// answers.
	RetryAfter string
	// Delay is the wait of a SlowResponse.
	Delay time.Duration
}

// Options configures the fake. The zero value is a service whose jobs take
// two seconds.
type Options struct {
	// JobDuration is how long a job reports "processing" after its submit
	// (default 2s).
	JobDuration time.Duration
	// Progress adds result.progress (0..100) to "processing" answers.
	Progress bool
	// Now is the fake's clock (default time.Now). Tests share a virtual
	// clock with the client to run long schedules instantly.
	Now func() time.Time
	// Models are the accepted model_type values (default nano_banana and
	// standard).
	Models []string
	// AspectRatios are the accepted aspect_ratio values (default the
	// service's eight).
	AspectRatios []string
	// BaseSide is the long side in pixels of results whose ratio is given
	// (default 256; the fake's PNGs are real but small).
	BaseSide int
	// MaxUploadBytes caps one submit body (default 20 MiB); beyond it the
	// submit gets a body-level 413 code.
	MaxUploadBytes int64
	// NeverFinish keeps every job "processing" forever.
	NeverFinish bool
	// FailMessage, when set, makes every job end as "failed" with this
	// message instead of "completed".
	FailMessage string
	// JobIDPrefix starts every job id (default "job_"); tests put
	// characters such as '&', '/' and ' ' here to check URL encoding.
	JobIDPrefix string
	// Faults are injected from the start; Inject adds more later.
	Faults []Fault
}

// SubmitRecord is one recorded submit that reached the form parser.
type SubmitRecord struct {
	// Fields are the text fields of the form.
	Fields map[string]string
	// ImageName, ImageType and ImageBytes describe the image part (empty
	// when absent); ImageType is the part's declared Content-Type.
	ImageName  string
	ImageType  string
	ImageBytes int
	// Header is a copy of the request headers.
	Header http.Header
	// JobID is the id returned, empty when the submit was refused.
	JobID string
}

// RequestRecord is one request as the fake saw it.
type RequestRecord struct {
	Route    Route
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
}

// maxJournal bounds each journal so a long-running demo does not grow.
const maxJournal = 1000

// Server is a running fake on 127.0.0.1.
type Server struct {
	// URL is the base URL, without a trailing slash.
	URL string

	opts   Options
	srv    *http.Server
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	faults   []*faultState
	jobs     map[string]*job
	order    []string
	files    map[string]*file
	counts   map[Route]int
	submits  []SubmitRecord
	requests []RequestRecord
	nextFile int
}

type faultState struct {
	Fault
	used int
}

type job struct {
	id       string
	created  time.Time
	model    string
	ratio    string
	w, h     int
	polls    int
	never    bool
	failMsg  string
	resultID string
}

type file struct {
	w, h int
	// mu keeps concurrent fetches of one file from encoding it twice.
	mu  sync.Mutex
	png []byte
}

// New starts a fake on 127.0.0.1 with a random port. It panics if the
// loopback listener cannot be opened, an environment failure no caller can
// handle better.
func New(opts Options) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("jobapitest: listening on loopback: %v", err))
	}
	if opts.JobDuration == 0 {
		opts.JobDuration = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.Models) == 0 {
		opts.Models = []string{"nano_banana", "standard"}
	}
	if len(opts.AspectRatios) == 0 {
		opts.AspectRatios = []string{"match_input_image", "1:1", "3:2", "2:3", "9:16", "16:9", "3:4", "4:3"}
	}
	if opts.BaseSide <= 0 {
		opts.BaseSide = 256
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = 20 << 20
	}
	if opts.JobIDPrefix == "" {
		opts.JobIDPrefix = "job_"
	}
	s := &Server{
		URL:    "http://" + ln.Addr().String(),
		opts:   opts,
		ln:     ln,
		jobs:   map[string]*job{},
		files:  map[string]*file{},
		counts: map[Route]int{},
	}
	for _, f := range opts.Faults {
		s.faults = append(s.faults, &faultState{Fault: f})
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+SubmitPath, s.handleSubmit)
	mux.HandleFunc("GET "+PollPath, s.handlePoll)
	mux.HandleFunc("GET "+filesPath+"{name}", s.handleFile)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s
}

// Close stops the server, ending slow answers at once.
func (s *Server) Close() {
	s.cancel()
	_ = s.srv.Close()
}

// SubmitURL is the fake's submit URL.
func (s *Server) SubmitURL() string { return s.URL + SubmitPath }

// PollURLTemplate is the fake's status URL with the {job_id} placeholder.
func (s *Server) PollURLTemplate() string { return s.URL + PollPath + "?job_id={job_id}" }

// Inject adds a fault for later requests.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetNeverFinish switches NeverFinish for jobs submitted from now on.
func (s *Server) SetNeverFinish(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.NeverFinish = v
}

// SetFailMessage switches FailMessage for jobs submitted from now on.
func (s *Server) SetFailMessage(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.FailMessage = msg
}

// Submits is the number of requests to the submit route, refused or not.
func (s *Server) Submits() int { return s.count(RouteSubmit) }

// TotalPolls is the number of requests to the status route.
func (s *Server) TotalPolls() int { return s.count(RoutePoll) }

// Fetches is the number of requests to result URLs.
func (s *Server) Fetches() int { return s.count(RouteResult) }

func (s *Server) count(r Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[r]
}

// Polls is the number of status requests that named jobID and reached the
// job (faulted requests are not counted here, only in TotalPolls).
func (s *Server) Polls(jobID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[jobID]; ok {
		return j.polls
	}
	return 0
}

// JobIDs lists the ids of accepted jobs, oldest first.
func (s *Server) JobIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// SubmitLog returns the recorded submits, oldest first.
func (s *Server) SubmitLog() []SubmitRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SubmitRecord(nil), s.submits...)
}

// Requests returns the recorded requests of every route, oldest first.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestRecord(nil), s.requests...)
}

// enter counts and records a request and returns the fault to apply, if
// any.
func (s *Server) enter(route Route, r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[route]++
	s.requests = appendBounded(s.requests, RequestRecord{Route: route, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
	for _, f := range s.faults {
		if f.Route != route || (f.Times > 0 && f.used >= f.Times) {
			continue
		}
		f.used++
		c := f.Fault
		return &c
	}
	return nil
}

func appendBounded[T any](list []T, v T) []T {
	if len(list) >= maxJournal {
		list = append(list[:0], list[1:]...)
	}
	return append(list, v)
}

// applyFault writes the fault's answer and reports true, or reports false
// when the request must be served normally (after a SlowResponse).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f == nil {
		return false
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch f.Kind {
	case BodyCode429:
		writeJSON(w, http.StatusOK, map[string]any{"code": 429, "message": "You have reached the daily limit for your IP address. Please try again tomorrow."})
	case HTTP429HTML:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>Access denied | api used Cloudflare to restrict access</title>"+
			"<style>body{font-family:sans-serif}</style></head><body><h1>error code: 1015</h1>"+
			"<p>You are being rate limited.</p></body></html>")
	case HTTP500:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "Internal Server Error")
	case MalformedJSON:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"code": 200, "result": {"job_id": "job_trunc`)
	case NotFound:
		http.Error(w, "404 page not found", http.StatusNotFound)
	case Forbidden:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
	case NotImage:
		w.Header().Set("Content-Type", "image/png") // a lying type
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<html><body>Not an image</body></html>")
	case SlowResponse:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-r.Context().Done():
			return true
		}
	default:
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// refuse writes the service's body-level error: HTTP 200, non-200 code.
func refuse(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, http.StatusOK, map[string]any{"code": code, "message": msg})
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if s.applyFault(w, r, s.enter(RouteSubmit, r)) {
		return
	}
	rec := SubmitRecord{Fields: map[string]string{}, Header: r.Header.Clone()}
	defer func() {
		s.mu.Lock()
		s.submits = appendBounded(s.submits, rec)
		s.mu.Unlock()
	}()
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		refuse(w, 400, "request must be multipart/form-data")
		return
	}
	var img []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			refuse(w, 413, "upload too large or malformed")
			return
		}
		data, err := io.ReadAll(part)
		if err != nil {
			refuse(w, 413, "upload too large or malformed")
			return
		}
		name := part.FormName()
		if name == "image" && part.FileName() != "" {
			img = data
			rec.ImageName, rec.ImageType, rec.ImageBytes = part.FileName(), part.Header.Get("Content-Type"), len(data)
			continue
		}
		rec.Fields[name] = string(data)
	}
	if img == nil {
		refuse(w, 400, "image is required")
		return
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		refuse(w, 400, "image could not be read")
		return
	}
	model := rec.Fields["model_type"]
	if !contains(s.opts.Models, model) {
		refuse(w, 400, fmt.Sprintf("invalid model_type %q", model))
		return
	}
	ratio := rec.Fields["aspect_ratio"]
	if ratio == "" {
		ratio = "match_input_image"
	}
	if !contains(s.opts.AspectRatios, ratio) {
		refuse(w, 400, fmt.Sprintf("invalid aspect_ratio %q", ratio))
		return
	}
	rw, rh := resultSize(ratio, cfg.Width, cfg.Height, s.opts.BaseSide)

	s.mu.Lock()
	j := &job{
		id:      s.opts.JobIDPrefix + randomHex(6),
		created: s.opts.Now(),
		model:   model,
		ratio:   ratio,
		w:       rw,
		h:       rh,
		never:   s.opts.NeverFinish,
		failMsg: s.opts.FailMessage,
	}
	s.jobs[j.id] = j
	s.order = appendBounded(s.order, j.id)
	s.mu.Unlock()
	rec.JobID = j.id
	writeJSON(w, http.StatusOK, map[string]any{"code": 200, "message": "success", "result": map[string]any{"job_id": j.id}})
}

// resultSize follows the ratio: the long side is base, or for
// match_input_image the input's own size, scaled down to at most 2048 on
// the long side.
func resultSize(ratio string, inW, inH, base int) (int, int) {
	if ratio == "match_input_image" {
		const limit = 2048
		if m := max(inW, inH); m > limit {
			return max(inW*limit/m, 1), max(inH*limit/m, 1)
		}
		return inW, inH
	}
	var a, b int
	if _, err := fmt.Sscanf(ratio, "%d:%d", &a, &b); err != nil || a <= 0 || b <= 0 {
		return base, base
	}
	if a >= b {
		return base, max(base*b/a, 1)
	}
	return max(base*a/b, 1), base
}

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	if s.applyFault(w, r, s.enter(RoutePoll, r)) {
		return
	}
	id := r.URL.Query().Get("job_id")
	s.mu.Lock()
	j, ok := s.jobs[id]
	if !ok {
		s.mu.Unlock()
		refuse(w, 404, "job not found")
		return
	}
	j.polls++
	elapsed := s.opts.Now().Sub(j.created)
	d := s.opts.JobDuration
	var answer map[string]any
	switch {
	case j.never || elapsed < d:
		res := map[string]any{"job_id": j.id, "status": "processing"}
		if s.opts.Progress {
			pct := 99
			if !j.never {
				pct = min(int(100*elapsed/d), 99)
			}
			res["progress"] = pct
		}
		answer = map[string]any{"code": 200, "message": "success", "result": res}
	case j.failMsg != "":
		answer = map[string]any{"code": 200, "message": j.failMsg, "result": map[string]any{"job_id": j.id, "status": "failed"}}
	default:
		if j.resultID == "" {
			s.nextFile++
			j.resultID = fmt.Sprintf("r%d", s.nextFile)
			s.files[j.resultID] = &file{w: j.w, h: j.h}
		}
		answer = map[string]any{"code": 200, "message": "success", "result": map[string]any{
			"job_id": j.id, "status": "completed", "image_url": []string{s.URL + filesPath + j.resultID + ".png"},
		}}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, answer)
}

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	if s.applyFault(w, r, s.enter(RouteResult, r)) {
		return
	}
	name := strings.TrimSuffix(r.PathValue("name"), ".png")
	s.mu.Lock()
	f, ok := s.files[name]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	data, err := f.encode()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(data)
}

// encode renders the file's PNG once and caches it.
func (f *file) encode() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.png != nil {
		return f.png, nil
	}
	img := image.NewNRGBA(image.Rect(0, 0, f.w, f.h))
	for y := 0; y < f.h; y++ {
		for x := 0; x < f.w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / max(f.w-1, 1)), G: uint8(y * 255 / max(f.h-1, 1)), B: 128, A: 255})
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding result PNG: %w", err)
	}
	f.png = buf.Bytes()
	return f.png, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
