package openaiapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
)

// sseWriteTimeout is how long one event may take to reach a client. It is
// pushed forward before every write, so a slow-but-reading client is fine
// and one that stopped reading is cut off instead of pinning the job.
const sseWriteTimeout = 30 * time.Second

// maxSSELine keeps each data line under the Go SDK's 32 MiB line limit,
// with room for the JSON around a base64 image.
const maxSSELine = 32<<20 - 64<<10

// sseWriter writes one text/event-stream response. After the first write
// error every call is a no-op returning that error.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

// startSSE sends the stream's headers at once, so clients with short
// time-to-headers limits see the stream begin before any work is done.
func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	w.WriteHeader(http.StatusOK)
	s.flush()
	return s
}

func (s *sseWriter) write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := s.w.Write(p); err != nil {
		s.err = err
		return err
	}
	return s.flush()
}

func (s *sseWriter) flush() error {
	if err := s.rc.Flush(); err != nil && s.err == nil {
		s.err = err
	}
	return s.err
}

// event writes "event: name" (if name is set) and one data line holding v
// as JSON.
func (s *sseWriter) event(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw(name, data)
}

func (s *sseWriter) raw(name string, data []byte) error {
	buf := make([]byte, 0, len(data)+len(name)+16)
	if name != "" {
		buf = append(buf, "event: "...)
		buf = append(buf, name...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	return s.write(buf)
}

// comment writes a comment line, which every SSE client ignores; it keeps
// proxies and idle timers from closing a quiet stream.
func (s *sseWriter) comment(text string) error {
	return s.write([]byte(": " + text + "\n\n"))
}

func terminal(t provider.EventType) bool {
	return t == provider.EventSucceeded || t == provider.EventFailed || t == provider.EventCanceled
}

// follow feeds every event of job, past and live, to on until the terminal
// event, calling beat every interval while the job is quiet. If the
// subscription is cut off (the job outran us), it finishes from the job's
// final snapshot, so on still sees every image and exactly one terminal
// event. It returns on's first error, or ctx's error when the client left.
func follow(ctx context.Context, job *gen.Job, interval time.Duration, beat func() error, on func(provider.Event) error) error {
	past, live, stop := job.Subscribe()
	defer stop()
	for _, ev := range past {
		if err := on(ev); err != nil {
			return err
		}
		if terminal(ev.Type) {
			return nil
		}
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			if err := beat(); err != nil {
				return err
			}
		case ev, ok := <-live:
			if !ok {
				return finishFromSnapshot(ctx, job, on)
			}
			if err := on(ev); err != nil {
				return err
			}
			if terminal(ev.Type) {
				return nil
			}
		}
	}
}

func finishFromSnapshot(ctx context.Context, job *gen.Job, on func(provider.Event) error) error {
	snap, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	if snap.Status == gen.StatusSucceeded {
		for i := range snap.Images {
			if err := on(provider.Event{Type: provider.EventImage, Index: i, Time: snap.Finished}); err != nil {
				return err
			}
		}
	}
	final := provider.Event{Type: provider.EventFailed, Time: snap.Finished}
	switch snap.Status {
	case gen.StatusSucceeded:
		final.Type = provider.EventSucceeded
	case gen.StatusCanceled:
		final.Type = provider.EventCanceled
	}
	return on(final)
}

// jobError is the error a failed or cancelled job ended with.
func jobError(snap gen.Snapshot) error {
	if snap.Err != nil {
		return snap.Err
	}
	if snap.Status == gen.StatusCanceled {
		return &provider.Error{Kind: provider.KindCanceled, Message: "The job was canceled."}
	}
	return &provider.Error{Kind: provider.KindUpstream, Message: "The job failed."}
}
