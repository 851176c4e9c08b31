// Package gradiotest is a faithful in-process fake of a Gradio app as seen by
// API clients: /config, /info, uploads, file serving, the sse_v3 queue
// protocol (queue/join + queue/data), the simple call API, cancel and the
// heartbeat route, in the 4.x, 5.x and 6.x layouts.
//
// It serves the Gradio provider's tests, end-to-end tests and benchmarks, and
// it runs inside the real binary for the demo mode, so it listens on loopback
// only and keeps every buffer bounded or droppable.
package gradiotest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configures a fake Gradio app. The zero value is a 6.x app with no
// endpoints, a 15 s heartbeat and one event processed at a time.
type Options struct {
	// Version is the Gradio major version to imitate: 4, 5 or 6 (default 6).
	// 4 serves routes without the /gradio_api prefix and omits api_prefix,
	// titles and session_not_found; 5 adds titles; 6 adds the 6.12+ cache
	// fields on process_completed and api_visibility in place of show_api.
	Version int
	// Minor is the minor version within Version, used where behaviour
	// changed inside a major line (6.13 turned the call API's error data from
	// null into the error object and added call/v2). Zero means the newest
	// known minor: 4.44, 5.49 or 6.25.
	Minor int
	// Protocol is the config "protocol" value (default "sse_v3"); "none"
	// omits the field so clients can be tested against pre-SSE apps.
	Protocol string
	// Endpoints are the app's dependencies, in dependency (fn_index) order.
	Endpoints []Endpoint
	// Heartbeat is the interval of heartbeat frames on queue/data, the call
	// stream and the heartbeat route (default 15 s, as in Gradio).
	Heartbeat time.Duration
	// Concurrency is how many events run at once (default 1, like a ZeroGPU
	// Space); the rest wait and receive estimations with a falling rank.
	Concurrency int
	// MaxQueue is the largest number of waiting events; a join beyond it
	// gets 503 "Queue is full…". Zero means unlimited.
	MaxQueue int
	// Token, when set, makes every route require "Authorization: Bearer
	// <Token>" (or the same value in X-HF-Authorization) and answer 401
	// text/html otherwise, like the Hugging Face proxy for private Spaces.
	Token string
	// MaxFileSize caps one uploaded file in bytes (413 text/plain beyond it)
	// and is reported as config.max_file_size. Zero means no cap.
	MaxFileSize int64
	// SpaceID is reported as config.space_id (e.g. "owner/name").
	SpaceID string
	// ShowError mirrors Gradio's show_error: when true, plain (non-AppError)
	// failures are shown with their text instead of {"error":null}.
	ShowError bool
	// NoRecord disables the request journal (Joins, Cancels, Uploads), so a
	// long-running demo server does not grow without bound.
	NoRecord bool
	// MaxFiles bounds the file cache; the oldest files are evicted first and
	// then answer 403 like an expired Space cache (default 4096).
	MaxFiles int
	// Hook is optional front-door middleware run before anything else; it
	// returns true when it wrote the response itself (tests inject 429
	// pages, sleeping-Space 503s, cookie checks and the like).
	Hook func(w http.ResponseWriter, r *http.Request) bool
}

// Join is one recorded queue/join or call/{api} request.
type Join struct {
	// Path is the request path (without query).
	Path string
	// Header is a copy of the request headers.
	Header http.Header
	// Body is the raw request body.
	Body []byte
	// Data is the decoded positional data (after call-API padding).
	Data []any
	// FnIndex is the dependency id the event runs.
	FnIndex int
	// APIName is the endpoint's api_name.
	APIName string
	// SessionHash is the session the event belongs to.
	SessionHash string
	// EventID is the id returned to the client.
	EventID string
}

// Cancel is one recorded POST cancel body.
type Cancel struct {
	// Body is the raw request body.
	Body []byte
	// SessionHash, FnIndex and EventID are the decoded fields.
	SessionHash string
	FnIndex     int
	EventID     string
}

// Upload is one recorded uploaded file.
type Upload struct {
	// Name is the client-side file name ("" when none was sent).
	Name string
	// Data is the file content.
	Data []byte
	// Path is the server path returned to the client.
	Path string
}

