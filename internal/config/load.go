package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds the config file read; a real one is a few KiB.
const maxConfigBytes = 4 << 20

// Load builds the effective configuration: Default() when path is empty,
// else the YAML file at path over the top-level defaults (and the built-in
// backends and models when the file defines neither); then the environment
// overlay read through env (os.Getenv in production); then presets, per
// backend defaults and secrets; then Validate. Every problem found (unknown
// keys with their line, invalid values, weak keys) is reported at once.
func Load(path string, env func(string) string) (*Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	c := defaults()
	var doc *yaml.Node
	if path != "" {
		data, err := readLimited(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if doc, err = decodeYAML(data, c); err != nil {
			return nil, fmt.Errorf("loading config %s: %w", path, err)
		}
	}
	if len(c.Backends) == 0 && len(c.Models) == 0 {
		c.Backends, c.Models = defaultBackendsAndModels()
	}
	overlay := c.applyEnv(env)
	c.applyBackendDefaults()
	secretErrs := c.resolveSecrets(env)
	verr := errors.Join(append(secretErrs, c.Validate())...)
	if doc != nil && verr != nil {
		addLines(verr, doc, env)
	}
	if err := errors.Join(append(overlay, verr)...); err != nil {
		where := "built-in configuration"
		if path != "" {
			where = path
		}
		return nil, fmt.Errorf("invalid config (%s):\n%w", where, err)
	}
	return c, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigBytes)
	}
	return data, nil
}

// decodeYAML decodes data over c. Unknown keys are found first by walking
// the node tree against Config's type, so that every one is reported with
// its line and key path (yaml's own KnownFields check stops at the first
// and names Go types); the strict decode then stays as a backstop.
func decodeYAML(data []byte, c *Config) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file: defaults
	}
	var unknown []error
	checkKeys(doc.Content[0], reflect.TypeFor[Config](), "", &unknown)
	if len(unknown) > 0 {
		return nil, errors.Join(unknown...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			errs := make([]error, 0, len(te.Errors))
			for _, e := range te.Errors {
				errs = append(errs, errors.New(e))
			}
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("decoding YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document")
	}
	return doc.Content[0], nil
}

// envSourced maps top-level keys to the variable that can override them:
// a problem with a value the environment gave has no line in the file.
var envSourced = map[string]string{
	"listen": EnvListen, "public_url": EnvPublicURL, "data_dir": EnvDataDir,
	"trust_proxy": EnvTrustProxy, "cors": EnvCORSOrigins, "storage": EnvStorageFSync,
}

// addLines sets the Line of every *FieldError in err from the file's node
// tree: the line of the key at the error's path, or of the nearest
// enclosing key present in the file.
func addLines(err error, root *yaml.Node, env func(string) string) {
	var walk func(error)
	walk = func(e error) {
		switch u := e.(type) {
		case *FieldError:
			top, _, _ := strings.Cut(u.Path, ".")
			top, _, _ = strings.Cut(top, "[")
			if name, ok := envSourced[top]; ok && strings.TrimSpace(env(name)) != "" {
				return
			}
			if top == "log" && (strings.TrimSpace(env(EnvLogLevel)) != "" || strings.TrimSpace(env(EnvLogFormat)) != "") {
				return
			}
			u.Line = lineOf(root, u.Path)
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
}

// lineOf follows a key path ("backends[1].gradio.api_name") through the
// node tree and returns the line of the deepest node it reaches.
func lineOf(n *yaml.Node, path string) int {
	line := 0
	for _, seg := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
		// Indexes: "inputs[2]" or "choices[0]".
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			rest = strings.TrimPrefix(after, "[")
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line
}

// checkKeys reports every mapping key that names no field of t.
func checkKeys(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		// The anchored node is checked where it is defined; following
		// aliases here could multiply the work of a small file.
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				// "<<: *anchor" merges the anchor's keys here.
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						checkKeys(m, t, path, errs)
					}
				} else {
					checkKeys(v, t, path, errs)
				}
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, unknownKey(k, path, fields))
				continue
			}
			checkKeys(v, ft, joinPath(path, k.Value), errs)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
	// Scalars, type mismatches and free-form values (any) are left to the
	// decoder, which reports mismatches with their line.
}

func unknownKey(k *yaml.Node, path string, fields map[string]reflect.Type) error {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	msg := fmt.Sprintf("line %d: unknown key %q %s", k.Line, k.Value, where)
	if s := closest(k.Value, fields); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		msg += " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return errors.New(msg)
}

