package gradio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// Body limits for upstream answers that are not image files.
const (
	maxConfigBytes = 16 << 20 // /config of a complex Space is hundreds of KB
	maxSmallBody   = 64 << 10 // join, upload, cancel answers and error pages
)

// spaceState is what easel knows about the app from /config and /info.
type spaceState struct {
	fetched  time.Time
	prefix   string
	protocol string
	version  string
	deps     []dependency
	comps    map[int]component
	info     *apiInfo // nil when /info could not be read
	infoErr  error
}

type appConfig struct {
	Version    string       `json:"version"`
	APIPrefix  *string      `json:"api_prefix"`
	Protocol   *string      `json:"protocol"`
	Components []component  `json:"components"`
	Deps       []dependency `json:"dependencies"`
}

type component struct {
	ID    int            `json:"id"`
	Type  string         `json:"type"`
	Props map[string]any `json:"props"`
}

type dependency struct {
	ID      *int   `json:"id"`
	APIName any    `json:"api_name"` // string, or false when hidden
	Inputs  []int  `json:"inputs"`
	Outputs []int  `json:"outputs"`
	index   int    // position in the list, the fn_index of configs without id
	name    string // APIName when it is a string
}

func (d dependency) fnIndex() int {
	if d.ID != nil {
		return *d.ID
	}
	return d.index
}

type apiInfo struct {
	NamedEndpoints map[string]infoEndpoint `json:"named_endpoints"`
}

type infoEndpoint struct {
	Returns []struct {
		Component string `json:"component"`
	} `json:"returns"`
}

// endpoint is a resolved dependency plus what is known of its components.
type endpoint struct {
	sp  *spaceState
	dep dependency
	api string // api name without slash, "" if none
}

func (e *endpoint) label() string {
	if e.api != "" {
		return "/" + e.api
	}
	return "fn_index " + strconv.Itoa(e.dep.fnIndex())
}

