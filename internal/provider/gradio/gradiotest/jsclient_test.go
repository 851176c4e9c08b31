package gradiotest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestGradioJSClient runs the official JS client (pinned in jscheck/) against
// the fake, proving the fake speaks the protocol real clients expect.
func TestGradioJSClient(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs("jscheck")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@gradio", "client", "package.json")); err != nil {
		t.Fatalf("@gradio/client is not installed (%v): run `npm ci` in %s", err, dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required for this test: %v", err)
	}
	eps := append(ZImageTurbo(Behavior{Steps: 3}), ImageEdit(Behavior{Steps: 2})...)
	srv := New(Options{Endpoints: eps, Heartbeat: time.Second, SpaceID: "easel/fake"})
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs", srv.URL)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node check.mjs failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if n := len(srv.Uploads()); n != 1 {
		t.Errorf("uploads = %d, want 1", n)
	}
	for _, j := range srv.Joins() {
		if j.Header.Get("X-Gradio-User") != "api" {
			t.Errorf("join %s: x-gradio-user = %q, want api", j.APIName, j.Header.Get("X-Gradio-User"))
		}
	}
}
