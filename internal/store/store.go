// Package store defines where the gateway keeps its durable state: job
// records, API keys, usage counts and idempotency claims. The interfaces are
// split by aggregate so a caller asks only for what it uses; sqlite/ (the
// embedded default) and later postgres/ implement them, and storetest/ holds
// the one conformance suite every implementation must pass.
//
// Times are kept at millisecond precision in UTC; a zero time.Time means
// "not set".
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors; implementations wrap them, callers test with errors.Is.
var (
	// ErrNotFound: no such record, or a record the asking key does not own
	// (the two are deliberately indistinguishable).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a record with that identity already exists.
	ErrConflict = errors.New("store: conflict")
	// ErrBadCursor: a List cursor that this store did not hand out.
	ErrBadCursor = errors.New("store: bad cursor")
	// ErrInvalid: a record or argument the store refuses before any write
	// (empty id, missing key hash, ...).
	ErrInvalid = errors.New("store: invalid input")
)

// Job status values, the same strings as gen.Status. They are repeated here
// so the store does not depend on gen (gen is the store's caller).
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
)

// Finished reports whether status is terminal: only such jobs are removed by
// retention.
func Finished(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCanceled
}

// List page size bounds.
const (
	// MinListLimit and MaxListLimit bound Jobs.List's limit; values outside
	// are clamped, so a client cannot ask for an unbounded page.
	MinListLimit = 1
	MaxListLimit = 100
)

// ClampLimit applies MinListLimit..MaxListLimit.
func ClampLimit(limit int) int {
	return min(max(limit, MinListLimit), MaxListLimit)
}

// JobRecord is the durable record of one generation job, async or sync.
type JobRecord struct {
	// ID is the public job id; unique across the store.
	ID string
	// KeyID is the owning API key's id; empty when auth is off.
	KeyID string
	// Model is the public model id the job runs.
	Model string
	// Backend is the backend currently (or last) serving it.
	Backend string
	// Status is one of the Status* constants.
	Status string
	// Progress is the last progress per image, as JSON (opaque to the store).
	Progress json.RawMessage
	// Created, Started and Finished are the lifecycle timestamps.
	Created, Started, Finished time.Time
	// N is how many images the job produces.
	N int
	// Width and Height are the size asked of the backend.
	Width, Height int
	// Request is a summary of the client's request as JSON (prompt, size,
	// n, format...). It must never hold a secret or input image bytes.
	Request json.RawMessage
	// UpstreamIDs holds, per image index, the upstream's id for its call.
	UpstreamIDs []string
	// ResumeState is what a provider needs to continue the upstream job
	// after a restart, as JSON (opaque to the store).
	ResumeState json.RawMessage
	// Images are the stored results in index order.
	Images []ImageRecord
	// InputKeys are the blob keys of the job's input images (uploads and
	// fetched image URLs stored for an async job), so that retention keeps
	// them while the job lives and removes them after.
	InputKeys []string
	// Error is set when the job failed or was canceled.
	Error *JobError
	// IdempotencyKey and RequestHash are the client's Idempotency-Key and
	// the hash of the request it came with, kept for audit and replays.
	IdempotencyKey string
	RequestHash    string
	// WebhookURL is where completion events go; empty for none.
	WebhookURL string
	// Version counts successful writes: 1 after Create, +1 per Update. The
	// store sets it; values written by callers are ignored.
	Version int
}

// ImageRecord is one stored result image.
type ImageRecord struct {
	// Key is the blob key.
	Key string `json:"key"`
	// MIME is the stored bytes' type.
	MIME string `json:"mime"`
	// Width and Height are the image's pixel size.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Bytes is the stored object's size.
	Bytes int64 `json:"bytes"`
}