// Server is a running fake Gradio app on 127.0.0.1.
type Server struct {
	// URL is the base URL of the app, without a trailing slash.
	URL string

	opts      Options
	prefix    string
	version   string
	appID     int64
	endpoints []*endpoint
	byName    map[string]*endpoint
	app       *appLayout

	ln      net.Listener
	srv     *http.Server
	closing chan struct{}
	baseCtx context.Context
	stop    context.CancelFunc
	runners sync.WaitGroup
	once    sync.Once

	files   *fileStore
	renders renderCache

	rec      sync.Mutex
	joins    []Join
	cancels  []Cancel
	uploads  []Upload
	reqCount map[string]int

	// mu guards the queue, the session table and the live-event table. Lock
	// order: mu before any session's mu.
	mu       sync.Mutex
	waiting  []*event
	running  int
	sessions map[string]*session
	live     map[string]*event
	callSess map[string]*session
	avgByFn  map[int]*avgDur
	states   map[string]any
}

// New starts a fake on 127.0.0.1 with a random port. It panics when the
// loopback listener cannot be opened (an environment failure) or when opts
// describe an impossible app (a programming error in the caller); use Start
// to get an error instead.
func New(opts Options) *Server {
	s, err := Start("127.0.0.1:0", opts)
	if err != nil {
		panic(fmt.Sprintf("gradiotest: starting fake: %v", err))
	}
	return s
}

// Start starts a fake on the given loopback address ("127.0.0.1:0" for a
// random port). Non-loopback addresses are refused so the fake can never be
// exposed by mistake.
func Start(addr string, opts Options) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("parsing listen address %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("listen address %q is not a loopback address", addr)
		}
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s.ln = ln
	s.URL = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	go func() { _ = s.srv.Serve(ln) }()
	go s.janitor(time.Minute)
	return s, nil
}

func newServer(opts Options) (*Server, error) {
	if opts.Version == 0 {
		opts.Version = 6
	}
	if opts.Version < 4 || opts.Version > 6 {
		return nil, fmt.Errorf("unsupported Gradio version %d (want 4, 5 or 6)", opts.Version)
	}
	if opts.Minor == 0 {
		opts.Minor = map[int]int{4: 44, 5: 49, 6: 25}[opts.Version]
	}
	if opts.Protocol == "" {
		opts.Protocol = "sse_v3"
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = 4096
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		appID:    rand.Int64N(1e10),
		closing:  make(chan struct{}),
		baseCtx:  ctx,
		stop:     stop,
		files:    newFileStore(opts.MaxFiles),
		reqCount: map[string]int{},
		sessions: map[string]*session{},
		live:     map[string]*event{},
		callSess: map[string]*session{},
		avgByFn:  map[int]*avgDur{},
		states:   map[string]any{},
		byName:   map[string]*endpoint{},
	}
	if opts.Version >= 5 {
		s.prefix = "/gradio_api"
	}
	patch := 0
	if opts.Version == 4 {
		patch = 1
	}
	s.version = fmt.Sprintf("%d.%d.%d", opts.Version, opts.Minor, patch)
	if err := s.buildApp(); err != nil {
		stop()
		return nil, err
	}
	return s, nil
}

// Close stops the server, cancels every running event and waits for the
// run functions to return.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.stop()
		if s.srv != nil {
			_ = s.srv.Close()
		}
		s.runners.Wait()
	})
}

// Prefix is the API route prefix: "/gradio_api", or "" in 4.x mode.
func (s *Server) Prefix() string { return s.prefix }

// Joins returns every recorded queue/join and call/{api} request, in order.
func (s *Server) Joins() []Join {
	s.rec.Lock()
	defer s.rec.Unlock()
	return append([]Join(nil), s.joins...)
}

// Cancels returns every recorded cancel request, in order.
func (s *Server) Cancels() []Cancel {
	s.rec.Lock()
	defer s.rec.Unlock()
	return append([]Cancel(nil), s.cancels...)
}

// Uploads returns every recorded uploaded file, in order.
func (s *Server) Uploads() []Upload {
	s.rec.Lock()
	defer s.rec.Unlock()
	return append([]Upload(nil), s.uploads...)
}

// Requests counts the requests whose path ends with pathSuffix. Paths under
// file= are counted as ".../file=" so "/file=" counts every download.
func (s *Server) Requests(pathSuffix string) int {
	s.rec.Lock()
	defer s.rec.Unlock()
	n := 0
	for p, c := range s.reqCount {
		if strings.HasSuffix(p, pathSuffix) {
			n += c
		}
	}
	return n
}

