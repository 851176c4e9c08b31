package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// goodKey is long and varied enough to pass the weak-key checks.
const goodKey = "k3y-7Qp2Xv9Lm4Rt8Zs1Wn6Yb"

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fieldPaths collects the Path of every *FieldError inside err.
func fieldPaths(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe.Path)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./easel-data" || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("top-level defaults = %q %q %+v", c.Listen, c.DataDir, c.Log)
	}
	im := c.Images
	want := ImagesConfig{DefaultResponseFormat: "b64_json", URLTTL: time.Hour, JobTimeout: 300 * time.Second, MaxN: 10, MaxPromptChars: 32000, MaxPixels: 40000000}
	if diff := cmp.Diff(want, im); diff != "" {
		t.Errorf("images defaults (-want +got):\n%s", diff)
	}
	if len(c.Models) != 1 || c.Models[0].ID != "z-image-turbo" {
		t.Fatalf("models = %+v", c.Models)
	}
	m := c.Models[0]
	if diff := cmp.Diff([]string{"z-image-turbo-mrfakename", "z-image-turbo-tongyi"}, m.Backends); diff != "" {
		t.Errorf("failover order (-want +got):\n%s", diff)
	}
	for _, a := range []string{"dall-e-3", "dall-e-2", "gpt-image-1", "gpt-image-1.5"} {
		if !slices.Contains(m.Aliases, a) {
			t.Errorf("alias %q missing from %v", a, m.Aliases)
		}
	}
	for _, b := range c.Backends {
		if b.Type != "gradio" || b.Concurrency != 1 || b.MaxQueue != 100 || b.Gradio == nil || b.Gradio.TokenEnv != "HF_TOKEN" {
			t.Errorf("backend %s defaults: type=%q conc=%d queue=%d gradio=%+v", b.Name, b.Type, b.Concurrency, b.MaxQueue, b.Gradio)
		}
	}
	// Load without a file must give the same configuration.
	got, err := Load("", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("Load(\"\") differs from Default() (-want +got):\n%s", diff)
	}
}

