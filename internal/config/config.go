// Package config holds easel's typed configuration: built-in defaults and
// presets, loading from a YAML file with an environment overlay for
// secrets and deployment settings, validation that reports every problem at
// once, and a redacted dump for operators.
//
// Secrets never come from the YAML file: API keys, Hugging Face tokens,
// job-API keys and the URL signing key are read from environment variables
// named here, so a config file can be committed and shared.
package config

import (
	"time"

	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/jobapi"
)

// Defaults for the top-level settings. They are the values of Default() and
// the starting point of Load before the file and the environment apply.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultDataDir           = "./easel-data"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
	DefaultKeysEnv           = "EASEL_API_KEYS"
	DefaultTokenEnv          = "HF_TOKEN"
	DefaultResponseFormat    = "b64_json"
	DefaultURLTTL            = time.Hour
	MaxURLTTL                = 168 * time.Hour
	DefaultJobTimeout        = 300 * time.Second
	DefaultMaxN              = 10
	DefaultMaxPromptChars    = 32000
	DefaultMaxPixels         = 40_000_000
	DefaultBackendMaxQueue   = 100
	DefaultGradioConcurrency = 1
	// DefaultJobAPIConcurrency is the slot count of the job-API presets:
	// a job service runs jobs side by side, but a free allowance is
	// small, so easel keeps only a couple in flight.
	DefaultJobAPIConcurrency = 2
	// DefaultStorageFSync makes result files durable before they are
	// served.
	DefaultStorageFSync = true
	// DefaultFetchMaxBytes caps one fetched image URL (20 MiB).
	DefaultFetchMaxBytes = 20 << 20
	// MaxFetchMaxBytes is the largest fetch.max_bytes accepted (50 MiB,
	// the edits body cap).
	MaxFetchMaxBytes = 50 << 20
	// DefaultFetchTimeout bounds one image URL fetch.
	DefaultFetchTimeout = 15 * time.Second
	// MinAPIKeyLength is the shortest API key accepted.
	MinAPIKeyLength = 20
)

const (
	// minAPIKeyDistinctCharacters rejects long but repetitive keys
	// ("sk-1234sk-1234sk-1234").
	minAPIKeyDistinctCharacters = 8
	minSigningKeyBytes          = 32
	backendTypeGradio           = "gradio"
	backendTypeJobAPI           = "jobapi"
	defaultModelID              = "z-image-turbo"
	defaultModelDescription     = "Z-Image-Turbo (6B, 8-step distilled) on free Hugging Face Spaces"
)

// Environment variables read by Load (besides the ones a config names, such
// as auth.keys_env and each gradio backend's token_env).
const (
	EnvListen      = "EASEL_LISTEN"
	EnvPublicURL   = "EASEL_PUBLIC_URL"
	EnvTrustProxy  = "EASEL_TRUST_PROXY"
	EnvDataDir     = "EASEL_DATA_DIR"
	EnvLogLevel    = "EASEL_LOG_LEVEL"
	EnvLogFormat   = "EASEL_LOG_FORMAT"
	EnvCORSOrigins = "EASEL_CORS_ORIGINS"
	EnvSigningKey  = "EASEL_SIGNING_KEY"
	// EnvFetchAllowPrivate sets fetch.allow_private_networks.
	EnvFetchAllowPrivate = "EASEL_FETCH_ALLOW_PRIVATE"
	// EnvStorageFSync sets storage.fsync.
	EnvStorageFSync = "EASEL_STORAGE_FSYNC"
)

