// Package gradio drives a Gradio app (usually a Hugging Face Space) through
// its queue protocol (sse_v1 … sse_v3): it reads the app's /config to find
// the API prefix and the endpoint, joins the queue with positional inputs
// built from easel's request, follows the session's SSE stream for queue
// position and progress, and downloads the resulting image files.
//
// The wire protocol is described in the project's gradio-protocol spec; the
// error mapping here follows its error catalogue so that the runner can
// decide on retries from the error kind alone.
package gradio

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

	"golang.org/x/sync/singleflight"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultStallTimeout   = 60 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultConfigTTL      = 10 * time.Minute
	DefaultMaxResultBytes = 50 << 20
)

// Options carries the process-wide dependencies of a Provider.
type Options struct {
	// HTTPClient is the base client for all upstream calls. Nil means a
	// tuned default: 5s connect timeout and no overall timeout, because the
	// queue stream of one job can stay open for many minutes. Per-call
	// bounds come from Config.RequestTimeout and Config.StallTimeout, so a
	// client given here should not set Timeout either.
	HTTPClient *http.Client
	// UserAgent is sent on every request, e.g. "easel/0.1.0".
	UserAgent string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Provider is one configured Gradio backend. It is safe for concurrent use:
// every Generate call runs in its own Gradio session.
type Provider struct {
	name string
	cfg  Config
	base string
	// baseURL is base parsed, to recognise requests to the app's own host.
	baseURL *url.URL
	client  *http.Client
	ua      string
	log     *slog.Logger
	// ownClient is true when the client was built here, so Close may drop
	// its idle connections.
	ownClient bool

	group singleflight.Group
	mu    sync.Mutex
	space *spaceState // last good /config (+ /info), nil until loaded
}

var _ provider.Provider = (*Provider)(nil)
var _ provider.Closer = (*Provider)(nil)

// New validates cfg, applies defaults and returns a Provider. It does not
// contact the upstream: Check does.
func New(name string, cfg Config, opts Options) (*Provider, error) {
	base, err := validate(name, &cfg)
	if err != nil {
		return nil, fmt.Errorf("configuring gradio backend %q: %w", name, err)
	}
	p := &Provider{name: name, cfg: cfg, base: base}
	if p.baseURL, err = url.Parse(base); err != nil {
		return nil, fmt.Errorf("configuring gradio backend %q: %w", name, err)
	}
	p.client, p.ownClient = upstream.ClientOr(opts.HTTPClient)
	p.ua = upstream.UserAgentOr(opts.UserAgent)
	p.log = upstream.BackendLogger(opts.Logger, name)
	return p, nil
}

// Close releases idle connections of the provider's own HTTP client.
func (p *Provider) Close() error {
	if p.ownClient {
		p.client.CloseIdleConnections()
	}
	return nil
}

// BaseURL turns a configured Space into the app's base URL: "owner/name"
// becomes "https://owner-name.hf.space" (lowercase, with '/', '.' and '_'
// turned into '-'), a full http(s) URL is kept without its trailing slash.
func BaseURL(space string) (string, error) {
	s := strings.TrimSpace(space)
	if s == "" {
		return "", errors.New("space is empty")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("parsing space URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("space URL %q: scheme must be http or https", s)
		}
		if u.Host == "" {
			return "", fmt.Errorf("space URL %q has no host", s)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("space URL %q must not carry a query, fragment or user info", s)
		}
		return strings.TrimRight(s, "/"), nil
	}
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("space %q is neither \"owner/name\" nor an http(s) URL", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/') {
			return "", fmt.Errorf("space %q contains %q, not allowed in a Space id", s, r)
		}
	}
	sub := strings.NewReplacer("/", "-", ".", "-", "_", "-").Replace(strings.ToLower(s))
	return "https://" + sub + ".hf.space", nil
}

var knownFrom = map[string]bool{
	"prompt": true, "negative_prompt": true, "width": true, "height": true, "size": true,
	"size_choice": true, "steps": true, "seed": true, "randomize_seed": true, "image": true, "images": true, "mask": true,
}

