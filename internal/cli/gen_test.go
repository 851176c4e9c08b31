package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// startEasel runs serve in-process with one model, "test", backed by a
// fake Z-Image-Turbo Space, and returns the server's URL and the fake.
func startEasel(t *testing.T, b gradiotest.Behavior) (string, *gradiotest.Server) {
	t.Helper()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.ZImageTurbo(b)})
	cfg := fmt.Sprintf(`backends:
  - name: fake
    preset: z-image-turbo-mrfakename
    gradio:
      space: %s
models:
  - id: test
    backends: [fake]
`, fake.URL)
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, _ := startServe(t, nil, "--config", path, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	return base, fake
}

func pngSize(t *testing.T, path string) (int, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	return pc.Width, pc.Height
}

var stepLine = regexp.MustCompile(`(?m)^step \d+/4$`)

func TestGenPlainProgress(t *testing.T) {
	t.Parallel()
	base, fake := startEasel(t, gradiotest.Behavior{Steps: 4})
	dir := filepath.Join(t.TempDir(), "out") + "/"
	out, errOut, err := run(t, nil, "gen", "--url", base, "-m", "test", "-s", "768x512", "--seed", "5", "-o", dir, "a red fox")
	if err != nil {
		t.Fatalf("gen: %v\nstderr:\n%s", err, errOut)
	}
	want := filepath.Join(filepath.Clean(dir), "img-1.png")
	if out != "saved "+want+"\n" {
		t.Errorf("stdout = %q, want %q", out, "saved "+want+"\n")
	}
	if w, h := pngSize(t, want); w != 768 || h != 512 {
		t.Errorf("saved image is %dx%d, want 768x512", w, h)
	}
	if !strings.Contains(errOut, "started\n") || !stepLine.MatchString(errOut) {
		t.Errorf("plain progress lacks started/step lines:\n%s", errOut)
	}
	if strings.Contains(errOut, "\r") || strings.Contains(errOut, "\x1b") {
		t.Errorf("plain progress contains terminal control characters: %q", errOut)
	}
	joins := fake.Joins()
	if len(joins) != 1 || joins[0].Data[0] != "a red fox" || joins[0].Data[4] != float64(5) || joins[0].Data[5] != false {
		t.Errorf("the fake received %+v", joins)
	}

	// A second run into the same directory does not overwrite the first.
	out, errOut, err = run(t, nil, "gen", "--url", base+"/v1/", "-m", "test", "-n", "2", "--progress", "none", "-o", dir, "a blue fox")
	if err != nil {
		t.Fatalf("gen -n 2: %v\n%s", err, errOut)
	}
	wantOut := fmt.Sprintf("saved %s\nsaved %s\n", filepath.Join(filepath.Clean(dir), "img-2.png"), filepath.Join(filepath.Clean(dir), "img-3.png"))
	if out != wantOut || errOut != "" {
		t.Errorf("gen -n 2: stdout %q stderr %q, want %q and nothing", out, errOut, wantOut)
	}
}

func TestGenNonStreamToFile(t *testing.T) {
	t.Parallel()
	base, _ := startEasel(t, gradiotest.Behavior{Steps: 1})
	file := filepath.Join(t.TempDir(), "fox.png")
	out, errOut, err := run(t, map[string]string{EnvURL: base}, "gen", "--no-stream", "-m", "test", "-s", "16:9", "-n", "2", "-o", file, "a fox")
	if err != nil {
		t.Fatalf("gen: %v\n%s", err, errOut)
	}
	stem := strings.TrimSuffix(file, ".png")
	if out != fmt.Sprintf("saved %s-1.png\nsaved %s-2.png\n", stem, stem) {
		t.Errorf("stdout = %q", out)
	}
	// 16:9 at about a megapixel, then fitted by the backend's multiple of 64.
	if w, h := pngSize(t, stem+"-2.png"); w != 1344 || h != 768 {
		t.Errorf("image is %dx%d, want 1344x768", w, h)
	}
}

