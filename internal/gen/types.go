// Package gen runs image jobs: it validates a normalized request against the
// chosen model's backends, creates a job with an id and an event stream,
// routes it to a backend (with per-backend concurrency slots, retries and
// failover only when the upstream provably did not start), stores the
// results in the blob store and reports every step as an event.
//
// Every endpoint (images, edits, chat, and later async jobs and the web UI)
// is a different rendering of the same Job.
package gen

import (
	"errors"
	"time"

	"github.com/easelgw/easel/internal/provider"
)

// Status is a job's lifecycle state.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Terminal reports whether s is a final state.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// Request is what an endpoint hands to the Service: the client's ask, already
// decoded and syntax-checked by the OpenAI layer, before it is fitted to a
// backend.
type Request struct {
	// Model is the model id as the client sent it (aliases allowed).
	Model string
	// Kind is generate or edit.
	Kind provider.Kind
	// Prompt must be non-empty.
	Prompt         string
	NegativePrompt string
	// N is the number of images, 1..MaxN of the Service.
	N int
	// Width and Height: 0,0 means "auto" (the backend's default size).
	Width, Height int
	// AspectRatio is an explicit ratio ("16:9"); empty derives from size.
	AspectRatio string
	// Steps: 0 means backend default.
	Steps int
	// Seed: nil means random.
	Seed *int64
	// OutputFormat is "png", "jpeg" or "webp"; empty means png.
	OutputFormat string
	// Images are the edit inputs.
	Images []provider.InputImage
	// Mask is the optional edit mask.
	Mask *provider.InputImage
	// KeyID identifies the API key that asked (empty when auth is off).
	KeyID string
	// JobID, when set, is the job's id (an async job keeps the id of its
	// record); empty draws a new one.
	JobID string
	// Created, when set, is when the job was accepted (an async job was
	// queued before it runs); zero means now.
	Created time.Time
	// Resume lists upstream work a previous run of this job started and
	// saved: a call whose first image index and backend match follows
	// the saved upstream id (provider.Resumer) instead of submitting again.
	Resume []ResumePoint
	// Stream says the caller will follow the job's events: the first
	// Subscribe then returns a subscription made before the job ran, so
	// even previews of a job faster than the caller reach it.
	Stream bool
	// Patient keeps retrying work the upstream did not start (busy,
	// rate limited, unreachable) until the job's deadline, waiting out any
	// Retry-After that fits, instead of giving up after Attempts: for
	// async jobs, whose client is not holding a connection.
	Patient bool
	// Timeout, when positive, replaces Options.JobTimeout for this job
	// (async jobs may take longer than a client holds a connection).
	Timeout time.Duration
}

// ResumePoint is upstream work saved for a job: the call producing images
// from Index on was accepted by Backend under UpstreamID.
type ResumePoint struct {
	Index      int    `json:"index"`
	Backend    string `json:"backend"`
	UpstreamID string `json:"upstream_id"`
}

// StoredImage is one result as the gateway stored it.
type StoredImage struct {
	// Key is the blob key (content address plus extension).
	Key string `json:"key"`
	// MIME is the stored bytes' type ("image/png", "image/jpeg", "image/webp").
	MIME string `json:"mime"`
	// Format is "png", "jpeg" or "webp".
	Format string `json:"format"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int64  `json:"bytes"`
	// Seed is the seed the upstream reported, if any.
	Seed *int64 `json:"seed,omitempty"`
}

// Snapshot is a consistent copy of a job's state at one moment.
type Snapshot struct {
	ID       string    `json:"id"`
	Model    string    `json:"model"`
	Backend  string    `json:"backend,omitempty"`
	Status   Status    `json:"status"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// N is how many images the job produces.
	N int `json:"n"`
	// Width and Height are the size actually asked of the backend.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Images holds results in index order; entries may be zero while
	// running.
	Images []StoredImage `json:"images,omitempty"`
	// InputNotes says how the input images were changed to fit the
	// backend's limits ("input image 1 scaled from 6000x4000 to
	// 2449x1633"); empty when they were passed on as sent.
	InputNotes []string `json:"input_notes,omitempty"`
	// UpstreamIDs holds, per image index, the upstream's id for the call
	// that draws it (the same id for every image of one call), as soon as
	// the upstream accepts the work.
	UpstreamIDs []string `json:"upstream_ids,omitempty"`
	// Progress is the last progress event per image, for status displays.
	Progress []provider.Event `json:"progress,omitempty"`
	// Err is set when Status is failed or canceled.
	Err *provider.Error `json:"-"`
}

// ModelInfo describes one public model.
type ModelInfo struct {
	// ID is the public model id.
	ID string `json:"id"`
	// Aliases are other ids that resolve to this model.
	Aliases []string `json:"aliases,omitempty"`
	// Backends are the names of the backends serving it, in failover order.
	Backends []string `json:"backends"`
	// Created is reported in /v1/models (Unix seconds there).
	Created time.Time `json:"created"`
	// Description is a short human text.
	Description string `json:"description,omitempty"`
	// Demo marks models served by the built-in demo backend.
	Demo bool `json:"demo,omitempty"`
	// Capabilities are those of the first backend (all backends of a model
	// should agree).
	Capabilities provider.Capabilities `json:"capabilities"`
}

// InvalidError is a request the Service refuses before any work: the OpenAI
// layer maps it to 400 with Param.
type InvalidError struct {
	Param   string
	Code    string
	Message string
}

func (e *InvalidError) Error() string { return e.Message }

// NotFoundError: the model does not exist (404 model_not_found).
type NotFoundError struct {
	Model string
}

func (e *NotFoundError) Error() string { return "model '" + e.Model + "' does not exist" }

// ErrCanceled is the cause recorded when a job is cancelled on purpose
// (Job.Cancel) rather than by its client going away.
var ErrCanceled = errors.New("job canceled")