func TestPresetsMatchSpaces(t *testing.T) {
	t.Parallel()
	p := Presets()
	mr := p[PresetZImageMrfakename].Gradio
	var froms []string
	for _, in := range mr.Inputs {
		froms = append(froms, in.From)
	}
	// The Space's function takes height before width.
	if diff := cmp.Diff([]string{"prompt", "height", "width", "steps", "seed", "randomize_seed"}, froms); diff != "" {
		t.Errorf("mrfakename inputs (-want +got):\n%s", diff)
	}
	if mr.APIName != "/generate_image" || *mr.Output.Index != 0 || *mr.Output.SeedIndex != 1 || mr.Output.Kind != "image" {
		t.Errorf("mrfakename endpoint/output = %q %+v", mr.APIName, mr.Output)
	}
	ty := p[PresetZImageTongyi].Gradio
	if len(ty.Inputs) != 7 || ty.Inputs[1].From != "size_choice" || ty.Inputs[4].Value != 3 || ty.Inputs[5].From != "randomize_seed" {
		t.Errorf("tongyi inputs = %+v", ty.Inputs)
	}
	if v, ok := ty.Inputs[6].Value.([]any); !ok || len(v) != 0 {
		t.Errorf("tongyi gallery input = %#v, want []any{}", ty.Inputs[6].Value)
	}
	if len(ty.Inputs[1].Choices) != 33 || ty.Inputs[1].Choices[0] != "1024x1024 ( 1:1 )" {
		t.Errorf("tongyi choices = %v", ty.Inputs[1].Choices)
	}
	if ty.Output.Kind != "gallery" || *ty.Output.SeedIndex != 2 {
		t.Errorf("tongyi output = %+v", ty.Output)
	}
	// Each call returns fresh values.
	p[PresetZImageTongyi].Gradio.Inputs[1].Choices[0] = "changed"
	if Presets()[PresetZImageTongyi].Gradio.Inputs[1].Choices[0] != "1024x1024 ( 1:1 )" {
		t.Error("Presets shares state between calls")
	}
	// Every preset is a valid backend on its own.
	for name := range p {
		c := defaults()
		c.Backends = []Backend{{Name: "b", Preset: name}}
		c.Models = []Model{{ID: "m", Backends: []string{"b"}}}
		c.applyBackendDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `listen: 127.0.0.1:9000
colour: blue
backends:
  - name: a
    preset: z-image-turbo-mrfakename
    gradio:
      api_nam: /x
      size:
        maxx: 5
models:
  - id: m
    backends: [a]
`)
	_, err := Load(path, envMap(nil))
	if err == nil {
		t.Fatal("Load accepted unknown keys")
	}
	msg := err.Error()
	for _, want := range []string{
		`line 2: unknown key "colour" at the top level`,
		`line 7: unknown key "api_nam" in backends[0].gradio (did you mean "api_name"?)`,
		`line 9: unknown key "maxx" in backends[0].gradio.size (did you mean "max"?)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `listen: "nonsense"
data_dir: ""
log: {level: loud, format: xml}
images:
  default_response_format: jpeg
  url_ttl: 200h
  max_n: 0
backends:
  - name: Bad Name
    type: gradio
    gradio:
      space: ""
      inputs:
        - from: colour
        - from: prompt
          value: x
  - name: b
    type: carrier-pigeon
  - name: c
    preset: no-such-preset
    type: gradio
    gradio: {space: a/b, api_name: /x, inputs: [{from: prompt}], size: {min: 900, max: 800}}
models:
  - id: m
    aliases: [m]
    backends: [nope, b, b]
`)
	_, err := Load(path, envMap(nil))
	if err == nil {
		t.Fatal("Load accepted an invalid config")
	}
	got := fieldPaths(err)
	for _, want := range []string{
		"listen", "data_dir", "log.level", "log.format",
		"images.default_response_format", "images.url_ttl", "images.max_n",
		"backends[0].name", "backends[0].gradio.space", "backends[0].gradio.api_name",
		"backends[0].gradio.inputs[0].from", "backends[0].gradio.inputs[1]",
		"backends[1].type", "backends[2].preset", "backends[2].gradio.size",
		"models[0].aliases[0]", "models[0].backends[0]", "models[0].backends[2]",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no problem reported at %s; got %v", want, got)
		}
	}
	if !strings.Contains(err.Error(), `backends[1].type: "carrier-pigeon" is not a supported backend type`) {
		t.Errorf("message does not name the key path and value:\n%v", err)
	}
}

func TestLoadTypeErrorsHaveLines(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "images:\n  max_n: many\n  job_timeout: 300\n")
	_, err := Load(path, envMap(nil))
	if err == nil {
		t.Fatal("Load accepted bad types")
	}
	for _, want := range []string{"line 2:", "line 3:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestDurationsParse(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `images:
  url_ttl: 90m
  stagger: 1.5s
  job_timeout: 2m
backends:
  - name: z
    preset: z-image-turbo-mrfakename
    queue_timeout: 45s
    gradio: {stall_timeout: 2m30s}
models: [{id: z, backends: [z]}]
`)
	c, err := Load(path, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Images.URLTTL != 90*time.Minute || c.Images.Stagger != 1500*time.Millisecond || c.Images.JobTimeout != 2*time.Minute {
		t.Errorf("images durations = %+v", c.Images)
	}
	if c.Backends[0].QueueTimeout != 45*time.Second || c.Backends[0].Gradio.StallTimeout != 150*time.Second {
		t.Errorf("backend durations = %v %v", c.Backends[0].QueueTimeout, c.Backends[0].Gradio.StallTimeout)
	}
}

func TestEnvOverlay(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "listen: 127.0.0.1:7000\nlog: {level: warn}\n")
	c, err := Load(path, envMap(map[string]string{
		"EASEL_LISTEN":       "0.0.0.0:9090",
		"EASEL_PUBLIC_URL":   "https://img.example.com/easel",
		"EASEL_DATA_DIR":     "/var/lib/easel",
		"EASEL_LOG_LEVEL":    "debug",
		"EASEL_LOG_FORMAT":   "json",
		"EASEL_TRUST_PROXY":  "true",
		"EASEL_CORS_ORIGINS": "https://a.example, https://b.example",
		"EASEL_API_KEYS":     goodKey + " , ," + strings.ToUpper(goodKey),
		"HF_TOKEN":           "hf_token_value",
		"EASEL_SIGNING_KEY":  strings.Repeat("ab", 32),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9090" || c.PublicURL != "https://img.example.com/easel" || c.DataDir != "/var/lib/easel" ||
		c.Log != (LogConfig{Level: "debug", Format: "json"}) || !c.TrustProxy {
		t.Errorf("overlay not applied: %+v", c)
	}
	if diff := cmp.Diff([]string{"https://a.example", "https://b.example"}, c.CORS.AllowedOrigins); diff != "" {
		t.Errorf("cors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{goodKey, strings.ToUpper(goodKey)}, c.Auth.Keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	for _, b := range c.Backends {
		if b.Gradio.Token != "hf_token_value" {
			t.Errorf("backend %s token not resolved", b.Name)
		}
	}
	if c.SigningKey == "" {
		t.Error("signing key not read")
	}

	// A backend can read its token from its own variable.
	path = writeConfig(t, "backends: [{name: a, preset: flux-1-schnell, gradio: {token_env: MY_TOKEN}}]\nmodels: [{id: f, backends: [a]}]\n")
	c, err = Load(path, envMap(map[string]string{"MY_TOKEN": "t1", "HF_TOKEN": "t2"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backends[0].Gradio.Token != "t1" {
		t.Errorf("token = %q, want t1", c.Backends[0].Gradio.Token)
	}

	_, err = Load("", envMap(map[string]string{"EASEL_TRUST_PROXY": "perhaps", "EASEL_LOG_LEVEL": "chatty"}))
	if got := fieldPaths(err); !slices.Contains(got, "trust_proxy") || !slices.Contains(got, "log.level") {
		t.Errorf("bad env values not all reported: %v", err)
	}
}

func TestAuthPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		file   string
		wantOK bool
		path   string
	}{
		{name: "no keys on loopback", wantOK: true},
		{name: "good key on all interfaces", env: map[string]string{"EASEL_LISTEN": "0.0.0.0:8080", "EASEL_API_KEYS": goodKey}, wantOK: true},
		{name: "sk-1234", env: map[string]string{"EASEL_API_KEYS": "sk-1234"}, path: "auth.keys_env"},
		{name: "changeme", env: map[string]string{"EASEL_API_KEYS": "changeme"}, path: "auth.keys_env"},
		{name: "test", env: map[string]string{"EASEL_API_KEYS": "test"}, path: "auth.keys_env"},
		{name: "short", env: map[string]string{"EASEL_API_KEYS": "Ab3dE6gH9jK2mN5"}, path: "auth.keys_env"},
		{name: "long placeholder", env: map[string]string{"EASEL_API_KEYS": "changemechangemechangeme"}, path: "auth.keys_env"},
		{name: "repetitive", env: map[string]string{"EASEL_API_KEYS": "sk-1234sk-1234sk-1234sk-1234"}, path: "auth.keys_env"},
		{name: "one weak among good", env: map[string]string{"EASEL_API_KEYS": goodKey + ",password"}, path: "auth.keys_env"},
		{name: "keys from another variable", file: "auth: {keys_env: MY_KEYS}\n", env: map[string]string{"MY_KEYS": "secret"}, path: "auth.keys_env"},
		{name: "star origin with keys", env: map[string]string{"EASEL_API_KEYS": goodKey, "EASEL_CORS_ORIGINS": "*"}, path: "cors.allowed_origins[0]"},
		{name: "star origin without keys", env: map[string]string{"EASEL_CORS_ORIGINS": "*"}, wantOK: true},
		{name: "null origin", env: map[string]string{"EASEL_CORS_ORIGINS": "null"}, path: "cors.allowed_origins[0]"},
		{name: "origin with path", env: map[string]string{"EASEL_CORS_ORIGINS": "https://a.example/app"}, path: "cors.allowed_origins[0]"},
		{name: "short signing key", env: map[string]string{"EASEL_SIGNING_KEY": "abcd"}, path: "signing_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			_, err := Load(path, envMap(tt.env))
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Load = %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want a refusal")
			}
			if got := fieldPaths(err); !slices.Contains(got, tt.path) {
				t.Errorf("problem paths = %v, want %s", got, tt.path)
			}
			// The message must never repeat the key itself.
			for k, v := range tt.env {
				if (k == "EASEL_API_KEYS" || k == "MY_KEYS" || k == "EASEL_SIGNING_KEY") && strings.Contains(err.Error(), v) {
					t.Errorf("error echoes the secret %q: %v", v, err)
				}
			}
		})
	}
}

func TestIsLoopbackListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.9.8.7:1", true},
		{"localhost:80", true},
		{"LocalHost:80", true},
		{"[::1]:9", true},
		{"[::ffff:127.0.0.1]:9", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"[::]:8080", false},
		{"192.168.1.2:80", false},
		{"example.com:80", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackListen(tt.addr); got != tt.want {
			t.Errorf("IsLoopbackListen(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestPresetMergeWithOverrides(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `backends:
  - name: tongyi-fast
    preset: z-image-turbo-tongyi
    concurrency: 3
    gradio:
      space: https://my-copy.example.com
      size: {max: 1536}
      steps: {default: 6}
models:
  - id: z
    backends: [tongyi-fast, flux-1-schnell]
`)
	c, err := Load(path, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Backends) != 2 {
		t.Fatalf("backends = %d, want the defined one plus the preset named by the model", len(c.Backends))
	}
	b := c.Backends[0]
	g := b.Gradio
	want := Presets()[PresetZImageTongyi].Gradio
	if b.Type != "gradio" || b.Concurrency != 3 || b.MaxQueue != 100 {
		t.Errorf("backend = %+v", b)
	}
	if g.Space != "https://my-copy.example.com" || g.APIName != "/generate" || g.Size.Max != 1536 || g.Size.Min != want.Size.Min ||
		g.Steps.Default != 6 || g.Steps.Max != want.Steps.Max || g.TokenEnv != "HF_TOKEN" {
		t.Errorf("merged gradio = %+v", g)
	}
	if diff := cmp.Diff(want.Inputs, g.Inputs); diff != "" {
		t.Errorf("inputs not inherited (-want +got):\n%s", diff)
	}
	if f := c.Backends[1]; f.Name != "flux-1-schnell" || f.Gradio == nil || f.Gradio.APIName != "/infer" {
		t.Errorf("implicit preset backend = %+v", f)
	}

	// An explicit endpoint and inputs replace the preset's whole.
	path = writeConfig(t, `backends:
  - name: x
    preset: z-image-turbo-mrfakename
    gradio: {fn_index: 1, inputs: [{from: prompt}, {value: 7}]}
models: [{id: x, backends: [x]}]
`)
	c, err = Load(path, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	g = c.Backends[0].Gradio
	if g.APIName != "" || g.FnIndex == nil || *g.FnIndex != 1 || len(g.Inputs) != 2 {
		t.Errorf("explicit endpoint/inputs not kept: %+v", g)
	}
}

func TestFileWithoutBackendsUsesDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, "images: {max_n: 4}\n"), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Images.MaxN != 4 || len(c.Models) != 1 || c.Models[0].ID != "z-image-turbo" || len(c.Backends) != 2 {
		t.Errorf("config = %+v", c)
	}
	// An empty file is the default configuration too.
	c, err = Load(writeConfig(t, ""), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("empty file (-want +got):\n%s", diff)
	}
	if _, err := Load(writeConfig(t, "listen: a:1\n---\nlisten: b:2\n"), envMap(nil)); err == nil {
		t.Error("two YAML documents accepted")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), envMap(nil)); err == nil {
		t.Error("missing file accepted")
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	t.Parallel()
	const (
		canaryKey   = "CANARYKEY-9f8e7d6c5b4a3210zz"
		canaryToken = "hf_CANARYTOKEN1234"
		canarySign  = "CANARYSIGNING" // appears in base64 form below
		canaryPass  = "CANARYPASS"
	)
	sign := base64.StdEncoding.EncodeToString([]byte(canarySign + strings.Repeat("-", 40)))
	// Credentials in URLs are refused, without being echoed.
	_, err := Load(writeConfig(t, `public_url: https://user:`+canaryPass+`@img.example.com
backends:
  - name: a
    preset: z-image-turbo-mrfakename
    gradio: {space: "https://bob:`+canaryPass+`@space.example.com"}
models: [{id: a, backends: [a]}]
`), envMap(nil))
	if got := fieldPaths(err); !slices.Contains(got, "public_url") || !slices.Contains(got, "backends[0].gradio.space") {
		t.Errorf("credentials in URLs not refused: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), canaryPass) {
		t.Errorf("error echoes a password: %v", err)
	}

	path := writeConfig(t, `backends:
  - name: a
    preset: z-image-turbo-mrfakename
models: [{id: a, backends: [a]}]
`)
	c, err := Load(path, envMap(map[string]string{
		"EASEL_API_KEYS":    canaryKey,
		"HF_TOKEN":          canaryToken,
		"EASEL_SIGNING_KEY": sign,
	}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{canaryKey, canaryToken, sign, canaryPass} {
		if strings.Contains(string(out), secret) {
			t.Errorf("Redacted output contains secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"1 API key(s) set, values hidden", "token set, value hidden", "signing key from EASEL_SIGNING_KEY"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Redacted output lacks %q:\n%s", want, out)
		}
	}
	// The caller's config is untouched.
	if c.Backends[0].Gradio.Token != canaryToken || c.Auth.Keys[0] != canaryKey || c.SigningKey != sign {
		t.Error("Redacted modified its receiver")
	}
	// Even a config that never passed validation is dumped without URL
	// credentials.
	c.PublicURL = "https://u:" + canaryPass + "@img.example.com/x?token=" + canaryPass
	c.Backends[0].Gradio.Space = "https://" + canaryPass + "@space.example.com"
	out, err = c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), canaryPass) {
		t.Errorf("Redacted output shows URL credentials:\n%s", out)
	}
}

func TestRedactedLoadsBack(t *testing.T) {
	t.Parallel()
	c, err := Load("", envMap(map[string]string{"HF_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(writeConfig(t, string(out)), envMap(map[string]string{"HF_TOKEN": "tok"}))
	if err != nil {
		t.Fatalf("dump does not load back: %v\n%s", err, out)
	}
	// An empty constant list is omitted by the input's YAML encoding, so
	// compare everything but input values.
	ignoreValues := cmp.FilterPath(func(p cmp.Path) bool {
		return strings.HasSuffix(p.GoString(), ".Value")
	}, cmp.Ignore())
	if diff := cmp.Diff(c, back, ignoreValues); diff != "" {
		t.Errorf("dump round trip (-want +got):\n%s", diff)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := Load("../../easel.example.yaml", envMap(nil))
	if err != nil {
		t.Fatalf("easel.example.yaml: %v", err)
	}
	if len(c.Models) == 0 || len(c.Backends) == 0 {
		t.Errorf("example defines no models or backends: %+v", c)
	}
}

func TestWithDemo(t *testing.T) {
	t.Parallel()
	c := Default()
	c.WithDemo("http://127.0.0.1:12345")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Models[0].ID != DemoModelID || !c.Models[0].Demo || c.Models[1].ID != DemoEditModelID || !c.Models[1].Demo || c.Models[2].ID != "z-image-turbo" {
		t.Errorf("models = %+v", c.Models)
	}
	b := c.Backends[0]
	if b.Name != DemoBackendName || b.Gradio.Space != "http://127.0.0.1:12345" || b.Gradio.APIName != "/generate_image" || b.Gradio.Token != "" {
		t.Errorf("demo backend = %+v %+v", b, b.Gradio)
	}
	e := c.Backends[1]
	if e.Name != DemoEditBackendName || e.Gradio.Space != "http://127.0.0.1:12345" || e.Gradio.APIName != "/infer" || e.Gradio.Token != "" ||
		len(e.Gradio.Inputs) != 6 || e.Gradio.Inputs[0].From != "image" {
		t.Errorf("demo edit backend = %+v %+v", e, e.Gradio)
	}
}

func TestLoadSigningKey(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	for _, enc := range []string{hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)} {
		c := Default()
		c.SigningKey = enc
		got, err := c.LoadSigningKey()
		if err != nil || string(got) != string(raw) {
			t.Errorf("LoadSigningKey(%q) = %x, %v", enc, got, err)
		}
	}
	if _, err := DecodeSigningKey(hex.EncodeToString(raw[:31])); err == nil {
		t.Error("31-byte key accepted")
	}
	if _, err := DecodeSigningKey("not a key!"); err == nil {
		t.Error("garbage accepted")
	}

	c := Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	k1, err := c.LoadSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 {
		t.Fatalf("generated key has %d bytes", len(k1))
	}
	fi, err := os.Stat(filepath.Join(c.DataDir, SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	k2, err := c.LoadSigningKey()
	if err != nil || string(k1) != string(k2) {
		t.Errorf("second load = %x, %v; want the stored key", k2, err)
	}
	entries, _ := os.ReadDir(c.DataDir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key", len(entries))
	}
	if err := os.WriteFile(filepath.Join(c.DataDir, SigningKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadSigningKey(); err == nil {
		t.Error("short key file accepted")
	}
}

func TestFieldErrorIsTyped(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Images.MaxN = -1
	err := c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "images.max_n" {
		t.Errorf("Validate() = %v, want a *FieldError at images.max_n", err)
	}
}

func TestValidationProblemsHaveLines(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `listen: 127.0.0.1:1
images:
  max_n: 0
backends:
  - name: a
    preset: z-image-turbo-mrfakename
    gradio:
      inputs:
        - from: prompt
        - from: colour
models: [{id: m, backends: [a, nope]}]
`)
	_, err := Load(path, envMap(map[string]string{"EASEL_LISTEN": "bad"}))
	if err == nil {
		t.Fatal("Load accepted an invalid config")
	}
	msg := err.Error()
	for _, want := range []string{
		"line 3: images.max_n: 0 is outside 1..100",
		"line 10: backends[0].gradio.inputs[1].from:",
		"line 11: models[0].backends[1]:",
		"\nlisten:", // from the environment: no file line
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the config decoder and validator:
// they must return errors, never panic.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"",
		"listen: 127.0.0.1:1\n",
		"backends: [{name: a, preset: z-image-turbo-tongyi}]\nmodels: [{id: a, backends: [a]}]\n",
		"a: &x {b: 1}\nc: *x\n",
		"backends:\n  - <<: {name: a}\n    gradio: {inputs: [{from: prompt, value: [1, {x: y}]}]}\n",
		"images: {url_ttl: 1h, max_n: 3}\n---\nx: 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := defaults()
		if _, err := decodeYAML(data, c); err != nil {
			return
		}
		c.applyBackendDefaults()
		_ = c.Validate()
		_, _ = c.Redacted()
	})
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, `backends:
  - &base
    name: a
    preset: z-image-turbo-mrfakename
    concurrency: 2
  - <<: *base
    name: b
models: [{id: m, backends: [a, b]}]
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Backends) != 2 || c.Backends[1].Name != "b" || c.Backends[1].Concurrency != 2 || c.Backends[1].Gradio.APIName != "/generate_image" {
		t.Errorf("backends = %+v", c.Backends)
	}
	// An unknown key inside an anchored block is still reported, once.
	_, err = Load(writeConfig(t, `backends:
  - &base {name: a, preset: z-image-turbo-mrfakename, colour: red}
  - <<: *base
    name: b
`), envMap(nil))
	if err == nil || strings.Count(err.Error(), `unknown key "colour"`) != 1 {
		t.Errorf("Load = %v, want one unknown-key error", err)
	}
}
