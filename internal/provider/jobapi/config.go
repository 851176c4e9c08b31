package jobapi

import (
	"errors"
	"fmt"
	"time"
)

// Config describes one job-style backend: how a job is submitted, how the
// answer is read, how the job is polled and how its results are fetched.
// Paths into JSON answers use the small syntax of ParsePath ("result.job_id",
// "data[0].url").
type Config struct {
	// Submit says how a job is created.
	Submit SubmitConfig `yaml:"submit"`
	// Accept says how the submit answer is read.
	Accept AcceptConfig `yaml:"accept"`
	// Poll says how the job's status is followed.
	Poll PollConfig `yaml:"poll"`
	// Fetch says how result files are downloaded.
	Fetch FetchConfig `yaml:"fetch,omitempty"`
	// Models lists the upstream model names the service knows (for the
	// reference service: nano_banana and standard). When set, Model must
	// be one of them.
	Models []string `yaml:"models,omitempty"`
	// Model is the upstream model this backend runs, sent by a submit
	// field with from: model. One backend runs one upstream model, so
	// easel's model table decides which upstream model a client gets.
	Model string `yaml:"model,omitempty"`
	// AspectRatios is the closed list of ratios the upstream takes
	// ("16:9", and symbolic values such as "match_input_image"). A
	// request's size or ratio is mapped to the nearest W:H entry.
	AspectRatios []string `yaml:"aspect_ratios,omitempty"`
	// DefaultAspectRatio is sent when the request gives neither a ratio
	// nor a size. Must be one of AspectRatios when both are set.
	DefaultAspectRatio string `yaml:"default_aspect_ratio,omitempty"`
	// RequiresImage marks an image-to-image-only service: requests
	// without an input image are refused before anything is sent.
	RequiresImage bool `yaml:"requires_image,omitempty"`
	// MaxInputImages is the most input images one job takes. Default 1
	// with a field from image, 4 with a field from images.
	MaxInputImages int `yaml:"max_input_images,omitempty"`
	// MaxInputPixels is the largest width*height of an input image the
	// upstream takes; easel scales larger inputs down first. 0 means no
	// limit.
	MaxInputPixels int `yaml:"max_input_pixels,omitempty"`
	// InputFormats lists the input formats the upstream takes ("png",
	// "jpeg", "webp", "gif"); easel converts other inputs. Empty means png,
	// jpeg and webp.
	InputFormats []string `yaml:"input_formats,omitempty"`
	// MaxN is how many images one job produces at most (default 1; set
	// it higher only with a submit field from n).
	MaxN int `yaml:"max_n,omitempty"`
	// RequestTimeout bounds each HTTP call (submit, one poll, one
	// download), body included. Default 30s.
	RequestTimeout time.Duration `yaml:"request_timeout,omitempty"`
}

// SubmitConfig is the request that creates a job.
type SubmitConfig struct {
	// Method is the HTTP method (default POST).
	Method string `yaml:"method,omitempty"`
	// URL is the absolute http(s) URL jobs are submitted to.
	URL string `yaml:"url"`
	// Body is the encoding of Fields: "multipart" (form-data, images as
	// file parts; the default) or "json" (one object, images as data URLs
	// or base64 strings).
	Body string `yaml:"body,omitempty"`
	// Fields maps easel's request onto the upstream's fields, in order.
	Fields []Field `yaml:"fields"`
	// Headers are extra non-secret headers sent with the submit and every
	// poll (for example Accept). User-Agent cannot be set here: easel
	// always identifies itself honestly.
	Headers map[string]string `yaml:"headers,omitempty"`
	// HeaderEnv maps a header name to the environment variable holding its
	// value, for secrets such as API keys ("Authorization": "MY_API_KEY"
	// sends the variable's value as is, so include any "Bearer " prefix in
	// the variable). Sent with the submit and every poll, never elsewhere
	// unless Fetch.SendAuth allows it.
	HeaderEnv map[string]string `yaml:"header_env,omitempty"`
	// SecretHeaders holds the values resolved from HeaderEnv by
	// ResolveEnv; never read from or written to YAML, never logged.
	SecretHeaders map[string]string `yaml:"-"`
}

