package gradio

import (
	"time"
)

// Config describes one Gradio backend: which Space, which endpoint, and how
// easel's request fields map onto the endpoint's positional inputs.
type Config struct {
	// Space is a Hugging Face Space id ("owner/name", turned into
	// https://owner-name.hf.space) or a full base URL of any Gradio app.
	Space string `yaml:"space"`
	// APIName selects the endpoint by name ("/generate_image"; the leading
	// slash is optional). Preferred over FnIndex because fn_index changes
	// when a Space is edited.
	APIName string `yaml:"api_name,omitempty"`
	// FnIndex selects the endpoint by dependency id when it has no name.
	FnIndex *int `yaml:"fn_index,omitempty"`
	// TokenEnv names the environment variable holding a Hugging Face token
	// sent as "Authorization: Bearer" on every request (default HF_TOKEN;
	// an empty variable sends no token).
	TokenEnv string `yaml:"token_env,omitempty"`
	// Token is the resolved token; filled from TokenEnv at load, never read
	// from or written to YAML.
	Token string `yaml:"-"`
	// Inputs maps easel's request onto the endpoint's inputs, one entry per
	// position, in order.
	Inputs []Input `yaml:"inputs"`
	// Output says where the image(s) are in the endpoint's outputs.
	Output Output `yaml:"output,omitempty"`
	// Size bounds the pixel sizes the endpoint accepts.
	Size SizeConfig `yaml:"size,omitempty"`
	// Steps bounds the inference steps, when an input takes them.
	Steps StepsConfig `yaml:"steps,omitempty"`
	// StallTimeout fails a job when the upstream sends no byte (heartbeats
	// count) for this long. Default 60s.
	StallTimeout time.Duration `yaml:"stall_timeout,omitempty"`
	// RequestTimeout bounds each plain HTTP call (config, join, upload,
	// download). Default 30s.
	RequestTimeout time.Duration `yaml:"request_timeout,omitempty"`
	// ConfigTTL is how long the Space's /config and /info are cached.
	// Default 10m.
	ConfigTTL time.Duration `yaml:"config_ttl,omitempty"`
	// MaxResultBytes caps one downloaded result. Default 50 MiB.
	MaxResultBytes int64 `yaml:"max_result_bytes,omitempty"`
}

// Input is one positional input of the endpoint. Exactly one of From or
// Value is set.
type Input struct {
	// From names the request field this position takes: prompt,
	// negative_prompt, width, height, size ("WxH" string), size_choice (the
	// choice of a Dropdown nearest in aspect ratio, read from the Space's
	// /config or from Choices), steps, seed, randomize_seed (true when the
	// client gave no seed), image (first input image as FileData), images
	// (all input images as a Gallery value), mask (the edit's mask as
	// FileData; Default, usually null, when the request has none).
	From string `yaml:"from,omitempty"`
	// Value is a constant sent as is (any JSON value; null for State).
	Value any `yaml:"value,omitempty"`
	// Default is sent when the request does not give From's field (for
	// seed: the seed sent alongside randomize_seed=true).
	Default any `yaml:"default,omitempty"`
	// Choices lists a Dropdown's values for size_choice when the Space's
	// /config does not give them; each starts with "WxH".
	Choices []string `yaml:"choices,omitempty"`
	// Type coerces the value: int, float, string or bool (default: int for
	// width, height, steps, seed; string for text fields).
	Type string `yaml:"type,omitempty"`
}

// Output locates images among the endpoint's outputs.
type Output struct {
	// Index is the output position holding the image(s); nil picks the
	// first Image or Gallery output listed by the Space's /info.
	Index *int `yaml:"index,omitempty"`
	// Kind is image (one FileData), gallery (a list of {image, caption}),
	// list (a list of FileData), or auto (any of these, by shape). Default
	// auto.
	Kind string `yaml:"kind,omitempty"`
	// SeedIndex is the output position holding the used seed, if any.
	SeedIndex *int `yaml:"seed_index,omitempty"`
}

// SizeConfig bounds pixel sizes.
type SizeConfig struct {
	DefaultWidth  int `yaml:"default_width,omitempty"`
	DefaultHeight int `yaml:"default_height,omitempty"`
	Min           int `yaml:"min,omitempty"`
	Max           int `yaml:"max,omitempty"`
	Multiple      int `yaml:"multiple,omitempty"`
}

// StepsConfig bounds inference steps.
type StepsConfig struct {
	Default int `yaml:"default,omitempty"`
	Min     int `yaml:"min,omitempty"`
	Max     int `yaml:"max,omitempty"`
}