// Config is easel's whole configuration. The zero value is not useful; start
// from Default() or Load.
type Config struct {
	// Listen is the TCP address the HTTP server binds, host:port. Without
	// API keys only a loopback host is allowed. Env EASEL_LISTEN.
	Listen string `yaml:"listen"`
	// PublicURL is the absolute base URL (scheme://host[:port][/prefix])
	// clients reach easel at, used to build result links. Empty derives it
	// from each request's Host (and, with TrustProxy, X-Forwarded-*).
	// Env EASEL_PUBLIC_URL.
	PublicURL string `yaml:"public_url,omitempty"`
	// TrustProxy makes easel believe X-Forwarded-For/-Proto/-Host from the
	// peer; enable only behind a reverse proxy that sets them.
	// Env EASEL_TRUST_PROXY (true/false).
	TrustProxy bool `yaml:"trust_proxy,omitempty"`
	// DataDir holds easel's files: result images in DataDir/blobs and, when
	// EASEL_SIGNING_KEY is unset, the URL signing key in DataDir/signing.key.
	// Env EASEL_DATA_DIR.
	DataDir string `yaml:"data_dir"`
	// Storage sets how result images are written to DataDir/blobs.
	Storage StorageConfig `yaml:"storage"`
	// Log sets the process log output.
	Log LogConfig `yaml:"log"`
	// Auth sets client authentication.
	Auth AuthConfig `yaml:"auth"`
	// CORS sets which browser origins may call the API.
	CORS CORSConfig `yaml:"cors,omitempty"`
	// Images sets limits and defaults of the image endpoints.
	Images ImagesConfig `yaml:"images"`
	// Fetch sets how easel downloads the http(s) image URLs clients send
	// as inputs (edits JSON form, chat image_url parts).
	Fetch FetchConfig `yaml:"fetch,omitempty"`
	// Jobs sets durable and async jobs.
	Jobs JobsConfig `yaml:"jobs,omitempty"`
	// Retention sets how long results and job records are kept.
	Retention RetentionConfig `yaml:"retention,omitempty"`
	// Webhooks sets webhook delivery.
	Webhooks WebhooksConfig `yaml:"webhooks,omitempty"`
	// Limits are the default per-key limits.
	Limits LimitsConfig `yaml:"limits,omitempty"`
	// Backends are the upstreams that draw images. When a file defines
	// neither backends nor models, the built-in ones of Default() are used.
	Backends []Backend `yaml:"backends"`
	// Models are the public model ids clients ask for, each served by one
	// or more backends in failover order. The first model is the default.
	Models []Model `yaml:"models"`

	// SigningKey is the raw value of EASEL_SIGNING_KEY (hex or base64 of at
	// least 32 bytes); empty means the key file in DataDir. Never in YAML.
	SigningKey string `yaml:"-"`
}

// StorageConfig sets how result images are written.
type StorageConfig struct {
	// FSync makes each result file and its directory entry durable (fsync)
	// before the result is served. false skips it: results then survive a
	// process crash but not a power loss; for tmpfs or disposable results,
	// where it saves about a millisecond or more per image on slow disks.
	// Writes stay atomic either way. Default true.
	// Env EASEL_STORAGE_FSYNC (true/false).
	FSync bool `yaml:"fsync"`
}

// LogConfig sets the process log output.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info. Env EASEL_LOG_LEVEL.
	Level string `yaml:"level"`
	// Format is text (human) or json (one object a line). Default text.
	// Env EASEL_LOG_FORMAT.
	Format string `yaml:"format"`
}

// AuthConfig sets client authentication. Keys come only from the
// environment so a config file never holds one.
type AuthConfig struct {
	// KeysEnv names the environment variable holding the accepted API keys,
	// comma-separated. Default EASEL_API_KEYS. With no key set, easel serves
	// without authentication and only on a loopback address.
	KeysEnv string `yaml:"keys_env"`
	// Keys are the accepted keys, read from KeysEnv at load.
	Keys []string `yaml:"-"`
}

// CORSConfig sets cross-origin access for browsers.
type CORSConfig struct {
	// AllowedOrigins lists origins ("https://app.example") allowed to call
	// the API from a browser; each is echoed exactly, never "null". "*"
	// allows any origin and is refused when API keys are set. Empty (the
	// default) sends no CORS headers. Env EASEL_CORS_ORIGINS (comma list).
	AllowedOrigins []string `yaml:"allowed_origins,omitempty"`
}

// ImagesConfig sets limits and defaults of the image endpoints.
type ImagesConfig struct {
	// DefaultResponseFormat is used when a request names none: b64_json
	// (what most clients read) or url. Default b64_json.
	DefaultResponseFormat string `yaml:"default_response_format"`
	// URLTTL is how long a signed result URL stays valid. Default 1h,
	// at most 168h.
	URLTTL time.Duration `yaml:"url_ttl"`
	// Stagger delays the start of each further image of one n>1 request by
	// this much, to spread load on a shared backend. Default 0.
	Stagger time.Duration `yaml:"stagger"`
	// JobTimeout bounds one job from acceptance to its last image, queue
	// wait included. Default 300s.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// MaxN is the largest n one request may ask for. Default 10.
	MaxN int `yaml:"max_n"`
	// MaxPromptChars is the longest prompt accepted, in characters.
	// Default 32000.
	MaxPromptChars int `yaml:"max_prompt_chars"`
	// MaxPixels caps width*height of a requested or input image.
	// Default 40000000.
	MaxPixels int `yaml:"max_pixels"`
}

