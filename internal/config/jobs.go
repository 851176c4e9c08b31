package config

import (
	"time"
)

// Defaults of the job, retention, webhook and limit settings.
const (
	// DefaultAsyncJobTimeout bounds an async job from pickup to its last
	// image; async clients are not holding a connection, so it is longer
	// than images.job_timeout.
	DefaultAsyncJobTimeout = 600 * time.Second
	// DefaultIdempotencyTTL is how long an Idempotency-Key is remembered.
	DefaultIdempotencyTTL = 24 * time.Hour
	// MaxIdempotencyTTL caps jobs.idempotency_ttl.
	MaxIdempotencyTTL = 30 * 24 * time.Hour
	// DefaultResultsRetention is how long result images are kept.
	DefaultResultsRetention = 7 * 24 * time.Hour
	// DefaultJobsRetention is how long finished job records are kept.
	DefaultJobsRetention = 30 * 24 * time.Hour
	// DefaultRetentionInterval is how often the cleaner runs.
	DefaultRetentionInterval = 10 * time.Minute
	// DefaultWebhookTimeout bounds one webhook delivery attempt.
	DefaultWebhookTimeout = 15 * time.Second
)

// JobsConfig sets durable and async jobs.
type JobsConfig struct {
	// AsyncTimeout bounds one async job (202 responses) from its pickup to
	// its last image, upstream queue waits included. Default 600s.
	AsyncTimeout time.Duration `yaml:"async_timeout,omitempty"`
	// IdempotencyTTL is how long an Idempotency-Key maps to its job; a
	// reuse after that starts a new job. Default 24h, at most 720h.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl,omitempty"`
}

// RetentionConfig sets how long results and job records are kept. The
// cleaner removes expired rows and files together, and files no record
// refers to (left by a crash between writing a file and its record).
type RetentionConfig struct {
	// Results is how long result images are kept after their job ended;
	// their signed URLs stop working then. Default 168h (7 days).
	Results time.Duration `yaml:"results,omitempty"`
	// Jobs is how long finished job records are kept; at least Results.
	// Default 720h (30 days).
	Jobs time.Duration `yaml:"jobs,omitempty"`
	// Interval is how often the cleaner runs. Default 10m.
	Interval time.Duration `yaml:"interval,omitempty"`
}

// WebhooksConfig sets webhook delivery. Every delivery goes through the
// same SSRF guard as image URL fetches: names are resolved by easel and
// private, loopback, link-local and metadata addresses are refused unless
// allowed here; redirects are never followed.
type WebhooksConfig struct {
	// AllowPrivateNetworks lets webhook URLs point at loopback and private
	// networks (receivers on the same host or LAN). Default false.
	AllowPrivateNetworks bool `yaml:"allow_private_networks,omitempty"`
	// AllowedPorts are the destination ports webhook URLs may use.
	// Default [80, 443, 8080, 8443].
	AllowedPorts []int `yaml:"allowed_ports,omitempty"`
	// Timeout bounds one delivery attempt. Default 15s, 1s to 60s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// LimitsConfig holds the per-key limits that apply to keys without their
// own (keys from auth.keys_env, and database keys created without
// limits). 0 means unlimited.
type LimitsConfig struct {
	// RequestsPerMinute caps the API requests of one key per minute.
	RequestsPerMinute int `yaml:"requests_per_minute,omitempty"`
	// ConcurrentJobs caps the jobs one key has queued or running at once.
	ConcurrentJobs int `yaml:"concurrent_jobs,omitempty"`
	// ImagesPerDay caps the images one key may have generated in any 24
	// hours.
	ImagesPerDay int `yaml:"images_per_day,omitempty"`
}

func (c *Config) jobsDefaults() {
	if c.Jobs.AsyncTimeout == 0 {
		c.Jobs.AsyncTimeout = DefaultAsyncJobTimeout
	}
	if c.Jobs.IdempotencyTTL == 0 {
		c.Jobs.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.Retention.Results == 0 {
		c.Retention.Results = DefaultResultsRetention
	}
	if c.Retention.Jobs == 0 {
		c.Retention.Jobs = DefaultJobsRetention
	}
	if c.Retention.Interval == 0 {
		c.Retention.Interval = DefaultRetentionInterval
	}
	if len(c.Webhooks.AllowedPorts) == 0 {
		c.Webhooks.AllowedPorts = []int{80, 443, 8080, 8443}
	}
	if c.Webhooks.Timeout == 0 {
		c.Webhooks.Timeout = DefaultWebhookTimeout
	}
}

func (c *Config) validateJobs(v *validator) {
	c.jobsDefaults()
	if c.Jobs.AsyncTimeout < time.Second || c.Jobs.AsyncTimeout > 24*time.Hour {
		v.add("jobs.async_timeout", "%s is outside 1s to 24h", c.Jobs.AsyncTimeout)
	}
	if c.Jobs.IdempotencyTTL < time.Minute || c.Jobs.IdempotencyTTL > MaxIdempotencyTTL {
		v.add("jobs.idempotency_ttl", "%s is outside 1m to %s", c.Jobs.IdempotencyTTL, MaxIdempotencyTTL)
	}
	if c.Retention.Results < time.Second {
		v.add("retention.results", "%s is shorter than 1s", c.Retention.Results)
	}
	if c.Retention.Jobs < c.Retention.Results {
		v.add("retention.jobs", "%s is shorter than retention.results (%s): a record must outlive its images", c.Retention.Jobs, c.Retention.Results)
	}
	if c.Retention.Interval < time.Second || c.Retention.Interval > 24*time.Hour {
		v.add("retention.interval", "%s is outside 1s to 24h", c.Retention.Interval)
	}
	for _, p := range c.Webhooks.AllowedPorts {
		if p < 1 || p > 65535 {
			v.add("webhooks.allowed_ports", "%d is not a TCP port", p)
		}
	}
	if c.Webhooks.Timeout < time.Second || c.Webhooks.Timeout > time.Minute {
		v.add("webhooks.timeout", "%s is outside 1s to 60s", c.Webhooks.Timeout)
	}
	if c.Limits.RequestsPerMinute < 0 || c.Limits.ConcurrentJobs < 0 || c.Limits.ImagesPerDay < 0 {
		v.add("limits", "limits must not be negative (0 is unlimited)")
	}
}
