// Package openaiapi serves easel's OpenAI-compatible HTTP surface:
// /v1/models, /v1/images/generations, /v1/images/edits,
// /v1/chat/completions and the signed result files. It decodes each request strictly into one gen.Request,
// starts a job on the Service and renders the job as the endpoint's JSON or
// SSE shape, with every failure in the OpenAI error envelope.
package openaiapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/netguard"
)

// Service is what the API needs from the job runner (*gen.Service).
type Service interface {
	// Models lists the public models in configuration order.
	Models() []gen.ModelInfo
	// Model finds a model by id or alias.
	Model(id string) (gen.ModelInfo, bool)
	// Start validates req, creates a job and starts it under ctx.
	Start(ctx context.Context, req *gen.Request) (*gen.Job, error)
	// Run is Start for a caller that only waits: it runs the job on the
	// calling goroutine and returns once the job has ended.
	Run(ctx context.Context, req *gen.Request) (*gen.Job, error)
	// Blobs is where job results are stored.
	Blobs() blob.Bucket
}

// Defaults and bounds for Options.
const (
	DefaultURLTTL         = time.Hour
	MaxURLTTL             = 7 * 24 * time.Hour
	DefaultMaxPromptChars = 32000
	DefaultMaxN           = 10
	DefaultHeartbeat      = 15 * time.Second
)

// Defaults for the input image limits (edits uploads, and data: and http(s)
// URLs in edits and chat).
const (
	// DefaultMaxUploadBytes caps a whole edits request body, and the sum of
	// the images one request fetches from URLs (OpenAI's 50 MB payload).
	DefaultMaxUploadBytes = 50 << 20
	// DefaultMaxImageBytes caps one input image, uploaded, inline or
	// fetched.
	DefaultMaxImageBytes = 20 << 20
	// DefaultMaxInputImages is the most input images per request (OpenAI's
	// edit limit).
	DefaultMaxInputImages = 16
	// DefaultMaxParts is the most parts one multipart body may have.
	DefaultMaxParts = 64
	// DefaultMaxInputPixels caps an input image's declared width*height,
	// read from its header before anything decodes it; each side is also
	// capped at imageio.MaxSide (16384).
	DefaultMaxInputPixels = 40_000_000
)

// Fetcher fetches the http(s) image URLs clients send. *netguard.Client is
// the production implementation: it refuses private and reserved
// destinations unless configured otherwise.
type Fetcher interface {
	Get(ctx context.Context, url string) (*netguard.Response, error)
}

// Body caps per route: generations carry only text; chat may carry data
// URLs.
const (
	generationsBodyLimit = 1 << 20
	chatBodyLimit        = 20 << 20
)

// Options configures the API.
type Options struct {
	// Service runs the jobs. Required.
	Service Service
	// Signer signs result URLs. Required: chat answers always carry URLs.
	Signer *blob.Signer
	// PublicURL is the absolute base ("https://img.example") put in front
	// of result URLs. Empty derives it from each request: the Host header,
	// and the scheme from TLS or, with TrustProxy, X-Forwarded-Proto.
	PublicURL string
	// TrustProxy lets X-Forwarded-Proto choose the scheme of derived URLs;
	// enable it only behind a proxy that sets the header itself.
	TrustProxy bool
	// URLTTL is how long a signed result URL stays valid; default 1h,
	// at most 7 days.
	URLTTL time.Duration
	// DefaultResponseFormat applies when a request names none: "b64_json"
	// (the default, what most clients read) or "url".
	DefaultResponseFormat string
	// MaxPromptChars caps prompts in code points; default 32000. Prompts
	// are also capped at 128 KiB.
	MaxPromptChars int
	// MaxN caps n; default 10.
	MaxN int
	// Heartbeat is the interval of SSE comment lines that keep idle
	// streams open through proxies; default 15s.
	Heartbeat time.Duration
	// Fetcher fetches http(s) image URLs given as inputs (edits JSON form,
	// chat image_url parts). Nil builds a netguard client with its safe
	// defaults (public addresses, ports 80 and 443) and MaxImageBytes.
	Fetcher Fetcher
	// MaxUploadBytes caps an edits request body and the total bytes of the
	// images one request fetches; default DefaultMaxUploadBytes (50 MiB).
	MaxUploadBytes int64
	// MaxImageBytes caps one input image; default DefaultMaxImageBytes
	// (20 MiB).
	MaxImageBytes int64
	// MaxInputImages caps the input images of one request; default
	// DefaultMaxInputImages (16).
	MaxInputImages int
	// MaxParts caps the parts of a multipart body; default DefaultMaxParts
	// (64).
	MaxParts int
	// MaxInputPixels caps an input image's declared pixels; default
	// DefaultMaxInputPixels (40 million).
	MaxInputPixels int
	// Jobs serves async submissions and the job endpoints
	// (/v1/images/jobs, /v1/query/status); nil leaves them out.
	Jobs Jobs
	// ResultsTTL is how long results are kept after their job ended
	// (retention.results): older jobs show results_expired instead of
	// links. 0 never expires them.
	ResultsTTL time.Duration
	// Admitter applies per-key job limits; nil admits every job.
	Admitter Admitter
	// Logger receives one line per failed request; nil discards.
	Logger *slog.Logger
}

