// Package jobapi drives image services that work in jobs: easel submits a
// job (a multipart form or a JSON object built from the request), reads the
// upstream's job id from the answer, polls a status URL with a growing
// interval until the job is done, failed or past its deadline, and downloads
// the result files.
//
// Everything service-specific is configuration (Config): field mapping,
// where the id, status, progress, message and result URLs sit in the JSON
// answers (dot paths, see ParsePath), which status values mean what, and the
// polling schedule. Preset returns the configuration of the reference
// service described in the project's jobapi-protocol spec.
//
// The provider sends only the requests the work needs, identifies itself
// with an honest User-Agent, and maps every failure to a typed
// *provider.Error so that the runner decides on retries from the error kind
// alone: only answers that prove the job was not accepted (connection
// refused, HTTP 429 or 503, a body-level rate limit or rejection) are marked
// NotStarted.
package jobapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// Options carries the process-wide dependencies of a Provider.
type Options struct {
	// HTTPClient is the client for all upstream calls. Nil means a tuned
	// default with a 5s connect timeout; per-call bounds come from
	// Config.RequestTimeout, so a client given here need not set Timeout.
	HTTPClient *http.Client
	// UserAgent is sent on every request, e.g. "easel/0.1.0" (default
	// "easel"). No other identifying header is added.
	UserAgent string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// OnUpstreamID, when set, is called once per submitted job with
	// easel's job id (Request.JobID) and the upstream's job id, right
	// after the upstream accepted the job and before the first poll. A
	// durable job store saves the pair there so that a restarted gateway
	// calls Resume instead of submitting the work again. It must not
	// block for long. The same id is also reported as Result.UpstreamID
	// and in the EventAccepted event.
	OnUpstreamID func(jobID, upstreamID string)
}

// Provider is one configured job-API backend. It is safe for concurrent
// use; each Generate call follows its own upstream job.
type Provider struct {
	name      string
	cfg       Config
	submitURL *url.URL
	client    *http.Client
	ownClient bool
	ua        string
	log       *slog.Logger
	onID      func(jobID, upstreamID string)

	paths compiledPaths
	// done and failed hold the lower-cased status values.
	done, failed map[string]bool

	// now and sleep are the clock; tests replace them with a virtual one.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// compiledPaths are the Config's paths, parsed once by New.
type compiledPaths struct {
	jobID, acceptCode, acceptMessage                            Path
	pollCode, status, progress, result, pollMessage, resultItem Path
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Closer   = (*Provider)(nil)
)

// New validates cfg, applies defaults and returns a Provider. Every problem
// in cfg is reported, joined. It does not contact the upstream: Check does.
func New(name string, cfg Config, opts Options) (*Provider, error) {
	paths, err := validate(name, &cfg)
	if err != nil {
		return nil, fmt.Errorf("configuring job-API backend %q: %w", name, err)
	}
	p := &Provider{
		name:   name,
		cfg:    cfg,
		onID:   opts.OnUpstreamID,
		paths:  paths,
		done:   lowerSet(cfg.Poll.DoneValues),
		failed: lowerSet(cfg.Poll.FailedValues),
		now:    time.Now,
		sleep:  sleepCtx,
	}
	p.submitURL, _ = url.Parse(cfg.Submit.URL) // validated above
	p.client, p.ownClient = upstream.ClientOr(opts.HTTPClient)
	p.ua = upstream.UserAgentOr(opts.UserAgent)
	p.log = upstream.BackendLogger(opts.Logger, name)
	return p, nil
}

// sleepCtx waits for d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Close releases idle connections of the provider's own HTTP client.
func (p *Provider) Close() error {
	if p.ownClient {
		p.client.CloseIdleConnections()
	}
	return nil
}

// Name returns the backend name given to New.
func (p *Provider) Name() string { return p.name }

// Capabilities derives what the backend can do from its field mapping.
func (p *Provider) Capabilities() provider.Capabilities {
	c := provider.Capabilities{MaxN: p.cfg.MaxN}
	for _, f := range p.cfg.Submit.Fields {
		switch f.From {
		case "image", "images":
			c.ImageToImage = true
		case "seed":
			c.Seed = true
		case "steps":
			c.Steps = true
		case "negative_prompt":
			c.NegativePrompt = true
		}
	}
	if c.ImageToImage {
		c.MaxInputImages = p.cfg.MaxInputImages
		c.MaxInputPixels = p.cfg.MaxInputPixels
		c.InputFormats = append([]string(nil), p.cfg.InputFormats...)
	}
	c.TextToImage = !p.cfg.RequiresImage
	c.AspectRatios = append([]string(nil), p.cfg.AspectRatios...)
	return c
}

// Check tells whether the API host answers at all: one HEAD request to the
// submit URL's origin. Any HTTP answer, even an error status, proves the
// host reachable; only a transport failure is an error. It submits nothing.
func (p *Provider) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	origin := &url.URL{Scheme: p.submitURL.Scheme, Host: p.submitURL.Host, Path: "/"}
	req, err := p.newRequest(ctx, http.MethodHead, origin.String(), nil, callCheck)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return transportError(ctx, err, "checking the API host")
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return nil
}