// JobError is why a job failed.
type JobError struct {
	// Kind is the provider error kind ("rate_limited", "upstream", ...).
	Kind string `json:"kind"`
	// Message is safe to show to the job's owner.
	Message string `json:"message"`
	// RetryAfterMS is the upstream's retry hint in milliseconds; 0 for none.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Jobs stores job records.
type Jobs interface {
	// Create inserts rec and sets rec.Version to 1. An existing id gives
	// ErrConflict; an empty id or status, a zero Created or a JSON field that
	// is not JSON gives ErrInvalid.
	Create(ctx context.Context, rec *JobRecord) error
	// Get returns the job. keyID "" reads any job (admin); otherwise a job
	// owned by another key is ErrNotFound, exactly like a missing one.
	Get(ctx context.Context, id, keyID string) (*JobRecord, error)
	// Update reads the job, calls f on it and writes the result, all in one
	// transaction, so concurrent Updates of one job never lose a write. If f
	// returns an error nothing is written and Update returns that error
	// (wrapped). f must not call the store, and must not change ID or
	// KeyID (ErrInvalid).
	Update(ctx context.Context, id string, f func(*JobRecord) error) error
	// List returns one page of jobs newest first (Created, then ID, both
	// descending), and the cursor of the next page ("" on the last page).
	// keyID "" lists every key's jobs. limit is clamped with ClampLimit.
	// cursor "" starts at the newest; a cursor not from List is
	// ErrBadCursor.
	List(ctx context.Context, keyID, cursor string, limit int) ([]*JobRecord, string, error)
	// DeleteFinishedBefore deletes up to limit finished jobs (terminal
	// status) whose Finished time is before t, oldest first, and returns
	// them so the caller can delete their blobs. limit < 1 is ErrInvalid.
	DeleteFinishedBefore(ctx context.Context, t time.Time, limit int) ([]*JobRecord, error)
	// BlobKeys calls fn with every blob key (Images and InputKeys) of the
	// jobs whose results are still live: jobs not finished (not terminal,
	// or terminal without a Finished time) and jobs finished at or after
	// finishedAfter. A key shared by several jobs may be passed more than
	// once. Records are read in bounded pages and fn is never called
	// inside a database call, so fn may use the store; jobs created or
	// changed during the scan may or may not be seen. An error from fn
	// stops the scan and is returned.
	BlobKeys(ctx context.Context, finishedAfter time.Time, fn func(key string) error) error
}

// KeyRecord is an API key as stored: never the key itself.
type KeyRecord struct {
	// ID is the 8-character id embedded in the key; lookups use it.
	ID string
	// Hash is HMAC-SHA-256(pepper, key); see Hash.
	Hash []byte
	// Prefix is the display form: kind, id and the secret's last four
	// characters ("sk-user_abcd1234_…wxyz").
	Prefix string
	// Name is the operator's label.
	Name string
	// Scopes are "admin" and/or "user".
	Scopes []string
	// Created is when the key was made.
	Created time.Time
	// Revoked is when the key was revoked; nil while live.
	Revoked *time.Time
	// LastUsed is the last successful authentication; zero if never.
	LastUsed time.Time
	// RequestsPerMinute, ConcurrentJobs and ImagesPerDay limit the key:
	// a positive value is the key's own limit, 0 means the server's
	// default (config "limits"), and a negative value means unlimited
	// even when the server has a default.
	RequestsPerMinute int
	ConcurrentJobs    int
	ImagesPerDay      int
	// WebhookSecret signs this key's webhook deliveries (Standard Webhooks,
	// "whsec_..."). Unlike the key it is stored as is: signing needs the
	// secret itself, so a hash would be useless. The trade-off is that a
	// copy of the database lets someone forge this key's webhooks (not use
	// the API); encrypting it under a server-side key is a possible later
	// step.
	WebhookSecret string
	// WebhookURL is where this key's job events go when a request names
	// no webhook_url of its own; empty for none.
	WebhookURL string
}

// Keys stores API keys.
type Keys interface {
	// Create inserts rec. An existing id gives ErrConflict; an empty id or
	// a Hash that is not 32 bytes gives ErrInvalid.
	Create(ctx context.Context, rec KeyRecord) error
	// ByID returns the key, revoked or not; ErrNotFound if missing.
	ByID(ctx context.Context, id string) (*KeyRecord, error)
	// List returns every key, oldest first.
	List(ctx context.Context) ([]KeyRecord, error)
	// Revoke marks the key revoked at at. Revoking twice keeps the first
	// time. ErrNotFound if missing.
	Revoke(ctx context.Context, id string, at time.Time) error
	// Touch records a successful use at at (LastUsed never moves back).
	// ErrNotFound if missing.
	Touch(ctx context.Context, id string, at time.Time) error
}

// Usage counts images per key for daily quotas.
type Usage interface {
	// Record adds images produced for keyID at at.
	Record(ctx context.Context, keyID string, at time.Time, images int) error
	// ImagesSince sums the images recorded for keyID at or after since.
	ImagesSince(ctx context.Context, keyID string, since time.Time) (int, error)
	// RecordWithin records images for keyID at at only if the images
	// recorded since since plus images stay within quota, checking and
	// recording atomically so concurrent requests cannot overrun a quota.
	// It reports whether it recorded.
	RecordWithin(ctx context.Context, keyID string, at time.Time, images int, since time.Time, quota int) (bool, error)
	// Refund takes back images recorded for keyID at at: a job admitted
	// against the quota (RecordWithin) that produced fewer images than it
	// reserved. It is kept as a negative entry at the same instant, so the
	// reservation and its refund leave the quota window together. images
	// must not be negative (ErrInvalid) and must not exceed what was
	// recorded at at.
	Refund(ctx context.Context, keyID string, at time.Time, images int) error
	// PurgeBefore deletes usage recorded before t (older than any quota
	// window) and returns how many entries it removed.
	PurgeBefore(ctx context.Context, t time.Time) (int, error)
}

// Idempotency maps (API key, Idempotency-Key) to the job it created.
type Idempotency interface {
	// Claim atomically looks up (keyID, idemKey). If no live claim exists
	// (none, or its expiry has passed by the
	// store's clock), it records jobID, requestHash and
	// expires and returns ("", false, nil): the caller owns the key and
	// creates the job. If a live claim exists it returns its job id, and
	// conflict is true when its request hash differs from requestHash.
	// The claim may outlive a crash that happened before the job was
	// created: a caller that gets an existing id whose job is ErrNotFound
	// creates the job under that id.
	Claim(ctx context.Context, keyID, idemKey, requestHash, jobID string, expires time.Time) (existingJobID string, conflict bool, err error)
	// Purge deletes claims whose expiry is at or before now and returns
	// how many.
	Purge(ctx context.Context, now time.Time) (int, error)
}

// Store is the whole durable state. Its aggregates are reached through
// accessors rather than embedded, because Jobs and Keys both have a Create
// (and a List) with different signatures.
type Store interface {
	// Jobs returns the job records.
	Jobs() Jobs
	// Keys returns the API keys.
	Keys() Keys
	// Usage returns the usage counters.
	Usage() Usage
	// Idempotency returns the idempotency claims.
	Idempotency() Idempotency
	// Close releases the store; nothing may be called afterwards.
	Close() error
}