// Admitter applies per-key job limits (concurrent jobs, images per day).
type Admitter interface {
	// Admit reserves a job of images for the caller of ctx, or refuses
	// it (a *keys.LimitError). release must be called once when the job
	// ends, with the images it produced.
	Admit(ctx context.Context, images int) (release func(produced int), err error)
}

// API serves the OpenAI-compatible routes.
type API struct {
	svc      Service
	jobs     Jobs
	admitter Admitter
	// stopping is closed by Shutdown: job event streams end with a
	// reconnect hint instead of holding the server's drain open.
	stopping       chan struct{}
	stoppingOnce   sync.Once
	resultsTTL     time.Duration
	signer         *blob.Signer
	publicURL      string
	trustProxy     bool
	urlTTL         time.Duration
	defaultFormat  string
	maxPromptChars int
	maxN           int
	heartbeat      time.Duration
	fetcher        Fetcher
	maxUpload      int64
	maxImageBytes  int64
	maxImages      int
	maxParts       int
	maxInputPixels int
	log            *slog.Logger
	// now is the clock, replaceable in tests.
	now func() time.Time
}

// New validates opts and returns the API.
func New(opts Options) (*API, error) {
	var errs []error
	if opts.Service == nil {
		errs = append(errs, errors.New("Service is required"))
	}
	if opts.Signer == nil {
		errs = append(errs, errors.New("Signer is required"))
	}
	public := strings.TrimRight(opts.PublicURL, "/")
	if public != "" {
		u, err := url.Parse(public)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("PublicURL %q must be an absolute http(s) URL without query", opts.PublicURL))
		}
	}
	if opts.URLTTL == 0 {
		opts.URLTTL = DefaultURLTTL
	}
	if opts.URLTTL < time.Second || opts.URLTTL > MaxURLTTL {
		errs = append(errs, fmt.Errorf("URLTTL %s must be between 1s and %s", opts.URLTTL, MaxURLTTL))
	}
	switch opts.DefaultResponseFormat {
	case "":
		opts.DefaultResponseFormat = "b64_json"
	case "b64_json", "url":
	default:
		errs = append(errs, fmt.Errorf("DefaultResponseFormat %q must be b64_json or url", opts.DefaultResponseFormat))
	}
	if opts.MaxPromptChars == 0 {
		opts.MaxPromptChars = DefaultMaxPromptChars
	}
	if opts.MaxPromptChars < 1 {
		errs = append(errs, errors.New("MaxPromptChars must be positive"))
	}
	if opts.MaxN == 0 {
		opts.MaxN = DefaultMaxN
	}
	if opts.MaxN < 1 || opts.MaxN > 100 {
		errs = append(errs, errors.New("MaxN must be between 1 and 100"))
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Heartbeat < 0 {
		errs = append(errs, errors.New("Heartbeat must not be negative"))
	}
	if opts.MaxUploadBytes == 0 {
		opts.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if opts.MaxImageBytes == 0 {
		opts.MaxImageBytes = DefaultMaxImageBytes
	}
	if opts.MaxImageBytes < 1 || opts.MaxUploadBytes < opts.MaxImageBytes {
		errs = append(errs, errors.New("MaxImageBytes must be positive and at most MaxUploadBytes"))
	}
	if opts.MaxInputImages == 0 {
		opts.MaxInputImages = DefaultMaxInputImages
	}
	if opts.MaxInputImages < 1 || opts.MaxInputImages > 100 {
		errs = append(errs, errors.New("MaxInputImages must be between 1 and 100"))
	}
	if opts.MaxParts == 0 {
		opts.MaxParts = DefaultMaxParts
	}
	if opts.MaxParts < opts.MaxInputImages+2 || opts.MaxParts > 1000 {
		errs = append(errs, errors.New("MaxParts must leave room for the images, mask and prompt, and be at most 1000"))
	}
	if opts.MaxInputPixels == 0 {
		opts.MaxInputPixels = DefaultMaxInputPixels
	}
	if opts.MaxInputPixels < 1 {
		errs = append(errs, errors.New("MaxInputPixels must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("openaiapi: invalid options: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fetcher := opts.Fetcher
	if fetcher == nil {
		fetcher = netguard.New(netguard.Options{MaxBytes: opts.MaxImageBytes})
	}
	return &API{
		svc:            opts.Service,
		jobs:           opts.Jobs,
		admitter:       opts.Admitter,
		stopping:       make(chan struct{}),
		resultsTTL:     opts.ResultsTTL,
		signer:         opts.Signer,
		publicURL:      public,
		trustProxy:     opts.TrustProxy,
		urlTTL:         opts.URLTTL,
		defaultFormat:  opts.DefaultResponseFormat,
		maxPromptChars: opts.MaxPromptChars,
		maxN:           opts.MaxN,
		heartbeat:      opts.Heartbeat,
		fetcher:        fetcher,
		maxUpload:      opts.MaxUploadBytes,
		maxImageBytes:  opts.MaxImageBytes,
		maxImages:      opts.MaxInputImages,
		maxParts:       opts.MaxParts,
		maxInputPixels: opts.MaxInputPixels,
		log:            log,
		now:            time.Now,
	}, nil
}

// catchAllPattern answers every /v1/ path no other route claims.
const catchAllPattern = "/v1/"

// Register adds every route to mux, plus a /v1/ catch-all that answers
// unknown paths with 404 and known paths with a wrong method with 405, both
// in the OpenAI error envelope (the mux's own answers are plain text).
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/models", a.handleListModels)
	mux.HandleFunc("GET /v1/models/{id...}", a.handleGetModel)
	mux.HandleFunc("POST /v1/images/generations", a.handleGenerations)
	mux.HandleFunc("POST /v1/images/edits", a.handleEdits)
	mux.HandleFunc("POST /v1/chat/completions", a.handleChat)
	mux.HandleFunc("GET /v1/files/{key}", a.handleFile)
	if a.jobs != nil {
		mux.HandleFunc("GET /v1/images/jobs", a.handleListJobs)
		mux.HandleFunc("GET /v1/images/jobs/{id}", a.handleGetJob)
		mux.HandleFunc("GET /v1/images/jobs/{id}/events", a.handleJobEvents)
		mux.HandleFunc("POST /v1/images/jobs/{id}/cancel", a.handleCancelJob)
		mux.HandleFunc("GET /v1/query/status", a.handleQueryStatus)
	}
	mux.HandleFunc(catchAllPattern, func(w http.ResponseWriter, r *http.Request) {
		a.handleUnknown(mux, w, r)
	})
}

// probeMethods are tried to tell a wrong method from an unknown path.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (a *API) handleUnknown(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != catchAllPattern {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		if contains(allowed, http.MethodGet) {
			allowed = append(allowed, http.MethodHead)
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		a.writeError(w, r, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error",
			Code: "method_not_allowed", Message: "Method " + r.Method + " is not allowed on " + truncate(r.URL.Path, 200) + "."})
		return
	}
	a.writeError(w, r, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
		Code: "not_found", Message: "Unknown route " + r.Method + " " + truncate(r.URL.Path, 200) + "."})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// baseURL is the absolute origin result URLs are built on.
