// Package provider defines the contract between easel's job runner and the
// backends that actually draw images. Each backend kind (Gradio, job API,
// OpenAI-compatible) lives in its own sub-package and implements Provider.
//
// The request, event and result types live here rather than in package gen so
// that providers can import them without importing the runner (gen imports
// provider, never the other way round).
package provider

import (
	"context"
	"time"
)

// Provider runs one unit of image work on an upstream backend.
//
// A provider never writes HTTP to easel's client and never stores files: it
// returns image bytes and reports progress through emit. emit is safe to call
// from any goroutine and never blocks for long; a provider calls it in order.
type Provider interface {
	// Generate produces req.N images (req.N is at most Capabilities().MaxN;
	// the runner fans out larger counts). It must return when ctx is done,
	// cancelling the upstream work where the protocol allows.
	Generate(ctx context.Context, req *Request, emit func(Event)) (*Result, error)
	// Capabilities describes what the backend can do; the runner and the
	// OpenAI layer validate requests against it.
	Capabilities() Capabilities
}

// Resumer is implemented by providers whose upstream keeps a submitted
// job addressable by its id (a job API): after a gateway restart the
// runner follows the saved id instead of submitting the work again.
type Resumer interface {
	// Resume follows the upstream job upstreamID, submitted earlier for
	// req, and returns its result as Generate would have.
	Resume(ctx context.Context, upstreamID string, req *Request, emit func(Event)) (*Result, error)
}

// Closer is implemented by providers that hold resources (idle connections,
// caches) to release at shutdown.
type Closer interface {
	Close() error
}

// Kind says what a request asks for.
type Kind string

const (
	// KindGenerate is text to image.
	KindGenerate Kind = "generate"
	// KindEdit is image to image (one or more input images).
	KindEdit Kind = "edit"
)

// Request is the one normalized form of every image request, whatever
// endpoint it came from. Zero values mean "not given": the provider applies
// its own defaults.
type Request struct {
	// JobID is easel's job id, for logs and upstream correlation.
	JobID string
	// Kind is generate or edit.
	Kind Kind
	// Model is the public model id the client asked for (after alias
	// resolution).
	Model string
	// Prompt is the text prompt; never empty.
	Prompt string
	// NegativePrompt is optional.
	NegativePrompt string
	// N is how many images this call must produce (>= 1).
	N int
	// Width and Height are the requested pixel size, already fitted to the
	// backend's limits by the runner; 0 means the backend's default.
	Width, Height int
	// AspectRatio is an explicit ratio such as "16:9", for backends that
	// take ratios instead of pixels; empty means derive from Width/Height.
	AspectRatio string
	// Steps is the number of inference steps; 0 means the backend default.
	Steps int
	// Seed is the seed to use; nil means random.
	Seed *int64
	// Images are the input images of an edit request, in order.
	Images []InputImage
	// Mask is an optional mask for the first input image.
	Mask *InputImage
	// Index is the position of this call's first image within the whole
	// job (0 for the first call); providers put it on image events.
	Index int
}

// InputImage is an input image already read and sniffed by easel.
type InputImage struct {
	Data []byte
	// MIME is the sniffed type, e.g. "image/png".
	MIME string
	// Name is a file name with an extension matching MIME.
	Name          string
	Width, Height int
}

// Image is one produced image.
type Image struct {
	// Data holds the encoded image bytes as the upstream produced them.
	Data []byte
	// MIME is the content type as sniffed from Data (not trusted from the
	// upstream's headers).
	MIME string
	// Seed is the seed the upstream reports having used, if any.
	Seed *int64
}

// Result is what a successful Generate returns.
type Result struct {
	Images []Image
	// UpstreamID is the upstream's id for the work (Gradio event id, job id).
	UpstreamID string
}

// EventType names a job event.
type EventType string

const (
	// EventQueued: waiting; Position (1-based) and QueueSize tell where.
	EventQueued EventType = "queued"
	// EventStarted: the upstream began working.
	EventStarted EventType = "started"
	// EventProgress: Step of Total, or Fraction in [0,1].
	EventProgress EventType = "progress"
	// EventLog: an informative message from the upstream (Message).
	EventLog EventType = "log"
	// EventAccepted: the upstream took the work under UpstreamID (a Gradio
	// event id, a job API's job id). The runner keeps the id in the job
	// record, so the work can be found, cancelled or resumed upstream.
	EventAccepted EventType = "accepted"
	// EventImage: one image is ready (Index). Emitted by the runner.
	EventImage EventType = "image"
	// EventPreview: the upstream sent a preview of image Index (Data).
	EventPreview EventType = "preview"
	// EventSucceeded, EventFailed, EventCanceled end a job. Emitted by the
	// runner only.
	EventSucceeded EventType = "succeeded"
	EventFailed    EventType = "failed"
	EventCanceled  EventType = "canceled"
)