func TestGenQueuePosition(t *testing.T) {
	t.Parallel()
	base, fake := startEasel(t, gradiotest.Behavior{Steps: 30, StepDelay: 20 * time.Millisecond})
	// The first job holds the backend's only slot; the second waits in
	// easel's queue and must say so.
	first := make(chan error, 1)
	go func() {
		_, _, err := run(t, nil, "gen", "--url", base, "-m", "test", "--progress", "none", "-o", t.TempDir()+"/", "first")
		first <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for fake.Running() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fake.Running() == 0 {
		t.Fatal("the first job never started on the fake")
	}
	_, errOut, err := run(t, nil, "gen", "--url", base, "-m", "test", "--progress", "plain", "-o", t.TempDir()+"/", "second")
	if err != nil {
		t.Fatalf("second gen: %v\n%s", err, errOut)
	}
	if err := <-first; err != nil {
		t.Fatalf("first gen: %v", err)
	}
	if !regexp.MustCompile(`(?m)^queued 1(/\d+)?$`).MatchString(errOut) {
		t.Errorf("no queue position line before the steps:\n%s", errOut)
	}
	if q, s := strings.Index(errOut, "queued"), strings.Index(errOut, "step "); q < 0 || s < 0 || q > s {
		t.Errorf("queued should come before the steps:\n%s", errOut)
	}
}

func TestGenBarInBuffer(t *testing.T) {
	t.Parallel()
	base, _ := startEasel(t, gradiotest.Behavior{Steps: 4, StepDelay: 60 * time.Millisecond})
	tests := []struct {
		n    string
		want []string
	}{
		{"1", []string{"generating", "(4/4", "\r"}},
		// Two images run side by side; the bar sums their steps.
		{"2", []string{"generating 2 images", "(8/8", "\r"}},
	}
	for _, tt := range tests {
		t.Run("n="+tt.n, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := run(t, nil, "gen", "--url", base, "-m", "test", "-n", tt.n, "--progress", "bar", "-o", t.TempDir()+"/", "a fox")
			if err != nil {
				t.Fatalf("gen: %v\n%s", err, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("bar output lacks %q:\n%q", w, errOut)
				}
			}
			if n, _ := strconv.Atoi(tt.n); strings.Count(out, "saved ") != n || !strings.HasPrefix(out, "saved ") {
				t.Errorf("stdout = %q, want %s saved lines", out, tt.n)
			}
		})
	}
}

// helperCmd runs the test binary as the easel command.
func helperCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1", EnvURL+"=", EnvAPIKey+"=", EnvConfig+"=")
	return cmd
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestGenBarInPseudoTerminal runs gen under script(1), which gives it a
// pseudo-terminal, and checks that the progress bar is drawn.
func TestGenBarInPseudoTerminal(t *testing.T) {
	t.Parallel()
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script(1) from util-linux is needed for the pseudo-terminal test: %v", err)
	}
	base, _ := startEasel(t, gradiotest.Behavior{Steps: 5, StepDelay: 50 * time.Millisecond})
	dir := t.TempDir()
	args := []string{os.Args[0], "-test.run=^$", "--", "gen", "--url", base, "-m", "test", "-o", dir + "/", "a fox in a pty"}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptPath, "-qefc", strings.Join(quoted, " "), "/dev/null")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "TERM=xterm")
	cmd.Stdin = strings.NewReader("")
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gen under script: %v\n%q", err, raw)
	}
	got := string(raw)
	for _, want := range []string{"generating", "(5/5", "[", "]", "saved " + filepath.Join(dir, "img-1.png")} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if stepLine.MatchString(got) || strings.Contains(got, "step 1/5\n") {
		t.Errorf("terminal output has plain step lines:\n%q", got)
	}
	if w, h := pngSize(t, filepath.Join(dir, "img-1.png")); w != 1024 || h != 1024 {
		t.Errorf("image is %dx%d, want the default 1024x1024", w, h)
	}
}