// Field is one upstream field. Exactly one of From and Value is set.
type Field struct {
	// Name is the upstream field name.
	Name string `yaml:"name"`
	// From names the request value the field carries: prompt,
	// negative_prompt, model (Config.Model), aspect_ratio (the request's
	// ratio mapped onto AspectRatios, else derived from size, else
	// DefaultAspectRatio), size ("WxH"), width, height, seed, steps, n,
	// image (the first input image) or images (every input image; one
	// file part each in multipart, a list in JSON).
	From string `yaml:"from,omitempty"`
	// Value is a constant sent as is (a string in multipart bodies).
	Value any `yaml:"value,omitempty"`
	// Default is sent when the request lacks From's value (no seed, no
	// steps, empty negative prompt, no size); without it the field is left
	// out.
	Default any `yaml:"default,omitempty"`
	// Encoding says how images are written into a JSON body: "data_url"
	// (default, "data:image/png;base64,...") or "base64".
	Encoding string `yaml:"encoding,omitempty"`
}

// AcceptConfig reads the submit answer.
type AcceptConfig struct {
	// JobIDPath locates the job id in the answer ("result.job_id").
	JobIDPath string `yaml:"job_id_path"`
	// OKStatus lists the HTTP statuses of a usable answer (default: any
	// 2xx).
	OKStatus []int `yaml:"ok_status,omitempty"`
	// CodePath locates a body-level status code ("code"), for services
	// that answer HTTP 200 and put the outcome in the body. Empty means
	// the body carries no code.
	CodePath string `yaml:"code_path,omitempty"`
	// CodeOK lists the values of CodePath that mean success ("200");
	// compared as text, so 200 and "200" are equal. Required with
	// CodePath.
	CodeOK []string `yaml:"code_ok,omitempty"`
	// RateLimitCodes lists the values of CodePath that mean the caller is
	// rate limited (default "429").
	RateLimitCodes []string `yaml:"rate_limit_codes,omitempty"`
	// RateLimitRetryAfter is the wait reported with a body-level rate
	// limit, which carries no Retry-After header. Zero means unknown.
	RateLimitRetryAfter time.Duration `yaml:"rate_limit_retry_after,omitempty"`
	// MessagePath locates the upstream's message in an error answer
	// ("message"); a string, or an object whose message, error or detail
	// member is used.
	MessagePath string `yaml:"message_path,omitempty"`
}

