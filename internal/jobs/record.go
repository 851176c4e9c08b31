package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/store"
)

// Request is what a job record keeps of its request: every parameter, and
// the input images as blob keys, never their bytes or any secret. An async
// job is rebuilt from it after a restart.
type Request struct {
	Kind           provider.Kind `json:"kind"`
	Prompt         string        `json:"prompt"`
	NegativePrompt string        `json:"negative_prompt,omitempty"`
	N              int           `json:"n"`
	Width          int           `json:"width,omitempty"`
	Height         int           `json:"height,omitempty"`
	AspectRatio    string        `json:"aspect_ratio,omitempty"`
	Steps          int           `json:"steps,omitempty"`
	Seed           *int64        `json:"seed,omitempty"`
	OutputFormat   string        `json:"output_format,omitempty"`
	Inputs         []Input       `json:"inputs,omitempty"`
	Mask           *Input        `json:"mask,omitempty"`
	// ResponseFormat is how the client asked to receive results (url or
	// b64_json); the job endpoint uses it as its default.
	ResponseFormat string `json:"response_format,omitempty"`
	// BaseURL is the absolute base the request reached easel at, for the
	// result links of webhooks sent with no request to derive it from.
	BaseURL string `json:"base_url,omitempty"`
	// Async is true for a job accepted with 202.
	Async bool `json:"async,omitempty"`
	// Endpoint is the API route that accepted the job.
	Endpoint string `json:"endpoint,omitempty"`
}

