package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/jobapi"
)

// FieldError is one validation problem, located by its key path in the
// YAML ("backends[1].gradio.api_name").
type FieldError struct {
	// Path is the key path of the offending value.
	Path string
	// Message says what is wrong; it never contains a secret.
	Message string
	// Line is the line in the config file of the key (or of its nearest
	// enclosing key the file has); 0 when the value did not come from the
	// file.
	Line int
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Message)
	}
	return e.Path + ": " + e.Message
}

// weakKeys are values seen as defaults in examples and tutorials; a key equal
// to one of them (ignoring case) refuses to start even if long enough.
var weakKeys = map[string]bool{
	"sk-1234": true, "sk-12345678": true, "changeme": true, "change-me": true,
	"test": true, "testing": true, "password": true, "secret": true,
	"admin": true, "default": true, "example": true, "apikey": true,
	"api-key": true, "your-api-key": true, "your_api_key": true,
	"sk-your-key-here": true, "replace-me": true, "letmein": true,
	"sk-xxxxxxxxxxxxxxxxxxxxxxxx": true, "00000000000000000000": true,
	"12345678901234567890": true, "changemechangemechangeme": true,
}

var (
	backendNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	choiceRE      = regexp.MustCompile(`^\s*\d+\s*[x×]\s*\d+`)
)

var inputFroms = map[string]bool{
	"prompt": true, "negative_prompt": true, "width": true, "height": true,
	"size": true, "size_choice": true, "steps": true, "seed": true,
	"randomize_seed": true, "image": true, "images": true, "mask": true,
}

