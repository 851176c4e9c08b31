package webhook

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewMessage(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 5, 0, 0, 123_000_000, time.FixedZone("x", 3600))
	type jobData struct {
		ID     string `json:"id,omitempty"`
		Status string `json:"status"`
		Images int    `json:"images"`
	}
	tests := []struct {
		name string
		ev   Event
		want string // the exact body
	}{
		{
			name: "succeeded with data",
			ev:   Event{Type: EventJobSucceeded, JobID: "job_1", Data: jobData{Status: "succeeded", Images: 2}},
			want: `{"type":"image.job.succeeded","timestamp":"2026-11-22T04:00:00.123Z","data":{"id":"job_1","images":2,"status":"succeeded"}}`,
		},
		{
			name: "failed without data",
			ev:   Event{Type: EventJobFailed, JobID: "job_2"},
			want: `{"type":"image.job.failed","timestamp":"2026-11-22T04:00:00.123Z","data":{"id":"job_2"}}`,
		},
		{
			name: "canceled with matching id and a map",
			ev:   Event{Type: EventJobCanceled, JobID: "job_3", Data: map[string]any{"id": "job_3", "reason": "user"}},
			want: `{"type":"image.job.canceled","timestamp":"2026-11-22T04:00:00.123Z","data":{"id":"job_3","reason":"user"}}`,
		},
	}
	idPattern := regexp.MustCompile(`^msg_[a-z2-7]{26}$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMessage(tc.ev, at)
			if err != nil {
				t.Fatalf("NewMessage: %v", err)
			}
			if diff := cmp.Diff(tc.want, string(m.Body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if !idPattern.MatchString(m.ID) {
				t.Errorf("id %q does not match %v", m.ID, idPattern)
			}
			if m.Type != tc.ev.Type {
				t.Errorf("type %q, want %q", m.Type, tc.ev.Type)
			}
			// A stored message (a durable job's arguments) comes back
			// byte-identical, so retries sign and send the same bytes.
			stored, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back Message
			if err := json.Unmarshal(stored, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m, back); diff != "" {
				t.Errorf("stored message changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewMessageUniqueIDs(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		m, err := NewMessage(Event{Type: EventJobFailed, JobID: "j"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if seen[m.ID] {
			t.Fatalf("id %s repeated", m.ID)
		}
		seen[m.ID] = true
	}
}

func TestNewMessageRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   Event
	}{
		{name: "unknown type", ev: Event{Type: "image.job.started", JobID: "j"}},
		{name: "empty type", ev: Event{JobID: "j"}},
		{name: "empty job id", ev: Event{Type: EventJobSucceeded}},
		{name: "data is an array", ev: Event{Type: EventJobSucceeded, JobID: "j", Data: []int{1}}},
		{name: "data is a string", ev: Event{Type: EventJobSucceeded, JobID: "j", Data: "x"}},
		{name: "data does not marshal", ev: Event{Type: EventJobSucceeded, JobID: "j", Data: make(chan int)}},
		{name: "data id differs", ev: Event{Type: EventJobSucceeded, JobID: "j", Data: map[string]any{"id": "k"}}},
		{name: "data id not a string", ev: Event{Type: EventJobSucceeded, JobID: "j", Data: map[string]any{"id": 7}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMessage(tc.ev, time.Now())
			if !errors.Is(err, ErrEvent) {
				t.Fatalf("NewMessage = %+v, %v; want ErrEvent", m, err)
			}
			if strings.Contains(err.Error(), "msg_") {
				t.Fatalf("error mentions a message id: %v", err)
			}
		})
	}
}
