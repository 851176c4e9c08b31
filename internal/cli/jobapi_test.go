package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// jobAPIConfig writes a config with one job-API backend per name, each from
// the reference preset with its URLs pointed at base.
func jobAPIConfig(t *testing.T, bases map[string]string, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("backends:\n")
	for _, n := range names {
		fmt.Fprintf(&b, `  - name: %s
    preset: aiimagetoimage-nano-banana
    jobapi:
      submit: {url: %q}
      poll: {url: %q}
`, n, bases[n]+jobapitest.SubmitPath, bases[n]+jobapitest.PollPath+"?job_id={job_id}")
	}
	fmt.Fprintf(&b, "models:\n  - id: nano-banana\n    backends: [%s]\n", strings.Join(names, ", "))
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBackendsJobAPI checks `easel backends` on job-API backends: the
// check reaches the API host and never submits a job.
func TestBackendsJobAPI(t *testing.T) {
	t.Parallel()
	fake := jobapitest.New(jobapitest.Options{JobDuration: time.Second})
	t.Cleanup(fake.Close)
	bases := map[string]string{"live": fake.URL, "gone": "http://" + closedPort(t)}
	path := jobAPIConfig(t, bases, "live", "gone")
	out, _, err := run(t, nil, "backends", "--config", path, "--timeout", "10s")
	if got := ExitCode(err); got != ExitFailure {
		t.Errorf("exit %d (%v), want %d", got, err, ExitFailure)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", out)
	}
	rows := []*regexp.Regexp{
		regexp.MustCompile(`^live\s+jobapi\s+up\s+\d+(\.\d)?(ms|s)\s+reachable$`),
		regexp.MustCompile(`^gone\s+jobapi\s+down\s+\S+\s+.*connect.*$`),
	}
	for i, re := range rows {
		if !re.MatchString(lines[i+1]) {
			t.Errorf("row %d = %q, want %s", i+1, lines[i+1], re)
		}
	}
	if n := fake.Submits(); n != 0 {
		t.Errorf("the check submitted %d jobs", n)
	}
	reqs := fake.Requests()
	if len(reqs) != 0 {
		// HEAD / matches none of the fake's routes, so the journal stays
		// empty; anything recorded means a real call was made.
		t.Errorf("the check reached the fake's routes: %+v", reqs)
	}
}

// TestConfigCommandJobAPI shows a job-API backend in the effective config
// with its secret header hidden, and refuses one whose key variable is
// unset.
func TestConfigCommandJobAPI(t *testing.T) {
	t.Parallel()
	const secret = "Bearer jobapi-canary-secret-93f1"
	path := filepath.Join(t.TempDir(), "easel.yaml")
	doc := `backends:
  - name: i2i
    preset: aiimagetoimage-standard
    jobapi:
      submit: {header_env: {Authorization: I2I_KEY}}
models:
  - id: img2img-standard
    backends: [i2i]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, map[string]string{"I2I_KEY": secret}, "config", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: jobapi", "model: standard", "concurrency: 2", "job_id_path: result.job_id", "1 secret header(s) set, values hidden"} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "jobapi-canary-secret") {
		t.Error("config output shows the secret header value")
	}

	_, _, err = run(t, nil, "config", "--config", path)
	if err == nil || !strings.Contains(err.Error(), "backends[0].jobapi.submit.header_env") || !strings.Contains(err.Error(), "I2I_KEY") {
		t.Errorf("config without the key variable = %v", err)
	}
}