// validate checks cfg, applies defaults in place and returns the base URL.
// Every problem is reported, joined.
func validate(name string, cfg *Config) (string, error) {
	var errs []error
	if strings.TrimSpace(name) == "" {
		errs = append(errs, errors.New("backend name is empty"))
	}
	base, err := BaseURL(cfg.Space)
	if err != nil {
		errs = append(errs, fmt.Errorf("space: %w", err))
	}
	cfg.APIName = strings.TrimPrefix(strings.TrimSpace(cfg.APIName), "/")
	if cfg.APIName == "" && cfg.FnIndex == nil {
		errs = append(errs, errors.New("set api_name (preferred) or fn_index"))
	}
	if cfg.FnIndex != nil && *cfg.FnIndex < 0 {
		errs = append(errs, fmt.Errorf("fn_index %d is negative", *cfg.FnIndex))
	}
	if len(cfg.Inputs) == 0 {
		errs = append(errs, errors.New("inputs: list every positional input of the endpoint"))
	}
	for i, in := range cfg.Inputs {
		if in.From != "" && !knownFrom[in.From] {
			errs = append(errs, fmt.Errorf("inputs[%d].from: unknown field %q", i, in.From))
		}
		if in.From != "" && in.Value != nil {
			errs = append(errs, fmt.Errorf("inputs[%d]: set from or value, not both", i))
		}
		switch in.Type {
		case "", "int", "float", "string", "bool":
		default:
			errs = append(errs, fmt.Errorf("inputs[%d].type: %q is not int, float, string or bool", i, in.Type))
		}
		for j, c := range in.Choices {
			if _, _, ok := parseWxH(c); !ok {
				errs = append(errs, fmt.Errorf("inputs[%d].choices[%d]: %q does not start with WxH", i, j, c))
			}
		}
	}
	switch cfg.Output.Kind {
	case "":
		cfg.Output.Kind = "auto"
	case "auto", "image", "gallery", "list":
	default:
		errs = append(errs, fmt.Errorf("output.kind: %q is not image, gallery, list or auto", cfg.Output.Kind))
	}
	if cfg.Output.Index != nil && *cfg.Output.Index < 0 {
		errs = append(errs, errors.New("output.index is negative"))
	}
	if cfg.Output.SeedIndex != nil && *cfg.Output.SeedIndex < 0 {
		errs = append(errs, errors.New("output.seed_index is negative"))
	}
	s := cfg.Size
	if s.Min < 0 || s.Max < 0 || s.Multiple < 0 || s.DefaultWidth < 0 || s.DefaultHeight < 0 {
		errs = append(errs, errors.New("size: values must not be negative"))
	}
	if s.Min > 0 && s.Max > 0 && s.Min > s.Max {
		errs = append(errs, fmt.Errorf("size: min %d > max %d", s.Min, s.Max))
	}
	st := cfg.Steps
	if st.Min < 0 || st.Max < 0 || st.Default < 0 {
		errs = append(errs, errors.New("steps: values must not be negative"))
	}
	if st.Min > 0 && st.Max > 0 && st.Min > st.Max {
		errs = append(errs, fmt.Errorf("steps: min %d > max %d", st.Min, st.Max))
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"stall_timeout", &cfg.StallTimeout, DefaultStallTimeout},
		{"request_timeout", &cfg.RequestTimeout, DefaultRequestTimeout},
		{"config_ttl", &cfg.ConfigTTL, DefaultConfigTTL},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("%s is negative", d.name))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case cfg.MaxResultBytes < 0:
		errs = append(errs, errors.New("max_result_bytes is negative"))
	case cfg.MaxResultBytes == 0:
		cfg.MaxResultBytes = DefaultMaxResultBytes
	}
	return base, errors.Join(errs...)
}

// Capabilities derives what the backend can do from its input mapping.
func (p *Provider) Capabilities() provider.Capabilities {
	c := provider.Capabilities{MaxN: 1}
	for i, in := range p.cfg.Inputs {
		switch in.From {
		case "image":
			c.ImageToImage = true
			c.MaxInputImages = max(c.MaxInputImages, 1)
		case "images":
			c.ImageToImage = true
			// A Gallery input has no declared limit; four covers the
			// multi-image edit Spaces without inviting huge uploads.
			c.MaxInputImages = max(c.MaxInputImages, 4)
		case "seed":
			c.Seed = true
		case "negative_prompt":
			c.NegativePrompt = true
		case "steps":
			c.Steps = true
			c.DefaultSteps, c.MinSteps, c.MaxSteps = p.cfg.Steps.Default, p.cfg.Steps.Min, p.cfg.Steps.Max
		case "size_choice":
			for _, ch := range p.sizeChoices(i) {
				if w, h, ok := parseWxH(ch); ok {
					c.Size.Choices = append(c.Size.Choices, fmt.Sprintf("%dx%d", w, h))
				}
			}
		}
	}
	c.TextToImage = !c.ImageToImage
	s := p.cfg.Size
	c.Size.DefaultWidth, c.Size.DefaultHeight = s.DefaultWidth, s.DefaultHeight
	c.Size.Min, c.Size.Max, c.Size.Multiple = s.Min, s.Max, s.Multiple
	return c
}

// sizeChoices returns the size_choice input's choices from the cached live
// config when loaded, else the configured ones.
func (p *Provider) sizeChoices(pos int) []string {
	p.mu.Lock()
	sp := p.space
	p.mu.Unlock()
	if sp != nil {
		if ep, err := sp.resolve(p.cfg); err == nil {
			if ch := ep.choices(pos); len(ch) > 0 {
				return ch
			}
		}
	}
	return p.cfg.Inputs[pos].Choices
}

// Check reads the app's /config and /info afresh and verifies that the
// protocol is supported, that the endpoint exists and that the configured
// inputs cover its positions.
func (p *Provider) Check(ctx context.Context) error {
	sp, err := p.loadSpace(ctx, true)
	if err != nil {
		return err
	}
	if sp.infoErr != nil {
		return &provider.Error{Kind: provider.KindUpstream, Message: "reading the app's /info failed", Err: sp.infoErr}
	}
	ep, err := sp.resolve(p.cfg)
	if err != nil {
		return err
	}
	if n := len(ep.dep.Inputs); n != len(p.cfg.Inputs) {
		return provider.Errorf(provider.KindConfig, "endpoint %s takes %d inputs but %d are configured", ep.label(), n, len(p.cfg.Inputs))
	}
	if p.cfg.APIName != "" && sp.info != nil {
		if _, ok := sp.info.NamedEndpoints["/"+p.cfg.APIName]; !ok {
			// Undocumented endpoints work but are left out of /info.
			p.log.Warn("gradio endpoint not listed by /info", "endpoint", ep.label())
		}
	}
	if _, err := ep.outputIndex(p.cfg.Output); err != nil {
		return err
	}
	return nil
}