// choices returns the live Dropdown choices of input position pos as the
// values to send (entries may be strings or [label, value] pairs).
func (e *endpoint) choices(pos int) []string {
	if pos >= len(e.dep.Inputs) {
		return nil
	}
	c, ok := e.sp.comps[e.dep.Inputs[pos]]
	if !ok {
		return nil
	}
	raw, _ := c.Props["choices"].([]any)
	var out []string
	for _, ch := range raw {
		switch v := ch.(type) {
		case string:
			out = append(out, v)
		case []any:
			if len(v) == 2 {
				if s, ok := v[1].(string); ok {
					out = append(out, s)
				} else if s, ok := v[0].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// dropdownValue is the component's initial value, the app's own default.
func (e *endpoint) dropdownValue(pos int) (string, bool) {
	if pos >= len(e.dep.Inputs) {
		return "", false
	}
	c, ok := e.sp.comps[e.dep.Inputs[pos]]
	if !ok {
		return "", false
	}
	s, ok := c.Props["value"].(string)
	return s, ok
}

// outputIndex finds the output position that holds the image(s): the
// configured one, else the first Image or Gallery output by component type
// (from /config, else /info), else -1 meaning "scan the values".
func (e *endpoint) outputIndex(o Output) (int, error) {
	if o.Index != nil {
		if n := len(e.dep.Outputs); n > 0 && *o.Index >= n {
			return 0, refuse(provider.KindConfig, "output.index %d but endpoint %s has %d outputs", *o.Index, e.label(), n)
		}
		return *o.Index, nil
	}
	for i, id := range e.dep.Outputs {
		if c, ok := e.sp.comps[id]; ok {
			switch strings.ToLower(c.Type) {
			case "image", "gallery", "imageslider":
				return i, nil
			}
		}
	}
	if e.sp.info != nil && e.api != "" {
		if ie, ok := e.sp.info.NamedEndpoints["/"+e.api]; ok {
			for i, r := range ie.Returns {
				if r.Component == "Image" || r.Component == "Gallery" {
					return i, nil
				}
			}
		}
	}
	return -1, nil
}

// resolve finds the configured endpoint among the app's dependencies.
func (sp *spaceState) resolve(cfg Config) (*endpoint, error) {
	if cfg.APIName != "" {
		for _, d := range sp.deps {
			if d.name == cfg.APIName {
				return &endpoint{sp: sp, dep: d, api: d.name}, nil
			}
		}
		return nil, refuse(provider.KindConfig, "the app has no endpoint named /%s", cfg.APIName)
	}
	for _, d := range sp.deps {
		if d.fnIndex() == *cfg.FnIndex {
			return &endpoint{sp: sp, dep: d, api: d.name}, nil
		}
	}
	return nil, refuse(provider.KindConfig, "the app has no dependency with fn_index %d", *cfg.FnIndex)
}

// loadSpace returns the cached app description, fetching it when absent,
// older than ConfigTTL, or when force is set (endpoint drift).
func (p *Provider) loadSpace(ctx context.Context, force bool) (*spaceState, error) {
	p.mu.Lock()
	sp := p.space
	p.mu.Unlock()
	if !force && sp != nil && time.Since(sp.fetched) < p.cfg.ConfigTTL {
		return sp, nil
	}
	key := "config"
	if force {
		key = "config-force"
	}
	// WithoutCancel: the shared fetch must not fail for every waiter when
	// the first caller goes away; each waiter still stops on its own ctx.
	ch := p.group.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.cfg.RequestTimeout)
		defer cancel()
		sp, err := p.fetchSpace(fctx)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.space = sp
		p.mu.Unlock()
		return sp, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*spaceState), nil
	case <-ctx.Done():
		return nil, upstream.CanceledError(ctx, "waiting for the app's /config")
	}
}

func (p *Provider) fetchSpace(ctx context.Context) (*spaceState, error) {
	body, err := p.getJSON(ctx, p.base+"/config", maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("reading /config: %w", err)
	}
	var ac appConfig
	if err := json.Unmarshal(body, &ac); err != nil {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "the app's /config is not valid JSON", NotStarted: true, Err: err}
	}
	proto := ""
	if ac.Protocol != nil {
		proto = *ac.Protocol
	}
	switch proto {
	case "sse_v1", "sse_v2", "sse_v2.1", "sse_v3":
	case "":
		return nil, refuse(provider.KindConfig, "the app's /config names no protocol (Gradio 3.x, websockets): unsupported Gradio version")
	default:
		return nil, refuse(provider.KindConfig, "the app speaks protocol %q: unsupported Gradio version (need sse_v1 or later, Gradio 4.9+)", proto)
	}
	sp := &spaceState{fetched: time.Now(), protocol: proto, version: ac.Version, comps: make(map[int]component, len(ac.Components))}
	if ac.APIPrefix != nil {
		sp.prefix = strings.TrimRight(*ac.APIPrefix, "/")
		if sp.prefix != "" && !strings.HasPrefix(sp.prefix, "/") {
			sp.prefix = "/" + sp.prefix
		}
	}
	for _, c := range ac.Components {
		sp.comps[c.ID] = c
	}
	for i, d := range ac.Deps {
		d.index = i
		if s, ok := d.APIName.(string); ok {
			d.name = strings.TrimPrefix(s, "/")
		}
		sp.deps = append(sp.deps, d)
	}
	p.log.Debug("gradio app config read", "gradio_version", sp.version, "protocol", proto, "api_prefix", sp.prefix, "dependencies", len(sp.deps))
	ib, err := p.getJSON(ctx, p.base+sp.prefix+"/info", maxConfigBytes)
	if err == nil {
		var info apiInfo
		if err = json.Unmarshal(ib, &info); err == nil {
			sp.info = &info
		}
	}
	if err != nil {
		sp.infoErr = fmt.Errorf("reading /info: %w", err)
		p.log.Warn("gradio /info unavailable; picking outputs from /config only", "err", err)
	}
	return sp, nil
}

// getJSON GETs a small JSON document, mapping HTTP failures to typed errors.
func (p *Provider) getJSON(ctx context.Context, u string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	req, err := p.newRequest(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, tooBig, err := upstream.ReadLimited(resp.Body, limit)
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, body, true)
	}
	if err != nil {
		return nil, &provider.Error{Kind: provider.KindUnavailable, Message: "reading the app's answer failed", NotStarted: true, Err: err}
	}
	if tooBig {
		return nil, provider.Errorf(provider.KindProtocol, "the app's answer exceeds %d bytes", limit)
	}
	return body, nil
}