// callKind says which headers a request carries.
type callKind int

const (
	// callAPI is a submit or a poll: API headers and secrets.
	callAPI callKind = iota
	// callFetch is a result download: fetch headers, and the secrets only
	// where Fetch.SendAuth allows.
	callFetch
	// callCheck is the reachability probe: nothing but the User-Agent.
	callCheck
)

// newRequest builds an upstream request carrying easel's honest
// User-Agent and the headers kind calls for. Every upstream call goes
// through here so that no call can pick up a header it should not carry.
func (p *Provider) newRequest(ctx context.Context, method, u string, body io.Reader, kind callKind) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, &provider.Error{Kind: provider.KindConfig, Message: "building the upstream request failed", NotStarted: true, Err: err}
	}
	switch kind {
	case callAPI:
		for k, v := range p.cfg.Submit.Headers {
			req.Header.Set(k, v)
		}
		for k, v := range p.cfg.Submit.SecretHeaders {
			req.Header.Set(k, v)
		}
	case callFetch:
		for k, v := range p.cfg.Fetch.Headers {
			req.Header.Set(k, v)
		}
		if p.cfg.Fetch.SendAuth && p.sameOrigin(req.URL) {
			for k, v := range p.cfg.Submit.SecretHeaders {
				req.Header.Set(k, v)
			}
		}
	}
	req.Header.Set("User-Agent", p.ua)
	return req, nil
}

// sameOrigin reports whether u is on the submit URL's scheme and host, so
// secrets never reach a host that a result URL happens to name.
func (p *Provider) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, p.submitURL.Scheme) && strings.EqualFold(u.Host, p.submitURL.Host)
}

func lowerSet(values []string) map[string]bool {
	m := make(map[string]bool, len(values))
	for _, v := range values {
		m[strings.ToLower(strings.TrimSpace(v))] = true
	}
	return m
}