// TestGenInterrupt sends a real SIGINT to a running gen and checks the
// exit code and that the job was cancelled up to the Gradio app.
func TestGenInterrupt(t *testing.T) {
	t.Parallel()
	base, fake := startEasel(t, gradiotest.Behavior{Steps: 200, StepDelay: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := helperCmd(ctx, "gen", "--url", base, "-m", "test", "-o", t.TempDir()+"/", "a slow fox")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var seen []string
	signalled := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if !signalled && strings.HasPrefix(sc.Text(), "step ") {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	if !signalled {
		t.Fatalf("no step line before the end: %v\n%s", err, strings.Join(seen, "\n"))
	}
	if code := cmd.ProcessState.ExitCode(); code != ExitInterrupted {
		t.Errorf("exit code %d, want %d\n%s", code, ExitInterrupted, strings.Join(seen, "\n"))
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing saved", stdout.String())
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(fake.Cancels()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(fake.Cancels()) == 0 {
		t.Error("the Gradio app never received a cancel")
	}
	for fake.Running() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fake.Running(); n != 0 {
		t.Errorf("%d events still running on the fake after the interrupt", n)
	}
}

// tinyPNG is a 3x2 PNG.
func tinyPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewNRGBA(image.Rect(0, 0, 3, 2))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type editPart struct {
	Name, FileName, ContentType string
	Size                        int
}

func TestGenEditsMultipart(t *testing.T) {
	t.Parallel()
	result := tinyPNG(t)
	dir := t.TempDir()
	in1, in2 := filepath.Join(dir, "cat.png"), filepath.Join(dir, "dog.jpg")
	if err := os.WriteFile(in1, tinyPNG(t), 0o600); err != nil {
		t.Fatal(err)
	}
	jpegBytes := append([]byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0}, make([]byte, 40)...)
	if err := os.WriteFile(in2, jpegBytes, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var fields map[string]string
			var parts []editPart
			var auth, path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
				if err != nil || mt != "multipart/form-data" {
					http.Error(w, "want multipart", http.StatusBadRequest)
					return
				}
				mr := multipart.NewReader(io.LimitReader(r.Body, 1<<20), params["boundary"])
				f := map[string]string{}
				var ps []editPart
				for {
					p, err := mr.NextPart()
					if err == io.EOF {
						break
					}
					if err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					data, _ := io.ReadAll(p)
					if p.FileName() != "" {
						ps = append(ps, editPart{p.FormName(), p.FileName(), p.Header.Get("Content-Type"), len(data)})
					} else {
						f[p.FormName()] = string(data)
					}
				}
				mu.Lock()
				fields, parts, auth, path = f, ps, r.Header.Get("Authorization"), r.URL.Path
				mu.Unlock()
				b64 := base64.StdEncoding.EncodeToString(result)
				if f["stream"] == "true" {
					w.Header().Set("Content-Type", "text/event-stream")
					fmt.Fprintf(w, "event: image_edit.progress\ndata: {\"type\":\"image_edit.progress\",\"stage\":\"progress\",\"step\":1,\"total\":2}\n\n")
					fmt.Fprintf(w, ": keep-alive\n\n")
					fmt.Fprintf(w, "event: image_edit.completed\ndata: {\"type\":\"image_edit.completed\",\"b64_json\":%q}\n\n", b64)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"created":1,"data":[{"b64_json":%q}]}`, b64)
			}))
			t.Cleanup(srv.Close)

			args := []string{"gen", "-k", "sk-test-key-0123456789abcdef", "--url", srv.URL, "-m", "editor", "-i", in1, "-i", in2,
				"-s", "512x512", "--seed", "9", "--progress", "plain", "-o", filepath.Join(t.TempDir(), "edit.png"), "put them on a sofa"}
			if !stream {
				args = append(args, "--no-stream")
			}
			out, errOut, err := run(t, nil, args...)
			if err != nil {
				t.Fatalf("gen -i: %v\n%s", err, errOut)
			}
			if !strings.HasPrefix(out, "saved ") {
				t.Errorf("stdout = %q", out)
			}
			mu.Lock()
			defer mu.Unlock()
			if path != "/v1/images/edits" || auth != "Bearer sk-test-key-0123456789abcdef" {
				t.Errorf("request to %q with auth %q", path, auth)
			}
			wantFields := map[string]string{"model": "editor", "prompt": "put them on a sofa", "n": "1", "size": "512x512", "seed": "9"}
			if stream {
				wantFields["stream"] = "true"
				if !strings.Contains(errOut, "step 1/2") {
					t.Errorf("no progress from the edit stream:\n%s", errOut)
				}
			}
			if diff := cmp.Diff(wantFields, fields); diff != "" {
				t.Errorf("multipart fields (-want +got):\n%s", diff)
			}
			wantParts := []editPart{
				{"image[]", "cat.png", "image/png", len(tinyPNG(t))},
				{"image[]", "dog.jpg", "image/jpeg", len(jpegBytes)},
			}
			if diff := cmp.Diff(wantParts, parts); diff != "" {
				t.Errorf("multipart files (-want +got):\n%s", diff)
			}
		})
	}

	// One image goes as plain "image".
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k := range r.MultipartForm.File {
			got = append(got, k)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data":[{"b64_json":%q}]}`, base64.StdEncoding.EncodeToString(result))
	}))
	defer srv.Close()
	if _, errOut, err := run(t, nil, "gen", "--url", srv.URL, "--no-stream", "-i", in1, "-o", t.TempDir()+"/", "x"); err != nil {
		t.Fatalf("gen -i one: %v\n%s", err, errOut)
	}
	if diff := cmp.Diff([]string{"image"}, got); diff != "" {
		t.Errorf("single image field (-want +got):\n%s", diff)
	}
}

func TestGenExitCodes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var status int
		switch {
		case bytes.Contains(body, []byte(`"model":"auth"`)):
			status = http.StatusUnauthorized
		case bytes.Contains(body, []byte(`"model":"busy"`)):
			status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", "7")
		case bytes.Contains(body, []byte(`"model":"down"`)):
			status = http.StatusServiceUnavailable
		case bytes.Contains(body, []byte(`"model":"bad"`)):
			status = http.StatusNotFound
		case bytes.Contains(body, []byte(`"model":"boom"`)):
			status = http.StatusInternalServerError
		case bytes.Contains(body, []byte(`"model":"stream-limited"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: image_generation.progress\ndata: {\"type\":\"image_generation.progress\",\"stage\":\"queued\",\"position\":2,\"queue_size\":3}\n\n")
			fmt.Fprint(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"quota\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n")
			return
		case bytes.Contains(body, []byte(`"model":"stream-upstream"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"space crashed\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream\"}}\n\n")
			return
		case bytes.Contains(body, []byte(`"model":"short"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: image_generation.progress\ndata: {\"type\":\"image_generation.progress\",\"stage\":\"started\"}\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":"refused %d","type":"x","param":null,"code":null}}`, status)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		args    []string
		code    int
		message string
	}{
		{[]string{"-m", "auth"}, ExitAuth, "refused 401"},
		{[]string{"-m", "busy"}, ExitRateLimited, "retry after 7s"},
		{[]string{"-m", "down"}, ExitUpstream, "refused 503"},
		{[]string{"-m", "bad"}, ExitBadRequest, "refused 404"},
		{[]string{"-m", "boom"}, ExitFailure, "refused 500"},
		{[]string{"-m", "stream-limited"}, ExitRateLimited, "quota"},
		{[]string{"-m", "stream-upstream"}, ExitUpstream, "space crashed"},
		{[]string{"-m", "short"}, ExitFailure, "0 of 1 images"},
		{[]string{"-s", "huge"}, ExitUsage, "--size"},
		{[]string{"-s", "0:1"}, ExitUsage, "--size"},
		{[]string{"-n", "0"}, ExitUsage, "-n"},
		{[]string{"--format", "gif"}, ExitUsage, "--format"},
		{[]string{"--progress", "fancy"}, ExitUsage, "--progress"},
		{[]string{"--nope"}, ExitUsage, "unknown flag"},
		{[]string{"-i", "/nonexistent/in.png"}, ExitFailure, "input image"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{"gen", "--url", srv.URL, "--progress", "plain", "-o", t.TempDir() + "/"}, tt.args...), "a prompt")
			_, errOut, err := run(t, nil, args...)
			if got := ExitCode(err); got != tt.code || err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("exit %d (%v), want %d with %q", got, err, tt.code, tt.message)
			}
			if len(tt.args) > 1 && tt.args[1] == "stream-limited" && !strings.Contains(errOut, "queued 2/3\n") {
				t.Errorf("stream progress = %q, want a queued 2/3 line", errOut)
			}
		})
	}
	for _, args := range [][]string{{"gen"}, {"gen", "a", "b"}, {"gen", "  "}} {
		_, _, err := run(t, nil, args...)
		if got := ExitCode(err); got != ExitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, got, err, ExitUsage)
		}
	}
}