// yamlFields maps the YAML key of each field of struct type t to its type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest returns the known key nearest to s by edit distance, if it is
// close enough to be a likely typo.
func closest(s string, fields map[string]reflect.Type) string {
	best, bestD := "", 0
	for n := range fields {
		d := editDistance(s, n)
		if best == "" || d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	// Two edits on a long key, one on a short key; more is not a typo.
	if bestD > 2 || bestD*3 > len(s) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// applyEnv overlays the deployment settings from the environment and
// returns the problems it met (reported alongside Validate's).
func (c *Config) applyEnv(env func(string) string) []error {
	var problems []error
	set := func(dst *string, name string) {
		if v := strings.TrimSpace(env(name)); v != "" {
			*dst = v
		}
	}
	set(&c.Listen, EnvListen)
	set(&c.PublicURL, EnvPublicURL)
	set(&c.DataDir, EnvDataDir)
	set(&c.Log.Level, EnvLogLevel)
	set(&c.Log.Format, EnvLogFormat)
	if v := strings.TrimSpace(env(EnvTrustProxy)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, &FieldError{Path: "trust_proxy", Message: fmt.Sprintf("%s=%q is not a boolean (true or false)", EnvTrustProxy, v)})
		} else {
			c.TrustProxy = b
		}
	}
	if v := strings.TrimSpace(env(EnvCORSOrigins)); v != "" {
		c.CORS.AllowedOrigins = splitList(v)
	}
	if v := strings.TrimSpace(env(EnvStorageFSync)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, &FieldError{Path: "storage.fsync", Message: fmt.Sprintf("%s=%q is not a boolean (true or false)", EnvStorageFSync, v)})
		} else {
			c.Storage.FSync = b
		}
	}
	if v := strings.TrimSpace(env(EnvFetchAllowPrivate)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, &FieldError{Path: "fetch.allow_private_networks", Message: fmt.Sprintf("%s=%q is not a boolean (true or false)", EnvFetchAllowPrivate, v)})
		} else {
			c.Fetch.AllowPrivateNetworks = b
		}
	}
	return problems
}

// applyBackendDefaults adds backends that models name by preset only, merges
// presets into their backends and fills per-type defaults.
func (c *Config) applyBackendDefaults() {
	defined := make(map[string]bool, len(c.Backends))
	for _, b := range c.Backends {
		defined[b.Name] = true
	}
	presets := Presets()
	for _, m := range c.Models {
		for _, name := range m.Backends {
			if _, ok := presets[name]; ok && !defined[name] {
				c.Backends = append(c.Backends, Backend{Name: name, Preset: name})
				defined[name] = true
			}
		}
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		if p, ok := presets[b.Preset]; ok {
			mergePreset(b, p)
		}
		if b.MaxQueue == 0 {
			b.MaxQueue = DefaultBackendMaxQueue
		}
		if b.Type == backendTypeGradio {
			if b.Concurrency == 0 {
				b.Concurrency = DefaultGradioConcurrency
			}
			if b.Gradio != nil && b.Gradio.TokenEnv == "" {
				b.Gradio.TokenEnv = DefaultTokenEnv
			}
		}
		if b.Type == backendTypeJobAPI && b.Concurrency == 0 {
			b.Concurrency = DefaultJobAPIConcurrency
		}
	}
}

// resolveSecrets reads the secrets named by the config from the
// environment. It returns the secrets a backend names but the environment
// lacks, each naming the variable, never a value.
func (c *Config) resolveSecrets(env func(string) string) []error {
	c.Auth.Keys = nil
	if c.Auth.KeysEnv != "" {
		c.Auth.Keys = splitList(env(c.Auth.KeysEnv))
	}
	for i := range c.Backends {
		if g := c.Backends[i].Gradio; g != nil && g.TokenEnv != "" {
			g.Token = strings.TrimSpace(env(g.TokenEnv))
		}
	}
	lookup := func(k string) (string, bool) {
		v := strings.TrimSpace(env(k))
		return v, v != ""
	}
	var problems []error
	for i := range c.Backends {
		j := c.Backends[i].JobAPI
		if j == nil || c.Backends[i].Type != backendTypeJobAPI {
			continue
		}
		err := j.ResolveEnv(lookup)
		if err == nil {
			continue
		}
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			problems = append(problems, &FieldError{Path: fmt.Sprintf("backends[%d].jobapi.submit.header_env", i), Message: strings.TrimPrefix(e.Error(), "submit.header_env")})
		}
	}
	c.SigningKey = strings.TrimSpace(env(EnvSigningKey))
	return problems
}

// splitList splits a comma-separated value, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