// Event is one step of a job's life. Which fields are set depends on Type.
type Event struct {
	Type EventType `json:"type"`
	// Time is when the event happened; the runner fills it when zero.
	Time time.Time `json:"time"`
	// Index is the image index within the job the event is about.
	Index int `json:"index"`
	// Position is the 1-based queue position (EventQueued); 0 if unknown.
	Position int `json:"position,omitempty"`
	// QueueSize is the length of the queue the position is in, if known.
	QueueSize int `json:"queue_size,omitempty"`
	// ETA is the upstream's estimate in seconds, if any.
	ETA float64 `json:"eta,omitempty"`
	// Step and Total describe step progress (EventProgress).
	Step  int `json:"step,omitempty"`
	Total int `json:"total,omitempty"`
	// Fraction is progress in [0,1] when steps are unknown.
	Fraction float64 `json:"fraction,omitempty"`
	// Unit is the upstream's progress unit text ("steps", "ZeroGPU init").
	Unit string `json:"unit,omitempty"`
	// Message is human-readable text (EventLog, EventFailed).
	Message string `json:"message,omitempty"`
	// UpstreamID is the upstream's id for the work (EventAccepted).
	UpstreamID string `json:"upstream_id,omitempty"`
	// Source says whose queue a queued event is about: "easel" for the
	// gateway's own per-backend queue, "upstream" for the backend's.
	Source string `json:"source,omitempty"`
	// Data is a preview image (EventPreview) or unused.
	Data []byte `json:"-"`
	// MIME is the type of Data.
	MIME string `json:"-"`
}

// Capabilities describes a backend.
type Capabilities struct {
	// TextToImage and ImageToImage say which kinds the backend serves.
	TextToImage  bool `json:"text_to_image"`
	ImageToImage bool `json:"image_to_image"`
	// MaxInputImages is the most input images one edit can take.
	MaxInputImages int `json:"max_input_images,omitempty"`
	// MaxInputPixels is the largest width*height of an input image the
	// backend takes; easel scales larger inputs down (keeping the aspect
	// ratio) before the provider sees them. 0 means no limit.
	MaxInputPixels int `json:"max_input_pixels,omitempty"`
	// InputFormats lists the input image formats the backend takes ("png",
	// "jpeg", "webp", "gif"); easel converts other inputs to PNG (or the
	// first listed format). Empty means any of png, jpeg and webp.
	InputFormats []string `json:"input_formats,omitempty"`
	// MaxN is how many images one Generate call can produce; the runner
	// fans out beyond it. 0 means 1.
	MaxN int `json:"max_n"`
	// Size describes which pixel sizes the backend accepts.
	Size SizeRule `json:"size"`
	// AspectRatios, when set, is the closed list of ratios the backend
	// takes instead of free sizes (e.g. "1:1", "16:9").
	AspectRatios []string `json:"aspect_ratios,omitempty"`
	// Seed, Steps, NegativePrompt say which optional controls work.
	Seed           bool `json:"seed"`
	Steps          bool `json:"steps"`
	NegativePrompt bool `json:"negative_prompt"`
	// DefaultSteps, MinSteps, MaxSteps bound Steps when Steps is true.
	DefaultSteps int `json:"default_steps,omitempty"`
	MinSteps     int `json:"min_steps,omitempty"`
	MaxSteps     int `json:"max_steps,omitempty"`
}

// SizeRule bounds the pixel sizes a backend accepts. A zero rule accepts
// only the backend's default size.
type SizeRule struct {
	// Default is used for size "auto" or when absent.
	DefaultWidth  int `json:"default_width,omitempty"`
	DefaultHeight int `json:"default_height,omitempty"`
	// Min and Max bound each side; Multiple is the step each side must be
	// a multiple of (e.g. 64, 16). 0 means no constraint.
	Min      int `json:"min,omitempty"`
	Max      int `json:"max,omitempty"`
	Multiple int `json:"multiple,omitempty"`
	// Choices, when set, is the closed list of "WxH" sizes accepted; a
	// request is mapped to the choice with the nearest aspect ratio.
	Choices []string `json:"choices,omitempty"`
}