func TestGenServerFromConfig(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data":[{"b64_json":%q}]}`, base64.StdEncoding.EncodeToString(tinyPNG(t)))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte("listen: 0.0.0.0:"+port+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"EASEL_API_KEYS": testKey + ",second-key-abcdefghijklmnop", EnvConfig: path}
	if _, errOut, err := run(t, env, "gen", "--no-stream", "-o", t.TempDir()+"/", "x"); err != nil {
		t.Fatalf("gen with config: %v\n%s", err, errOut)
	}
	mu.Lock()
	if auth != "Bearer "+testKey {
		t.Errorf("auth = %q, want the config's first key", auth)
	}
	mu.Unlock()

	// The flag and the environment win over the config.
	env[EnvAPIKey] = "env-key"
	if _, _, err := run(t, env, "gen", "--no-stream", "-o", t.TempDir()+"/", "x"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if auth != "Bearer env-key" {
		t.Errorf("auth = %q, want the environment's key", auth)
	}
	mu.Unlock()
	_, _, err := run(t, env, "gen", "--url", "ftp://example", "-o", t.TempDir()+"/", "x")
	if ExitCode(err) != ExitUsage {
		t.Errorf("bad --url: %v", err)
	}
}

func TestParseGenSize(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""}, {"auto", "auto"}, {"1024x768", "1024x768"}, {" 512X512 ", "512x512"},
		{"1:1", "1024x1024"}, {"16:9", "1344x768"}, {"9:16", "768x1344"}, {"3:2", "1280x832"},
	}
	for _, tt := range tests {
		got, err := parseGenSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseGenSize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"big", "0x10", "10x", "1:0", "-1:2", "100:1", "99999x1"} {
		if _, err := parseGenSize(bad); err == nil {
			t.Errorf("parseGenSize(%q) accepted", bad)
		}
	}
}