// Input is one stored input image.
type Input struct {
	Key    string `json:"key"`
	MIME   string `json:"mime"`
	Name   string `json:"name,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	Bytes  int    `json:"bytes"`
}

// resumeState is saved in the record as upstream work is accepted.
type resumeState struct {
	Points []gen.ResumePoint `json:"points"`
}

// summary is a job request's record form; inputs are filled by the caller
// once stored.
func summary(req *gen.Request, extra Submission) Request {
	return Request{
		Kind:           req.Kind,
		Prompt:         req.Prompt,
		NegativePrompt: req.NegativePrompt,
		N:              req.N,
		Width:          req.Width,
		Height:         req.Height,
		AspectRatio:    req.AspectRatio,
		Steps:          req.Steps,
		Seed:           req.Seed,
		OutputFormat:   req.OutputFormat,
		ResponseFormat: extra.ResponseFormat,
		BaseURL:        extra.BaseURL,
		Endpoint:       extra.Endpoint,
	}
}

// RequestHash fingerprints what a request asks for, for Idempotency-Key
// checks: the parameters, the images' contents and the submission's own
// settings. Transport details (multipart boundaries, JSON key order) do
// not change it.
func RequestHash(req *gen.Request, sub Submission) string {
	h := sha256.New()
	r := summary(req, sub)
	r.BaseURL = "" // the same request may reach easel under another name
	for _, img := range req.Images {
		sum := sha256.Sum256(img.Data)
		r.Inputs = append(r.Inputs, Input{Key: hex.EncodeToString(sum[:]), MIME: img.MIME, Bytes: len(img.Data)})
	}
	if req.Mask != nil {
		sum := sha256.Sum256(req.Mask.Data)
		r.Mask = &Input{Key: hex.EncodeToString(sum[:]), MIME: req.Mask.MIME, Bytes: len(req.Mask.Data)}
	}
	b, _ := json.Marshal(struct {
		Model   string  `json:"model"`
		Req     Request `json:"req"`
		Webhook string  `json:"webhook"`
	}{req.Model, r, sub.WebhookURL})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// storeInputs writes a request's input images to the blob store so an
// async job can run after a restart.
func storeInputs(ctx context.Context, blobs blob.Bucket, req *gen.Request, r *Request) error {
	put := func(img provider.InputImage) (Input, error) {
		key, err := blobs.Put(ctx, img.Data, img.MIME)
		if err != nil {
			return Input{}, fmt.Errorf("storing an input image: %w", err)
		}
		return Input{Key: key, MIME: img.MIME, Name: img.Name, Width: img.Width, Height: img.Height, Bytes: len(img.Data)}, nil
	}
	for _, img := range req.Images {
		in, err := put(img)
		if err != nil {
			return err
		}
		r.Inputs = append(r.Inputs, in)
	}
	if req.Mask != nil {
		in, err := put(*req.Mask)
		if err != nil {
			return err
		}
		r.Mask = &in
	}
	return nil
}

// maxInputBytes bounds one stored input read back for a resumed job.
const maxInputBytes = 64 << 20

// loadInputs reads stored inputs back into a job request.
func loadInputs(ctx context.Context, blobs blob.Bucket, r *Request, req *gen.Request) error {
	load := func(in Input) (provider.InputImage, error) {
		rc, _, err := blobs.Get(ctx, in.Key)
		if err != nil {
			return provider.InputImage{}, fmt.Errorf("reading input image %s: %w", in.Key, err)
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, maxInputBytes+1))
		if err != nil {
			return provider.InputImage{}, fmt.Errorf("reading input image %s: %w", in.Key, err)
		}
		if len(data) > maxInputBytes {
			return provider.InputImage{}, fmt.Errorf("input image %s is larger than %d bytes", in.Key, maxInputBytes)
		}
		return provider.InputImage{Data: data, MIME: in.MIME, Name: in.Name, Width: in.Width, Height: in.Height}, nil
	}
	for _, in := range r.Inputs {
		img, err := load(in)
		if err != nil {
			return err
		}
		req.Images = append(req.Images, img)
	}
	if r.Mask != nil {
		img, err := load(*r.Mask)
		if err != nil {
			return err
		}
		req.Mask = &img
	}
	return nil
}

// genRequest rebuilds the job request of a record.
func genRequest(rec *store.JobRecord, r *Request) *gen.Request {
	return &gen.Request{
		Model:          rec.Model,
		Kind:           r.Kind,
		Prompt:         r.Prompt,
		NegativePrompt: r.NegativePrompt,
		N:              r.N,
		Width:          r.Width,
		Height:         r.Height,
		AspectRatio:    r.AspectRatio,
		Steps:          r.Steps,
		Seed:           r.Seed,
		OutputFormat:   r.OutputFormat,
		KeyID:          rec.KeyID,
		JobID:          rec.ID,
		Created:        rec.Created,
	}
}

// inputKeys lists the blob keys of a request's stored inputs.
func inputKeys(r *Request) []string {
	var keys []string
	for _, in := range r.Inputs {
		keys = append(keys, in.Key)
	}
	if r.Mask != nil {
		keys = append(keys, r.Mask.Key)
	}
	return keys
}

// applySnapshot copies a job's final or current state into its record.
func applySnapshot(rec *store.JobRecord, sn gen.Snapshot) {
	rec.Status = string(sn.Status)
	if sn.Backend != "" {
		rec.Backend = sn.Backend
	}
	if !sn.Started.IsZero() {
		rec.Started = sn.Started
	}
	if !sn.Finished.IsZero() {
		rec.Finished = sn.Finished
	}
	if sn.Width > 0 {
		rec.Width, rec.Height = sn.Width, sn.Height
	}
	// Images keep their positions (image k of the job is Images[k]); an
	// image not produced yet, or not at all, has an empty Key.
	rec.Images = rec.Images[:0]
	last := -1
	for i, img := range sn.Images {
		if img.Key != "" {
			last = i
		}
	}
	for _, img := range sn.Images[:last+1] {
		rec.Images = append(rec.Images, store.ImageRecord{Key: img.Key, MIME: img.MIME, Width: img.Width, Height: img.Height, Bytes: img.Bytes})
	}
	if ids := nonEmpty(sn.UpstreamIDs); len(ids) > 0 {
		rec.UpstreamIDs = ids
	}
	if p := lastProgress(sn.Progress); p != nil {
		rec.Progress = p
	}
	rec.Error = nil
	if sn.Err != nil {
		rec.Error = &store.JobError{Kind: sn.Err.Kind.String(), Message: sn.Err.Message, RetryAfterMS: sn.Err.RetryAfter.Milliseconds()}
	}
}

func nonEmpty(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}

// lastProgress keeps the per-image progress of a job as JSON.
func lastProgress(p []provider.Event) json.RawMessage {
	if len(p) == 0 {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	return b
}

// newRecord is the record of a job accepted now.
func newRecord(id, model string, req *gen.Request, sub Submission, r Request, now time.Time) (*store.JobRecord, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the job request: %w", err)
	}
	return &store.JobRecord{
		ID:             id,
		KeyID:          sub.KeyID,
		Model:          model,
		Status:         store.StatusQueued,
		Created:        now,
		N:              req.N,
		Width:          req.Width,
		Height:         req.Height,
		Request:        raw,
		IdempotencyKey: sub.IdempotencyKey,
		RequestHash:    sub.RequestHash,
		WebhookURL:     sub.WebhookURL,
	}, nil
}

// decodeRequest reads a record's request.
func decodeRequest(rec *store.JobRecord) (Request, error) {
	var r Request
	if len(rec.Request) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(rec.Request, &r); err != nil {
		return r, fmt.Errorf("decoding the request of job %s: %w", rec.ID, err)
	}
	return r, nil
}