// Validate checks the whole configuration and returns every problem found,
// joined with errors.Join; each is a *FieldError naming its key path. It
// expects secrets to be resolved (Load does that).
func (c *Config) Validate() error {
	v := &validator{}
	c.validateServer(v)
	c.validateImages(v)
	c.validateFetch(v)
	c.validateJobs(v)
	backends := c.validateBackends(v)
	c.validateModels(v, backends)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *Config) validateServer(v *validator) {
	// A non-loopback address without keys in the environment is not
	// refused here: keys may be in the database, which serve checks with
	// CheckExposure once the store is open.
	if err := checkListen(c.Listen); err != nil {
		v.add("listen", "%v", err)
	}
	if c.PublicURL != "" {
		if err := checkBaseURL(c.PublicURL); err != nil {
			v.add("public_url", "%v", err)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.Auth.KeysEnv != "" && !envNameRE.MatchString(c.Auth.KeysEnv) {
		v.add("auth.keys_env", "%q is not an environment variable name", c.Auth.KeysEnv)
	}
	for i, k := range c.Auth.Keys {
		// Never print the key: name it by its position in the variable.
		if why := weakKeyReason(k); why != "" {
			v.add("auth.keys_env", "key %d of %d in %s %s", i+1, len(c.Auth.Keys), c.Auth.KeysEnv, why)
		}
	}
	for i, o := range c.CORS.AllowedOrigins {
		path := fmt.Sprintf("cors.allowed_origins[%d]", i)
		if o == "*" {
			if len(c.Auth.Keys) > 0 {
				v.add(path, `"*" (any origin) cannot be combined with API keys: a page on any site could use a key a browser holds; list the allowed origins instead`)
			}
			continue
		}
		if err := checkOrigin(o); err != nil {
			v.add(path, "%v", err)
		}
	}
	if c.SigningKey != "" {
		if _, err := DecodeSigningKey(c.SigningKey); err != nil {
			v.add("signing_key", "%s: %v", EnvSigningKey, err)
		}
	}
}

// weakKeyReason says why key is too weak to accept, or "" if it is fine.
func weakKeyReason(key string) string {
	if weakKeys[strings.ToLower(key)] {
		return "is a well-known placeholder value; generate a random key"
	}
	if n := len([]rune(key)); n < MinAPIKeyLength {
		return fmt.Sprintf("is too short (%d characters; at least %d)", n, MinAPIKeyLength)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "contains whitespace or control characters"
	}
	distinct := map[rune]bool{}
	for _, r := range key {
		distinct[r] = true
	}
	if len(distinct) < minAPIKeyDistinctCharacters {
		return fmt.Sprintf("uses fewer than %d distinct characters; generate a random key", minAPIKeyDistinctCharacters)
	}
	return ""
}

func (c *Config) validateImages(v *validator) {
	im := c.Images
	switch im.DefaultResponseFormat {
	case "b64_json", "url":
	default:
		v.add("images.default_response_format", "%q is not one of b64_json, url", im.DefaultResponseFormat)
	}
	if im.URLTTL < time.Second || im.URLTTL > MaxURLTTL {
		v.add("images.url_ttl", "%s is outside 1s..%s", im.URLTTL, MaxURLTTL)
	}
	if im.Stagger < 0 || im.Stagger > time.Minute {
		v.add("images.stagger", "%s is outside 0..1m", im.Stagger)
	}
	if im.JobTimeout < time.Second || im.JobTimeout > 24*time.Hour {
		v.add("images.job_timeout", "%s is outside 1s..24h", im.JobTimeout)
	}
	if im.MaxN < 1 || im.MaxN > 100 {
		v.add("images.max_n", "%d is outside 1..100", im.MaxN)
	}
	if im.MaxPromptChars < 1 {
		v.add("images.max_prompt_chars", "must be at least 1, got %d", im.MaxPromptChars)
	}
	if im.MaxPixels < 64*64 || im.MaxPixels > 16384*16384 {
		v.add("images.max_pixels", "%d is outside %d..%d", im.MaxPixels, 64*64, 16384*16384)
	}
}

func (c *Config) validateFetch(v *validator) {
	f := c.Fetch
	if len(f.AllowedPorts) == 0 {
		v.add("fetch.allowed_ports", "must list at least one port (default [80, 443])")
	}
	for i, port := range f.AllowedPorts {
		if port < 1 || port > 65535 {
			v.add(fmt.Sprintf("fetch.allowed_ports[%d]", i), "%d is outside 1..65535", port)
		}
	}
	if f.MaxBytes < 1 || f.MaxBytes > MaxFetchMaxBytes {
		v.add("fetch.max_bytes", "%d is outside 1..%d", f.MaxBytes, MaxFetchMaxBytes)
	}
	if f.Timeout < time.Second || f.Timeout > 2*time.Minute {
		v.add("fetch.timeout", "%s is outside 1s..2m", f.Timeout)
	}
}

func (c *Config) validateBackends(v *validator) map[string]bool {
	names := make(map[string]bool, len(c.Backends))
	presets := Presets()
	for i, b := range c.Backends {
		path := fmt.Sprintf("backends[%d]", i)
		switch {
		case b.Name == "":
			v.add(path+".name", "is required")
		case !backendNameRE.MatchString(b.Name):
			v.add(path+".name", "%q must be lowercase letters, digits, '.', '_' or '-' (at most 63)", b.Name)
		case names[b.Name]:
			v.add(path+".name", "%q is defined twice", b.Name)
		}
		names[b.Name] = true
		if b.Preset != "" {
			if _, ok := presets[b.Preset]; !ok {
				v.add(path+".preset", "%q is not a built-in preset (known: %s)", b.Preset, strings.Join(PresetNames(), ", "))
			}
		}
		if b.Concurrency < 1 || b.Concurrency > 1000 {
			v.add(path+".concurrency", "%d is outside 1..1000", b.Concurrency)
		}
		if b.MaxQueue < 0 || b.MaxQueue > 100000 {
			v.add(path+".max_queue", "%d is outside 0..100000", b.MaxQueue)
		}
		if b.QueueTimeout < 0 {
			v.add(path+".queue_timeout", "must not be negative")
		}
		switch b.Type {
		case backendTypeGradio:
			if b.Gradio == nil {
				v.add(path+".gradio", "is required for type gradio (or set preset)")
			} else {
				validateGradio(v, path+".gradio", b.Gradio)
			}
		case backendTypeJobAPI:
			if b.JobAPI == nil {
				v.add(path+".jobapi", "is required for type jobapi (or set preset)")
			} else {
				validateJobAPI(v, path+".jobapi", b.Name, b.JobAPI)
			}
		case "":
			v.add(path+".type", "is required (gradio or jobapi), or set preset")
		default:
			v.add(path+".type", "%q is not a supported backend type (gradio, jobapi)", b.Type)
		}
		if b.Type != backendTypeGradio && b.Type != "" && b.Gradio != nil {
			v.add(path+".gradio", "is only valid with type gradio")
		}
		if b.Type != backendTypeJobAPI && b.Type != "" && b.JobAPI != nil {
			v.add(path+".jobapi", "is only valid with type jobapi")
		}
	}
	return names
}

func validateGradio(v *validator, path string, g *gradio.Config) {
	if strings.TrimSpace(g.Space) == "" {
		v.add(path+".space", "is required (a Space id owner/name or a base URL)")
	} else if strings.Contains(g.Space, "://") {
		if err := checkBaseURL(g.Space); err != nil {
			v.add(path+".space", "%v", err)
		}
	} else if _, err := gradio.BaseURL(g.Space); err != nil {
		v.add(path+".space", "%v", err)
	}
	if g.APIName == "" && g.FnIndex == nil {
		v.add(path+".api_name", "is required (or fn_index)")
	}
	if g.FnIndex != nil && *g.FnIndex < 0 {
		v.add(path+".fn_index", "must not be negative")
	}
	if g.TokenEnv != "" && !envNameRE.MatchString(g.TokenEnv) {
		v.add(path+".token_env", "%q is not an environment variable name", g.TokenEnv)
	}
	if len(g.Inputs) == 0 {
		v.add(path+".inputs", "at least one input is required")
	}
	hasPrompt := false
	for i, in := range g.Inputs {
		ip := fmt.Sprintf("%s.inputs[%d]", path, i)
		if in.From != "" && in.Value != nil {
			v.add(ip, "set either from or value, not both")
		}
		if in.From != "" && !inputFroms[in.From] {
			v.add(ip+".from", "%q is not a request field (prompt, negative_prompt, width, height, size, size_choice, steps, seed, randomize_seed, image, images)", in.From)
		}
		if in.From == "prompt" {
			hasPrompt = true
		}
		switch in.Type {
		case "", "int", "float", "string", "bool":
		default:
			v.add(ip+".type", "%q is not one of int, float, string, bool", in.Type)
		}
		if len(in.Choices) > 0 && in.From != "size_choice" {
			v.add(ip+".choices", "only applies to from: size_choice")
		}
		for j, ch := range in.Choices {
			if !choiceRE.MatchString(ch) {
				v.add(fmt.Sprintf("%s.choices[%d]", ip, j), "%q does not start with WxH", ch)
			}
		}
	}
	if len(g.Inputs) > 0 && !hasPrompt {
		v.add(path+".inputs", "no input takes the prompt (from: prompt)")
	}
	switch g.Output.Kind {
	case "", "auto", "image", "gallery", "list":
	default:
		v.add(path+".output.kind", "%q is not one of auto, image, gallery, list", g.Output.Kind)
	}
	if g.Output.Index != nil && *g.Output.Index < 0 {
		v.add(path+".output.index", "must not be negative")
	}
	if g.Output.SeedIndex != nil && *g.Output.SeedIndex < 0 {
		v.add(path+".output.seed_index", "must not be negative")
	}
	s := g.Size
	for _, f := range []struct {
		name string
		val  int
	}{{"default_width", s.DefaultWidth}, {"default_height", s.DefaultHeight}, {"min", s.Min}, {"max", s.Max}, {"multiple", s.Multiple}} {
		if f.val < 0 || f.val > 16384 {
			v.add(path+".size."+f.name, "%d is outside 0..16384", f.val)
		}
	}
	if s.Min > 0 && s.Max > 0 && s.Min > s.Max {
		v.add(path+".size", "min %d is above max %d", s.Min, s.Max)
	}
	for _, d := range []struct {
		name string
		val  int
	}{{"default_width", s.DefaultWidth}, {"default_height", s.DefaultHeight}} {
		if d.val > 0 && ((s.Min > 0 && d.val < s.Min) || (s.Max > 0 && d.val > s.Max)) {
			v.add(path+".size."+d.name, "%d is outside min..max (%d..%d)", d.val, s.Min, s.Max)
		}
		if d.val > 0 && s.Multiple > 0 && d.val%s.Multiple != 0 {
			v.add(path+".size."+d.name, "%d is not a multiple of %d", d.val, s.Multiple)
		}
	}
	st := g.Steps
	if st.Min < 0 || st.Max < 0 || st.Default < 0 {
		v.add(path+".steps", "values must not be negative")
	}
	if st.Min > 0 && st.Max > 0 && st.Min > st.Max {
		v.add(path+".steps", "min %d is above max %d", st.Min, st.Max)
	}
	if st.Default > 0 && ((st.Min > 0 && st.Default < st.Min) || (st.Max > 0 && st.Default > st.Max)) {
		v.add(path+".steps.default", "%d is outside min..max (%d..%d)", st.Default, st.Min, st.Max)
	}
	for _, d := range []struct {
		name string
		val  time.Duration
	}{{"stall_timeout", g.StallTimeout}, {"request_timeout", g.RequestTimeout}, {"config_ttl", g.ConfigTTL}} {
		if d.val < 0 {
			v.add(path+"."+d.name, "must not be negative")
		}
	}
	if g.MaxResultBytes < 0 {
		v.add(path+".max_result_bytes", "must not be negative")
	}
}

// jobAPIKeyRE matches the key path that starts a jobapi problem
// ("poll.url", "submit.fields[2]").
var jobAPIKeyRE = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*$`)

// validateJobAPI runs the job-API provider's own validation, the single
// source of its rules, and files each problem under its key path. It
// builds no network client and contacts nothing.
func validateJobAPI(v *validator, path, name string, cfg *jobapi.Config) {
	if name == "" {
		name = "unnamed" // the missing name is reported on its own
	}
	p, err := jobapi.New(name, *cfg, jobapi.Options{HTTPClient: &http.Client{}})
	if err == nil {
		_ = p.Close()
		return
	}
	// New wraps the joined problems once; report each on its own.
	problems := []error{err}
	if inner := errors.Unwrap(err); inner != nil {
		problems = []error{inner}
	}
	if j, ok := problems[0].(interface{ Unwrap() []error }); ok {
		problems = j.Unwrap()
	}
	for _, e := range problems {
		// Messages start with their key: "poll.url: ...", "submit.fields[1]
		// (seed): ...", "max_n is negative".
		msg := e.Error()
		end := strings.IndexAny(msg, ": ")
		if end <= 0 || !jobAPIKeyRE.MatchString(msg[:end]) {
			v.add(path, "%s", msg)
			continue
		}
		key, rest := msg[:end], msg[end:]
		if strings.HasPrefix(rest, ": ") {
			msg = rest[2:]
		}
		v.add(path+"."+key, "%s", msg)
	}
}

func (c *Config) validateModels(v *validator, backends map[string]bool) {
	if len(c.Models) == 0 {
		v.add("models", "at least one model is required")
	}
	ids := map[string]string{} // id or alias -> path of its first definition
	claim := func(id, path string) {
		if id == "" {
			return
		}
		if first, ok := ids[id]; ok {
			v.add(path, "%q is already used by %s", id, first)
			return
		}
		ids[id] = path
	}
	for i, m := range c.Models {
		path := fmt.Sprintf("models[%d]", i)
		switch {
		case strings.TrimSpace(m.ID) == "":
			v.add(path+".id", "is required")
		case len(m.ID) > 256 || strings.ContainsFunc(m.ID, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			v.add(path+".id", "%q must be at most 256 characters without spaces or control characters", m.ID)
		}
		claim(m.ID, path+".id")
		for j, a := range m.Aliases {
			ap := fmt.Sprintf("%s.aliases[%d]", path, j)
			if strings.TrimSpace(a) == "" {
				v.add(ap, "must not be empty")
				continue
			}
			claim(a, ap)
		}
		if len(m.Backends) == 0 {
			v.add(path+".backends", "at least one backend is required")
		}
		seen := map[string]bool{}
		for j, b := range m.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", path, j)
			if !backends[b] {
				v.add(bp, "%q is not a defined backend or a built-in preset", b)
			}
			if seen[b] {
				v.add(bp, "%q is listed twice", b)
			}
			seen[b] = true
		}
	}
}

// IsLoopbackListen reports whether a listen address binds only loopback:
// a 127.0.0.0/8 or ::1 address, or the name localhost. An empty host
// (":8080") binds every interface, and any other name is not trusted to
// resolve to loopback.
func IsLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

func checkListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has no valid port (0..65535)", listen)
	}
	if strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%q has an invalid host", listen)
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must be an absolute http or https URL", redactURL(s))
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", redactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		// A URL is no place for credentials: they would end up in logs and
		// in this file. Do not echo them either.
		return fmt.Errorf("%q must not have a query, fragment or user info", redactURL(s))
	}
	return nil
}

func checkOrigin(o string) error {
	if strings.EqualFold(o, "null") {
		return errors.New(`"null" is never allowed: sandboxed and data: documents send it`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must be only scheme://host[:port], without a path", o)
	}
	return nil
}

// DecodeSigningKey decodes a URL signing key given as hex or base64
// (standard or URL alphabet, padded or not); it must hold at least 32
// bytes.
func DecodeSigningKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var key []byte
	if b, err := hex.DecodeString(s); err == nil {
		key = b
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				key = b
				break
			}
		}
	}
	if key == nil {
		return nil, errors.New("is neither hex nor base64")
	}
	if len(key) < minSigningKeyBytes {
		return nil, fmt.Errorf("holds %d bytes; at least %d are required", len(key), minSigningKeyBytes)
	}
	return key, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