// PollConfig follows a job until it ends.
type PollConfig struct {
	// URL is the status URL with the placeholder {job_id}, replaced by the
	// URL-encoded job id (in a query value or a path segment alike).
	URL string `yaml:"url"`
	// Method is the HTTP method (default GET; only GET is allowed, so that
	// a poll can always be repeated safely).
	Method string `yaml:"method,omitempty"`
	// CodePath locates a body-level status code, as in AcceptConfig. A
	// poll answer whose code is not OK ends the job as failed, except
	// RateLimitCodes, which delay the next poll.
	CodePath string `yaml:"code_path,omitempty"`
	// CodeOK lists the values of CodePath that mean success; required
	// with CodePath.
	CodeOK []string `yaml:"code_ok,omitempty"`
	// RateLimitCodes lists body codes that mean "poll less often"
	// (default "429").
	RateLimitCodes []string `yaml:"rate_limit_codes,omitempty"`
	// StatusPath locates the job's status ("result.status").
	StatusPath string `yaml:"status_path,omitempty"`
	// ProgressPath locates a progress figure, 0..1 or 0..100 (a number, or
	// text such as "45%"). Optional.
	ProgressPath string `yaml:"progress_path,omitempty"`
	// DoneValues are the statuses of a finished job (case-insensitive).
	DoneValues []string `yaml:"done_values,omitempty"`
	// FailedValues are the statuses of a failed job (case-insensitive).
	FailedValues []string `yaml:"failed_values,omitempty"`
	// RunningValues are the statuses of a job still in progress. They are
	// documentation only: any status that is neither done nor failed
	// counts as running.
	RunningValues []string `yaml:"running_values,omitempty"`
	// DoneOnResult also treats the job as done as soon as ResultPath holds
	// a URL, whatever the status says.
	DoneOnResult bool `yaml:"done_on_result,omitempty"`
	// ResultPath locates the result URL(s): a string, a list of strings,
	// or a list of objects with a url member ("result.image_url").
	ResultPath string `yaml:"result_path"`
	// MessagePath locates the failure message of a failed job.
	MessagePath string `yaml:"message_path,omitempty"`
	// Interval is the wait before the first poll (default 1s); each later
	// wait is the previous one times Backoff, capped at MaxInterval.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Backoff is the growth factor of the wait between polls (default
	// 1.5; 1 polls at a fixed interval).
	Backoff float64 `yaml:"backoff,omitempty"`
	// MaxInterval caps the wait between polls (default 10s).
	MaxInterval time.Duration `yaml:"max_interval,omitempty"`
	// Deadline is how long a job may run after its submit was accepted;
	// a job still running then fails with a timeout (default 600s).
	Deadline time.Duration `yaml:"deadline,omitempty"`
	// MaxErrors is how many polls in a row may fail (HTTP 5xx, broken
	// connection) before the job is given up (default 5).
	MaxErrors int `yaml:"max_errors,omitempty"`
}

// FetchConfig downloads result files.
type FetchConfig struct {
	// Headers are extra non-secret headers sent with each download.
	Headers map[string]string `yaml:"headers,omitempty"`
	// SendAuth also sends Submit's secret headers, and only to result URLs
	// on the submit URL's own scheme and host. Off by default: result
	// files usually live on a CDN that must never see the API key.
	SendAuth bool `yaml:"send_auth,omitempty"`
	// MaxBytes caps one result file (default 50 MiB); larger files fail
	// the job, refused by Content-Length before any byte is read.
	MaxBytes int64 `yaml:"max_bytes,omitempty"`
	// Attempts is how many times a result URL is tried when it answers
	// 404, 5xx or breaks (default 3). A download is a plain GET, safe to
	// repeat.
	Attempts int `yaml:"attempts,omitempty"`
}

// Defaults applied by New to zero Config fields.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultInterval       = time.Second
	DefaultBackoff        = 1.5
	DefaultMaxInterval    = 10 * time.Second
	DefaultDeadline       = 600 * time.Second
	DefaultMaxErrors      = 5
	DefaultMaxBytes       = 50 << 20
	DefaultFetchAttempts  = 3
)

// Request fields a Field may take its value from.
var knownFrom = map[string]bool{
	"prompt": true, "negative_prompt": true, "model": true, "aspect_ratio": true, "size": true,
	"width": true, "height": true, "seed": true, "steps": true, "n": true, "image": true, "images": true,
}

// ResolveEnv fills Submit.SecretHeaders from Submit.HeaderEnv using lookup
// (os.LookupEnv in production). A variable that is unset or empty is an
// error naming the variable, never its value: a backend configured with a
// key must not silently run without it.
func (c *Config) ResolveEnv(lookup func(string) (string, bool)) error {
	if len(c.Submit.HeaderEnv) == 0 {
		c.Submit.SecretHeaders = nil
		return nil
	}
	var errs []error
	c.Submit.SecretHeaders = make(map[string]string, len(c.Submit.HeaderEnv))
	for header, env := range c.Submit.HeaderEnv {
		v, ok := lookup(env)
		if !ok || v == "" {
			errs = append(errs, fmt.Errorf("submit.header_env[%q]: environment variable %s is not set", header, env))
			continue
		}
		c.Submit.SecretHeaders[header] = v
	}
	return errors.Join(errs...)
}