// QueueSize is the number of events waiting for a worker.
func (s *Server) QueueSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// Running is the number of events being processed.
func (s *Server) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

func (s *Server) record(f func()) {
	if s.opts.NoRecord {
		return
	}
	s.rec.Lock()
	f()
	s.rec.Unlock()
}

func (s *Server) countRequest(path string) {
	if i := strings.Index(path, "/file="); i >= 0 {
		path = path[:i+len("/file=")]
	} else if i := strings.Index(path, "/file/"); i >= 0 {
		path = path[:i+len("/file/")]
	}
	s.rec.Lock()
	// The key space is bounded by the route table except for call ids and
	// arbitrary 404 paths; keep it from growing forever in demo mode.
	if len(s.reqCount) < 10000 {
		s.reqCount[path]++
	}
	s.rec.Unlock()
}

// ServeHTTP routes a request. Routing is by hand rather than with ServeMux
// because Gradio's "file=<path>" segment cannot be expressed as a pattern.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.countRequest(r.URL.Path)
	if s.opts.Hook != nil && s.opts.Hook(w, r) {
		return
	}
	if !s.authorized(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("<!DOCTYPE html>\n<html><head><title>401</title></head><body><h1>401 Unauthorized</h1><p>Invalid credentials in Authorization header</p></body></html>\n"))
		return
	}
	p := r.URL.Path
	if p == "/config" || p == "/config/" {
		if !methodIs(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.handleConfig(w, r)
		return
	}
	if s.prefix != "" {
		if !strings.HasPrefix(p, s.prefix+"/") {
			notFound(w)
			return
		}
		p = p[len(s.prefix):]
	}
	switch {
	case p == "/info" || p == "/info/":
		if methodIs(w, r, http.MethodGet) {
			s.handleInfo(w, r)
		}
	case p == "/upload":
		if methodIs(w, r, http.MethodPost) {
			s.handleUpload(w, r)
		}
	case strings.HasPrefix(p, "/file="):
		if methodIs(w, r, http.MethodGet, http.MethodHead) {
			s.handleFile(w, r, p[len("/file="):])
		}
	case strings.HasPrefix(p, "/file/"):
		if methodIs(w, r, http.MethodGet, http.MethodHead) {
			s.handleFile(w, r, p[len("/file/")-1:])
		}
	case p == "/queue/join":
		if methodIs(w, r, http.MethodPost) {
			s.handleJoin(w, r)
		}
	case p == "/queue/data":
		if methodIs(w, r, http.MethodGet) {
			s.handleData(w, r)
		}
	case p == "/queue/status":
		if methodIs(w, r, http.MethodGet) {
			s.handleStatus(w)
		}
	case p == "/cancel":
		if methodIs(w, r, http.MethodPost) {
			s.handleCancel(w, r)
		}
	case p == "/reset":
		if methodIs(w, r, http.MethodPost) {
			s.handleReset(w, r)
		}
	case strings.HasPrefix(p, "/heartbeat/"):
		if methodIs(w, r, http.MethodGet) {
			s.handleHeartbeat(w, r)
		}
	case p == "/app_id":
		if methodIs(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, object{{"app_id", s.appID}})
		}
	case strings.HasPrefix(p, "/call/"):
		s.routeCall(w, r, p[len("/call/"):])
	case strings.HasPrefix(p, "/run/") || strings.HasPrefix(p, "/api/"):
		writeJSON(w, http.StatusNotFound, object{{"detail", "This API endpoint does not accept direct HTTP POST requests. Please join the queue to use this API."}})
	default:
		notFound(w)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	want := "Bearer " + s.opts.Token
	return r.Header.Get("Authorization") == want || r.Header.Get("X-HF-Authorization") == want
}

func methodIs(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, object{{"detail", "Method Not Allowed"}})
	return false
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, object{{"detail", "Not Found"}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := compactJSON(v)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func internalError(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("Internal Server Error"))
}

// rootURL computes the public root of the app as Gradio does: the forwarded
// host and protocol win over the request's own Host.
func rootURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if fh := firstValue(r.Header.Get("X-Forwarded-Host")); fh != "" {
		host = fh
		if strings.EqualFold(firstValue(r.Header.Get("X-Forwarded-Proto")), "https") {
			scheme = "https"
		}
	}
	return scheme + "://" + host
}

func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// readBody reads a request body through a size limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	return b, nil
}