// validate checks cfg, applies defaults in place and parses the paths.
func validate(name string, cfg *Config) (compiledPaths, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var paths compiledPaths

	if strings.TrimSpace(name) == "" {
		add("backend name is empty")
	}

	// Submit.
	s := &cfg.Submit
	s.Method = strings.ToUpper(strings.TrimSpace(s.Method))
	switch s.Method {
	case "":
		s.Method = http.MethodPost
	case http.MethodPost, http.MethodPut:
	default:
		add("submit.method: %q is not POST or PUT", s.Method)
	}
	if err := checkHTTPURL(s.URL); err != nil {
		add("submit.url: %w", err)
	}
	switch s.Body {
	case "":
		s.Body = "multipart"
	case "multipart", "json":
	default:
		add("submit.body: %q is not multipart or json", s.Body)
	}
	if len(s.Fields) == 0 {
		add("submit.fields: map at least the prompt or the image")
	}
	seen := map[string]bool{}
	hasImage, hasModel, hasN := false, false, false
	for i, f := range s.Fields {
		if strings.TrimSpace(f.Name) == "" {
			add("submit.fields[%d].name is empty", i)
		}
		if seen[f.Name] {
			add("submit.fields[%d]: name %q is used twice", i, f.Name)
		}
		seen[f.Name] = true
		switch {
		case f.From == "" && f.Value == nil:
			add("submit.fields[%d] (%s): set from or value", i, f.Name)
		case f.From != "" && f.Value != nil:
			add("submit.fields[%d] (%s): set from or value, not both", i, f.Name)
		case f.From != "" && !knownFrom[f.From]:
			add("submit.fields[%d] (%s): unknown from %q", i, f.Name, f.From)
		case f.From == "" && f.Default != nil:
			add("submit.fields[%d] (%s): default needs from", i, f.Name)
		}
		switch f.Encoding {
		case "", "data_url", "base64":
		default:
			add("submit.fields[%d] (%s): encoding %q is not data_url or base64", i, f.Name, f.Encoding)
		}
		if s.Body != "json" && (isComposite(f.Value) || isComposite(f.Default)) {
			add("submit.fields[%d] (%s): a multipart field takes a scalar value", i, f.Name)
		}
		switch f.From {
		case "image":
			hasImage = true
			if cfg.MaxInputImages == 0 {
				cfg.MaxInputImages = 1
			}
		case "images":
			hasImage = true
			if cfg.MaxInputImages == 0 {
				cfg.MaxInputImages = 4
			}
		case "model":
			hasModel = true
		case "n":
			hasN = true
		}
	}
	if cfg.RequiresImage && !hasImage {
		add("requires_image is set but no submit field takes from image or images")
	}
	if cfg.MaxInputImages < 0 {
		add("max_input_images is negative")
	}
	if cfg.MaxInputPixels < 0 {
		add("max_input_pixels is negative")
	}
	for i, f := range cfg.InputFormats {
		switch f {
		case "png", "jpeg", "webp", "gif":
		default:
			add("input_formats[%d]: %q is not png, jpeg, webp or gif", i, f)
		}
	}
	if hasModel && cfg.Model == "" {
		add("model: a submit field takes from model, so name the upstream model")
	}
	if cfg.Model != "" && len(cfg.Models) > 0 && !contains(cfg.Models, cfg.Model) {
		add("model: %q is not one of models %v", cfg.Model, cfg.Models)
	}
	switch {
	case cfg.MaxN < 0:
		add("max_n is negative")
	case cfg.MaxN == 0:
		cfg.MaxN = 1
	case cfg.MaxN > 1 && !hasN:
		add("max_n is %d but no submit field takes from n", cfg.MaxN)
	}
	for h := range s.Headers {
		if badHeader(h) {
			add("submit.headers: %q cannot be set (easel sends its own User-Agent and framing headers)", h)
		}
	}
	for h, env := range s.HeaderEnv {
		if badHeader(h) {
			add("submit.header_env: %q cannot be set", h)
		}
		if strings.TrimSpace(env) == "" {
			add("submit.header_env[%q]: environment variable name is empty", h)
		}
	}
	for h := range cfg.Fetch.Headers {
		if badHeader(h) {
			add("fetch.headers: %q cannot be set", h)
		}
	}

	// Aspect ratios.
	for i, r := range cfg.AspectRatios {
		if strings.TrimSpace(r) == "" {
			add("aspect_ratios[%d] is empty", i)
		}
	}
	if cfg.DefaultAspectRatio != "" && len(cfg.AspectRatios) > 0 && !contains(cfg.AspectRatios, cfg.DefaultAspectRatio) {
		add("default_aspect_ratio %q is not one of aspect_ratios", cfg.DefaultAspectRatio)
	}

	// Accept.
	a := &cfg.Accept
	var err error
	if paths.jobID, err = ParsePath(a.JobIDPath); err != nil {
		add("accept.job_id_path: %w", err)
	}
	for _, st := range a.OKStatus {
		if st < 100 || st > 599 {
			add("accept.ok_status: %d is not an HTTP status", st)
		}
	}
	paths.acceptCode = optionalPath(a.CodePath, "accept.code_path", add)
	paths.acceptMessage = optionalPath(a.MessagePath, "accept.message_path", add)
	if a.CodePath != "" && len(a.CodeOK) == 0 {
		add("accept.code_ok: list the code values that mean success")
	}
	if len(a.RateLimitCodes) == 0 {
		a.RateLimitCodes = []string{"429"}
	}
	if a.RateLimitRetryAfter < 0 {
		add("accept.rate_limit_retry_after is negative")
	}

	// Poll.
	pc := &cfg.Poll
	if !strings.Contains(pc.URL, "{job_id}") {
		add("poll.url: must contain {job_id}")
	} else if err := checkHTTPURL(strings.ReplaceAll(pc.URL, "{job_id}", "x")); err != nil {
		add("poll.url: %w", err)
	}
	switch strings.ToUpper(pc.Method) {
	case "", http.MethodGet:
		pc.Method = http.MethodGet
	default:
		add("poll.method: %q is not GET", pc.Method)
	}
	paths.pollCode = optionalPath(pc.CodePath, "poll.code_path", add)
	if pc.CodePath != "" && len(pc.CodeOK) == 0 {
		add("poll.code_ok: list the code values that mean success")
	}
	if len(pc.RateLimitCodes) == 0 {
		pc.RateLimitCodes = []string{"429"}
	}
	paths.status = optionalPath(pc.StatusPath, "poll.status_path", add)
	paths.progress = optionalPath(pc.ProgressPath, "poll.progress_path", add)
	paths.pollMessage = optionalPath(pc.MessagePath, "poll.message_path", add)
	if paths.result, err = ParsePath(pc.ResultPath); err != nil {
		add("poll.result_path: %w", err)
	}
	paths.resultItem, _ = ParsePath("url")
	if len(pc.DoneValues) == 0 && !pc.DoneOnResult {
		add("poll: set done_values, done_on_result or both")
	}
	if len(pc.DoneValues) > 0 && pc.StatusPath == "" {
		add("poll.status_path: needed to read done_values")
	}
	if len(pc.FailedValues) > 0 && pc.StatusPath == "" {
		add("poll.status_path: needed to read failed_values")
	}
	for _, v := range pc.DoneValues {
		if contains(pc.FailedValues, v) {
			add("poll: status %q is both done and failed", v)
		}
	}
	switch {
	case pc.Backoff == 0:
		pc.Backoff = DefaultBackoff
	case pc.Backoff < 1 || pc.Backoff > 10:
		add("poll.backoff: %g is not between 1 and 10", pc.Backoff)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"poll.interval", &pc.Interval, DefaultInterval},
		{"poll.max_interval", &pc.MaxInterval, DefaultMaxInterval},
		{"poll.deadline", &pc.Deadline, DefaultDeadline},
		{"request_timeout", &cfg.RequestTimeout, DefaultRequestTimeout},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			add("%s is negative", d.name)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if pc.MaxInterval < pc.Interval {
		add("poll.max_interval %s is shorter than poll.interval %s", pc.MaxInterval, pc.Interval)
	}
	switch {
	case pc.MaxErrors < 0:
		add("poll.max_errors is negative")
	case pc.MaxErrors == 0:
		pc.MaxErrors = DefaultMaxErrors
	}

	// Fetch.
	f := &cfg.Fetch
	switch {
	case f.MaxBytes < 0:
		add("fetch.max_bytes is negative")
	case f.MaxBytes == 0:
		f.MaxBytes = DefaultMaxBytes
	}
	switch {
	case f.Attempts < 0 || f.Attempts > 10:
		add("fetch.attempts: %d is not between 1 and 10", f.Attempts)
	case f.Attempts == 0:
		f.Attempts = DefaultFetchAttempts
	}
	return paths, errors.Join(errs...)
}

func optionalPath(s, field string, add func(string, ...any)) Path {
	if s == "" {
		return Path{}
	}
	p, err := ParsePath(s)
	if err != nil {
		add("%s: %w", field, err)
	}
	return p
}

func checkHTTPURL(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("URL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("parsing URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("URL %q must not carry user info (use header_env for credentials)", s)
	}
	return nil
}

// badHeader refuses headers easel owns: its identity and the framing that
// net/http computes.
func badHeader(h string) bool {
	switch http.CanonicalHeaderKey(strings.TrimSpace(h)) {
	case "User-Agent", "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection", "":
		return true
	}
	return false
}

func isComposite(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// containsText reports whether the text form of v is in list.
func containsText(list []string, v any) bool {
	s, ok := scalarText(v)
	return ok && contains(list, s)
}

// itoa is strconv.Itoa, named for brevity at call sites.
func itoa(n int) string { return strconv.Itoa(n) }