func TestAPIBase(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"},
		{"https://api.example.com/v1/", "https://api.example.com/v1"},
		{"https://example.com/easel", "https://example.com/easel/v1"},
	}
	for _, tt := range tests {
		if got, err := apiBase(tt.in); err != nil || got != tt.want {
			t.Errorf("apiBase(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"127.0.0.1:8080", "ftp://x", "http://", "http://x/?a=b"} {
		if _, err := apiBase(bad); err == nil {
			t.Errorf("apiBase(%q) accepted", bad)
		}
	}
	if got := dialableListen("0.0.0.0:9000"); got != "127.0.0.1:9000" {
		t.Errorf("dialableListen = %q", got)
	}
	if got := dialableListen("[::]:9000"); got != "127.0.0.1:9000" {
		t.Errorf("dialableListen(::) = %q", got)
	}
}

// FuzzReadImageStream feeds arbitrary bytes to the image stream reader and
// both progress displays: no panic, and every image handed on is decoded
// base64 from a completed event.
func FuzzReadImageStream(f *testing.F) {
	f.Add([]byte("event: image_generation.progress\ndata: {\"type\":\"image_generation.progress\",\"stage\":\"queued\",\"position\":2,\"queue_size\":3}\n\n" +
		"event: image_generation.progress\ndata: {\"type\":\"image_generation.progress\",\"stage\":\"progress\",\"step\":3,\"total\":9,\"image_index\":1}\n\n" +
		"event: image_generation.completed\ndata: {\"type\":\"image_generation.completed\",\"b64_json\":\"iVBORw0KGgo=\"}\n\n"))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"x\",\"type\":\"server_error\",\"code\":null}}\n\n"))
	f.Add([]byte(": keep-alive\r\n\r\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"type\":\"image_edit.progress\",\"stage\":\"progress\",\"progress\":0.5,\"total\":-4,\"step\":99999999999}\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, rep := range []reporter{&plainReporter{w: io.Discard, n: 2}, newBarReporter(io.Discard, 3)} {
			saved := 0
			err := readImageStream(context.Background(), bytes.NewReader(data), rep, func(img []byte) error {
				if len(img) == 0 {
					t.Fatal("an empty image was handed on")
				}
				saved++
				rep.saved("x")
				return nil
			})
			rep.close()
			if err != nil && saved > 0 && ExitCode(err) == ExitOK {
				t.Fatalf("error %v with exit code 0", err)
			}
		}
	})
}

// TestGenEditEndToEnd runs "easel gen -i" against serve with the backend
// that probe wrote for an image-edit Space: the input must reach the app,
// which answers with the input's negative at the input's size.
func TestGenEditEndToEnd(t *testing.T) {
	t.Parallel()
	fake := startFake(t, gradiotest.Options{Endpoints: gradiotest.ImageEdit(gradiotest.Behavior{Steps: 3})})
	path := writeSnippetConfig(t, probeSnippet(t, fake))
	base, logs, _ := startServe(t, nil, "--config", path, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())

	dir := t.TempDir()
	src := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for i := range src.Pix {
		src.Pix[i] = 0xff
	}
	var in bytes.Buffer
	if err := png.Encode(&in, src); err != nil {
		t.Fatal(err)
	}
	inPath := filepath.Join(dir, "white.png")
	if err := os.WriteFile(inPath, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "black.png")
	out, errOut, err := run(t, nil, "gen", "--url", base, "-m", "probed", "-i", inPath, "--progress", "plain", "-o", outPath, "make it black")
	if err != nil {
		t.Fatalf("gen -i: %v\n%s\n%s", err, errOut, logs.String())
	}
	if out != "saved "+outPath+"\n" {
		t.Errorf("stdout = %q", out)
	}
	data, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("result is %v, want the input's 64x48", b)
	}
	if r, g, b, _ := img.At(10, 10).RGBA(); r != 0 || g != 0 || b != 0 {
		t.Errorf("pixel = %d,%d,%d, want black (the inverted white input)", r>>8, g>>8, b>>8)
	}
	if ups := fake.Uploads(); len(ups) != 1 || len(ups[0].Data) == 0 {
		t.Errorf("the app received %d uploads, want the input image once", len(ups))
	}
	if !strings.Contains(errOut, "step ") {
		t.Errorf("no progress from the edit stream:\n%s", errOut)
	}
}
