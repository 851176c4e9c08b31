package gradio

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingBody is a stream body that notes whether it was read to its end
// before being closed, as the HTTP transport needs to reuse a connection.
type recordingBody struct {
	r io.Reader

	mu         sync.Mutex
	sawEOF     bool
	closed     bool
	eofAtClose bool
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.mu.Lock()
		b.sawEOF = true
		b.mu.Unlock()
	}
	return n, err
}

func (b *recordingBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.eofAtClose = b.sawEOF
	return nil
}

func TestDrainStreamReadsToTheEnd(t *testing.T) {
	t.Parallel()
	body := &recordingBody{r: strings.NewReader("data: {\"msg\":\"close_stream\",\"event_id\":null}\n\n")}
	causes := make(chan error, 2)
	drainStream(body, func(cause error) { causes <- cause }, time.Minute)
	body.mu.Lock()
	closed, eof := body.closed, body.eofAtClose
	body.mu.Unlock()
	if !closed || !eof {
		t.Fatalf("closed = %v, read to the end before closing = %v; want both", closed, eof)
	}
	if cause := <-causes; cause != nil {
		t.Fatalf("stream context stopped with %v, want nil", cause)
	}
}

func TestDrainStreamGivesUpOnAnOpenStream(t *testing.T) {
	t.Parallel()
	// The pipe plays a stream the upstream never ends; stopping the
	// request's context is what unblocks a real body's read.
	pr, pw := io.Pipe()
	body := &recordingBody{r: pr}
	var once sync.Once
	first := make(chan error, 1)
	stop := func(cause error) {
		once.Do(func() {
			first <- cause
			_ = pw.CloseWithError(context.Canceled)
		})
	}
	done := make(chan struct{})
	go func() {
		drainStream(body, stop, 10*time.Millisecond)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drainStream did not give up on a stream that stays open")
	}
	if cause := <-first; !errors.Is(cause, errDrained) {
		t.Fatalf("stream context stopped with %v, want errDrained", cause)
	}
	body.mu.Lock()
	defer body.mu.Unlock()
	if !body.closed {
		t.Fatal("body not closed")
	}
}

func TestDrainStreamBoundsWhatItReads(t *testing.T) {
	t.Parallel()
	body := &recordingBody{r: io.LimitReader(zeros{}, 10*maxDrainBytes)}
	causes := make(chan error, 2)
	drainStream(body, func(cause error) { causes <- cause }, time.Minute)
	body.mu.Lock()
	defer body.mu.Unlock()
	if !body.closed || body.eofAtClose {
		t.Fatalf("closed = %v, read to the end = %v; want closed after at most %d bytes", body.closed, body.eofAtClose, maxDrainBytes)
	}
	if n, _ := io.Copy(io.Discard, body.r); n != 9*maxDrainBytes {
		t.Fatalf("%d bytes left unread, want %d", n, 9*maxDrainBytes)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
