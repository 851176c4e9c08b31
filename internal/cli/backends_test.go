package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func writeBackendsConfig(t *testing.T, spaces map[string]string, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("backends:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    preset: z-image-turbo-mrfakename\n    gradio:\n      space: %s\n", n, spaces[n])
	}
	fmt.Fprintf(&b, "models:\n  - id: m\n    backends: [%s]\n", strings.Join(names, ", "))
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBackendsOneDown(t *testing.T) {
	t.Parallel()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.ZImageTurbo(gradiotest.Behavior{})})
	wrong := startFake(t, gradiotest.Options{Endpoints: gradiotest.FluxSchnell(gradiotest.Behavior{})})
	spaces := map[string]string{
		"good":    fake.URL,
		"gone":    "http://" + closedPort(t),
		"renamed": wrong.URL, // reachable, but has no /generate_image
	}
	path := writeBackendsConfig(t, spaces, "good", "gone", "renamed")
	out, _, err := run(t, nil, "backends", "--config", path, "--timeout", "10s")
	if got := ExitCode(err); got != ExitFailure || !strings.Contains(err.Error(), "2 of 3 backends down") {
		t.Errorf("exit %d (%v), want %d and 2 of 3 down", got, err, ExitFailure)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", out)
	}
	if !regexp.MustCompile(`^NAME\s+TYPE\s+STATUS\s+LATENCY\s+DETAIL$`).MatchString(lines[0]) {
		t.Errorf("header = %q", lines[0])
	}
	rows := []*regexp.Regexp{
		regexp.MustCompile(`^good\s+gradio\s+up\s+\d+(\.\d)?(ms|s)\s+endpoint /generate_image found$`),
		regexp.MustCompile(`^gone\s+gradio\s+down\s+\d+(\.\d+)?(ms|s)\s+\S.*$`),
		regexp.MustCompile(`^renamed\s+gradio\s+down\s+\S+\s+.*generate_image.*$`),
	}
	for i, re := range rows {
		if !re.MatchString(lines[i+1]) {
			t.Errorf("row %d = %q, want %s", i+1, lines[i+1], re)
		}
	}

	// All up: exit 0.
	path = writeBackendsConfig(t, spaces, "good")
	out, _, err = run(t, nil, "backends", "--config", path)
	if err != nil || !strings.Contains(out, "good") || !strings.Contains(out, " up ") {
		t.Errorf("all up = %v\n%s", err, out)
	}
	if fake.Requests("/config") < 2 {
		t.Errorf("the fake's /config was read %d times, want once per check", fake.Requests("/config"))
	}

	_, _, err = run(t, nil, "backends", "extra")
	if ExitCode(err) != ExitUsage {
		t.Errorf("backends with an argument: %v", err)
	}
}
