package e2e

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestShutdownEndsEventStreams: on SIGTERM an open job event stream ends
// at once with a reconnect hint instead of holding the drain open, the
// process exits promptly, and the async job it was following completes
// after the restart.
func TestShutdownEndsEventStreams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fake, g, client, job := oneAsyncJob(ctx, t, 8*time.Second, "shutdown-1", "outlive a restart")
	waitFor(t, 20*time.Second, "the upstream submit", func() bool { return len(fake.JobIDs()) > 0 })

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url()+"/v1/images/jobs/"+job.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The replay's first event arrives before the signal.
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "id: ") {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event before the shutdown")
	}

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	sawRetry := false
	for l := range lines {
		if strings.HasPrefix(l, "retry: ") {
			sawRetry = true
		}
	}
	if took := time.Since(start); !sawRetry || took > 5*time.Second {
		t.Errorf("stream ended after %s, retry hint %v; want it to end at once with one", took.Round(time.Millisecond), sawRetry)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("exit took %s with a stream open", took.Round(time.Millisecond))
	}

	g.start()
	final := waitJob(t, &bundle{base: g.url(), raw: client}, testKey, job.ID)
	if final.Status != "succeeded" {
		t.Errorf("after the restart the job ended %s", final.Status)
	}
	if err := g.stop(); err != nil {
		t.Error(err)
	}
}