func (a *API) baseURL(r *http.Request) string {
	if a.publicURL != "" {
		return a.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a.trustProxy {
		switch p := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); p {
		case "http", "https":
			scheme = p
		}
	}
	return scheme + "://" + r.Host
}

// Shutdown ends the job event streams: each gets a final comment and a
// retry hint, and its client reconnects (with Last-Event-ID) once the
// server is back. Jobs themselves are not affected. Safe to call twice.
func (a *API) Shutdown() {
	a.stoppingOnce.Do(func() { close(a.stopping) })
}

// admit reserves a job under the caller's limits.
func (a *API) admit(ctx context.Context, images int) (func(int), error) {
	if a.admitter == nil {
		return func(int) {}, nil
	}
	return a.admitter.Admit(ctx, images)
}

// resolveModel picks the model a request names, or the first configured
// one when it names none (OpenAI has a default model too).
func (a *API) resolveModel(name string) (string, error) {
	if name != "" {
		if m, ok := a.svc.Model(name); ok {
			return m.ID, nil
		}
		return "", &gen.NotFoundError{Model: name}
	}
	models := a.svc.Models()
	if len(models) == 0 {
		return "", &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Param: "model", Code: "model_not_found", Message: "No models are configured."}
	}
	return models[0].ID, nil
}