// FetchConfig sets how easel downloads image URLs that clients send. Every
// fetch goes through an SSRF guard: names are resolved by easel, every
// address is checked before connecting (redirects too, at most 3), and
// loopback, private, link-local, metadata and other reserved addresses are
// refused.
type FetchConfig struct {
	// AllowPrivateNetworks lets image URLs point into the local network:
	// loopback (127.0.0.0/8, ::1), RFC 1918 (10/8, 172.16/12, 192.168/16),
	// CGNAT (100.64/10) and IPv6 unique-local (fc00::/7). For LAN
	// deployments whose image hosts are on the same network. Link-local
	// and cloud metadata addresses stay refused. Default false.
	// Env EASEL_FETCH_ALLOW_PRIVATE (true/false).
	AllowPrivateNetworks bool `yaml:"allow_private_networks,omitempty"`
	// AllowedPorts are the destination ports image URLs may use. Default
	// [80, 443]; a LAN image host on another port must be listed.
	AllowedPorts []int `yaml:"allowed_ports,omitempty"`
	// MaxBytes caps one fetched image, after content decoding. Default
	// 20 MiB (20971520), at most 50 MiB.
	MaxBytes int64 `yaml:"max_bytes,omitempty"`
	// Timeout bounds one fetch: resolution, connect, redirects and body.
	// Default 15s, 1s to 2m.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Backend is one upstream that draws images.
type Backend struct {
	// Name identifies the backend in models, logs and metrics; lowercase
	// letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Type is the backend kind: "gradio" (a Gradio app or Hugging Face
	// Space) or "jobapi" (a service that takes a job and is polled for its
	// result). May be left empty when Preset is set.
	Type string `yaml:"type,omitempty"`
	// Preset fills this backend from a built-in preset (see Presets);
	// fields set here override the preset's, a zero value inherits it.
	Preset string `yaml:"preset,omitempty"`
	// Concurrency is how many jobs easel runs on the backend at once; more
	// wait in easel's queue. Default 1 for gradio (a ZeroGPU Space runs one
	// job at a time and rejects queued ones); the job-API presets use 2.
	Concurrency int `yaml:"concurrency,omitempty"`
	// MaxQueue is how many jobs may wait for a slot before new ones are
	// refused with 503. Default 100.
	MaxQueue int `yaml:"max_queue,omitempty"`
	// QueueTimeout bounds the wait for a slot; 0 waits until the job's own
	// deadline (images.job_timeout).
	QueueTimeout time.Duration `yaml:"queue_timeout,omitempty"`
	// Gradio configures a backend of type gradio.
	Gradio *gradio.Config `yaml:"gradio,omitempty"`
	// JobAPI configures a backend of type jobapi. With a preset, the keys
	// set here override the preset's one by one; lists (submit.fields,
	// models, aspect_ratios, ...) and header maps replace the preset's
	// whole.
	JobAPI *jobapi.Config `yaml:"jobapi,omitempty"`
}

// Model is one public model id.
type Model struct {
	// ID is what clients send as "model" and what /v1/models lists.
	ID string `yaml:"id"`
	// Aliases are other ids resolving to this model, for clients that hard
	// code names such as dall-e-3; they are not listed in /v1/models.
	Aliases []string `yaml:"aliases,omitempty"`
	// Backends names the backends serving the model, in failover order. A
	// name that no backend defines but a built-in preset does adds that
	// preset as a backend.
	Backends []string `yaml:"backends"`
	// Description is a short human text for listings and the web UI.
	Description string `yaml:"description,omitempty"`
	// Demo marks the model served by the in-process fake of --demo; set
	// only by WithDemo, never from YAML.
	Demo bool `yaml:"-"`
}

// defaults returns the top-level settings without backends or models.
func defaults() *Config {
	return &Config{
		Listen:  DefaultListen,
		DataDir: DefaultDataDir,
		Storage: StorageConfig{FSync: DefaultStorageFSync},
		Log:     LogConfig{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Auth:    AuthConfig{KeysEnv: DefaultKeysEnv},
		Images: ImagesConfig{
			DefaultResponseFormat: DefaultResponseFormat,
			URLTTL:                DefaultURLTTL,
			JobTimeout:            DefaultJobTimeout,
			MaxN:                  DefaultMaxN,
			MaxPromptChars:        DefaultMaxPromptChars,
			MaxPixels:             DefaultMaxPixels,
		},
		Fetch: FetchConfig{
			AllowedPorts: []int{80, 443},
			MaxBytes:     DefaultFetchMaxBytes,
			Timeout:      DefaultFetchTimeout,
		},
		Jobs: JobsConfig{
			AsyncTimeout:   DefaultAsyncJobTimeout,
			IdempotencyTTL: DefaultIdempotencyTTL,
		},
		Retention: RetentionConfig{
			Results:  DefaultResultsRetention,
			Jobs:     DefaultJobsRetention,
			Interval: DefaultRetentionInterval,
		},
		Webhooks: WebhooksConfig{
			AllowedPorts: []int{80, 443, 8080, 8443},
			Timeout:      DefaultWebhookTimeout,
		},
	}
}

// Default is the configuration of `easel serve` without a config file: the
// top-level defaults, the two Z-Image-Turbo Space presets as backends and
// one model, z-image-turbo, with aliases for clients that hard code OpenAI
// model names. Secrets are not resolved (Load does that).
func Default() *Config {
	c := defaults()
	c.Backends, c.Models = defaultBackendsAndModels()
	c.applyBackendDefaults()
	return c
}

func defaultBackendsAndModels() ([]Backend, []Model) {
	backends := []Backend{
		{Name: PresetZImageMrfakename, Preset: PresetZImageMrfakename},
		{Name: PresetZImageTongyi, Preset: PresetZImageTongyi},
	}
	models := []Model{{
		ID:          defaultModelID,
		Aliases:     []string{"dall-e-3", "dall-e-2", "gpt-image-1", "gpt-image-1.5"},
		Backends:    []string{PresetZImageMrfakename, PresetZImageTongyi},
		Description: defaultModelDescription,
	}}
	return backends, models
}

// DemoBackendName and DemoModelID name what WithDemo adds for text to
// image; DemoEditBackendName and DemoEditModelID its image-to-image pair.
const (
	DemoBackendName     = "demo-z-image"
	DemoModelID         = "demo-z-image-turbo"
	DemoEditBackendName = "demo-image-edit"
	DemoEditModelID     = "demo-image-edit"
)

// Demo edit backend settings: the fake's edit endpoint is laid out like
// Qwen-Image-Edit's infer(image, prompt, seed, randomize_seed,
// true_guidance_scale, num_inference_steps).
const (
	demoEditAPIName  = "/infer"
	demoEditGuidance = 4
	demoEditSteps    = 8
	demoEditMaxSteps = 50
)

// WithDemo adds the demo backends (one Gradio app at baseURL with a
// Z-Image-Turbo endpoint like the mrfakename Space's and an image-edit
// endpoint like Qwen-Image-Edit's) and their two models, listed first so
// the text-to-image one is the default model. It keeps the rest of the
// configuration.
func (c *Config) WithDemo(baseURL string) {
	b := Presets()[PresetZImageMrfakename]
	b.Name = DemoBackendName
	b.Preset = ""
	b.Gradio.Space = baseURL
	// The fake runs in this process: nothing to authenticate against.
	b.Gradio.TokenEnv = ""
	b.Gradio.Token = ""
	b.Concurrency = 2
	edit := Backend{
		Name:        DemoEditBackendName,
		Type:        backendTypeGradio,
		Concurrency: 2,
		MaxQueue:    DefaultBackendMaxQueue,
		Gradio: &gradio.Config{
			Space:   baseURL,
			APIName: demoEditAPIName,
			Inputs: []gradio.Input{
				{From: "image"},
				{From: "prompt"},
				{From: "seed", Type: "int", Default: 0},
				{From: "randomize_seed", Type: "bool"},
				{Value: demoEditGuidance},
				{From: "steps", Type: "int", Default: demoEditSteps},
			},
			Output: gradio.Output{Index: intp(0), Kind: "image", SeedIndex: intp(1)},
			Steps:  gradio.StepsConfig{Default: demoEditSteps, Min: 1, Max: demoEditMaxSteps},
		},
	}
	c.Backends = append([]Backend{b, edit}, c.Backends...)
	c.Models = append([]Model{{
		ID:          DemoModelID,
		Backends:    []string{DemoBackendName},
		Description: "Demo: an in-process fake of a Z-Image-Turbo Space drawing placeholder images (no network)",
		Demo:        true,
	}, {
		ID:          DemoEditModelID,
		Backends:    []string{DemoEditBackendName},
		Description: "Demo: an in-process fake image-edit Space that returns the input image's negative (no network)",
		Demo:        true,
	}}, c.Models...)
}
