// Package webhook signs and sends the gateway's job notifications the
// Standard Webhooks way: each message is a JSON POST carrying webhook-id
// (stable across retries, the receiver's idempotency key),
// webhook-timestamp (this attempt's time) and webhook-signature
// (HMAC-SHA256 with the endpoint's "whsec_" secret, one signature per
// secret during a rotation).
//
// The package does one attempt at a time: [Deliverer.Attempt] sends a
// message once through the SSRF-guarded client and classifies the answer,
// and [NextDelay] says when to try again. The durable retry loop (a queued
// job that stores the [Message] and calls both) lives with the queue, so a
// restart between attempts loses nothing and resends the same webhook-id.
//
// Outcomes follow the spec's status handling: 2xx is delivered; 410 Gone
// disables the endpoint; every other answer (3xx, which is never followed,
// 4xx, 5xx) and every timeout or network error is a failure that is
// retried on the schedule, sooner or later as Retry-After asks; a target
// the SSRF guard refuses, or a URL that cannot be sent to, fails without
// retry because no later attempt can succeed.
package webhook

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event types sent to webhook endpoints: one terminal event per job.
const (
	// EventJobSucceeded is sent when an image job finished with results.
	EventJobSucceeded = "image.job.succeeded"
	// EventJobFailed is sent when an image job ended in an error.
	EventJobFailed = "image.job.failed"
	// EventJobCanceled is sent when an image job was canceled.
	EventJobCanceled = "image.job.canceled"
)

// ErrEvent is returned by NewMessage for an event it will not send.
var ErrEvent = errors.New("webhook: invalid event")

// Event is what happened, before it is turned into a Message.
type Event struct {
	// Type is one of EventJobSucceeded, EventJobFailed, EventJobCanceled.
	Type string
	// JobID identifies the job; it is sent as data.id.
	JobID string
	// Data is the rest of the payload's data object: anything that
	// marshals to a JSON object (or nil). An "id" member, if present, must
	// equal JobID.
	Data any
}

// Message is one event ready to send. It is what a durable delivery job
// stores: every attempt sends the same ID and Body, so receivers can
// de-duplicate on webhook-id.
type Message struct {
	// ID is the webhook-id header, "msg_" plus 26 random base32 characters.
	ID string `json:"id"`
	// Type is the event type, kept beside the body for logs and metrics.
	Type string `json:"type"`
	// Body is the exact JSON sent and signed:
	// {"type":…,"timestamp":…,"data":{"id":…,…}}.
	Body []byte `json:"body"`
}

// payload is the Standard Webhooks body shape.
type payload struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// NewMessage builds the message for ev with a fresh random id; now is the
// event's time (the payload's "timestamp", RFC 3339 in UTC), which stays
// the same on every attempt while webhook-timestamp moves on.
func NewMessage(ev Event, now time.Time) (Message, error) {
	switch ev.Type {
	case EventJobSucceeded, EventJobFailed, EventJobCanceled:
	default:
		return Message{}, fmt.Errorf("%w: unknown type %q", ErrEvent, ev.Type)
	}
	if ev.JobID == "" {
		return Message{}, fmt.Errorf("%w: empty job id", ErrEvent)
	}
	data, err := eventData(ev)
	if err != nil {
		return Message{}, err
	}
	body, err := json.Marshal(payload{
		Type:      ev.Type,
		Timestamp: now.UTC().Format(time.RFC3339Nano),
		Data:      data,
	})
	if err != nil {
		return Message{}, fmt.Errorf("encoding webhook payload: %w", err)
	}
	id, err := newMessageID()
	if err != nil {
		return Message{}, err
	}
	return Message{ID: id, Type: ev.Type, Body: body}, nil
}

// eventData renders ev.Data as a JSON object that carries the job id.
func eventData(ev Event) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if ev.Data != nil {
		raw, err := json.Marshal(ev.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: encoding data: %w", ErrEvent, err)
		}
		if !bytes.Equal(raw, []byte("null")) {
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, fmt.Errorf("%w: data is not a JSON object", ErrEvent)
			}
		}
	}
	idJSON, err := json.Marshal(ev.JobID)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding job id: %w", ErrEvent, err)
	}
	if have, ok := obj["id"]; ok {
		var s string
		if json.Unmarshal(have, &s) != nil || s != ev.JobID {
			return nil, fmt.Errorf("%w: data.id differs from the job id", ErrEvent)
		}
	}
	obj["id"] = idJSON
	// A map marshals with sorted keys, so the same event always gives the
	// same bytes.
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding data: %w", ErrEvent, err)
	}
	return out, nil
}

// idEncoding is lowercase base32 without padding: URL- and header-safe,
// and never a '.', which would blur the signed "{id}.{ts}.{body}" fields.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newMessageID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes for a webhook id: %w", err)
	}
	return "msg_" + idEncoding.EncodeToString(b), nil
}
