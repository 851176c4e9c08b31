package server

import (
	"net/http"
	"testing"
	"time"
)

// TestDefaults pins the production timeouts and limits (reliability
// policy): a change here must be deliberate.
func TestDefaults(t *testing.T) {
	s, err := New(Options{Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"ReadHeaderTimeout": s.srv.ReadHeaderTimeout,
		"IdleTimeout":       s.srv.IdleTimeout,
		"MaxHeaderBytes":    s.srv.MaxHeaderBytes,
		"ReadTimeout":       s.srv.ReadTimeout,
		"WriteTimeout":      s.srv.WriteTimeout,
	}
	want := map[string]any{
		"ReadHeaderTimeout": 10 * time.Second,
		"IdleTimeout":       120 * time.Second,
		"MaxHeaderBytes":    64 << 10,
		// Absolute deadlines would cut SSE streams.
		"ReadTimeout":  time.Duration(0),
		"WriteTimeout": time.Duration(0),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
