package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/logbuf"
)

// syncBuffer collects a server log from concurrent writers.
type syncBuffer = logbuf.Buffer

const testKey = "k3y-7Qp2Xv9Lm4Rt8Zs1Wn6Yb"

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// run executes the command tree with args and returns stdout, stderr and
// the error.
func run(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut syncBuffer
	root := NewRoot(Options{Version: "v9.9.9", Getenv: envMap(env), Stdout: &out, Stderr: &errOut})
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"easel v9.9.9\n", "go: " + runtime.Version() + "\n", "platform: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, nil, "--version")
	if err != nil || out != "easel v9.9.9\n" {
		t.Errorf("--version = %q, %v", out, err)
	}
	if got := resolveVersion("v1.0.0"); got != "v1.0.0" {
		t.Errorf("resolveVersion(v1.0.0) = %q", got)
	}
	if got := resolveVersion(""); got == "" {
		t.Error("resolveVersion(\"\") is empty")
	}
}

func TestConfigCommand(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, map[string]string{"EASEL_API_KEYS": testKey, "HF_TOKEN": "hf_canary_token_value"}, "config")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"id: z-image-turbo", "- dall-e-3", "space: mrfakename/Z-Image-Turbo", "1 API key(s) set"} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q", want)
		}
	}
	for _, secret := range []string{testKey, "hf_canary_token_value"} {
		if strings.Contains(out, secret) {
			t.Errorf("config output shows secret %q", secret)
		}
	}

	// The file comes from EASEL_CONFIG when --config is absent, and every
	// problem is reported.
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("images: {max_n: 0, default_response_format: gif}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, map[string]string{"EASEL_CONFIG": path}, "config")
	if err == nil || !strings.Contains(err.Error(), "images.max_n") || !strings.Contains(err.Error(), "images.default_response_format") {
		t.Errorf("config with bad file = %v", err)
	}
}

func TestServeRefusesOpenPortWithoutKeys(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		var listened bool
		root := NewRoot(Options{
			Getenv:   envMap(nil),
			Stdout:   io.Discard,
			Stderr:   io.Discard,
			OnListen: func(net.Addr) { listened = true },
		})
		root.SetArgs([]string{"serve", "--listen", listen, "--data-dir", t.TempDir()})
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), "EASEL_API_KEYS") {
			t.Errorf("serve --listen %s without keys = %v, want a refusal naming EASEL_API_KEYS", listen, err)
		}
		if listened {
			t.Errorf("serve --listen %s opened a port", listen)
		}
	}
}

// startServe runs `easel serve args...` in-process and returns its base URL,
// its log and a stop function that waits for a clean exit.
func startServe(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer, func()) {
	t.Helper()
	var logs syncBuffer
	addrc := make(chan net.Addr, 1)
	root := NewRoot(Options{
		Version:  "v9.9.9",
		Getenv:   envMap(env),
		Stdout:   io.Discard,
		Stderr:   &logs,
		OnListen: func(a net.Addr) { addrc <- a },
	})
	root.SetArgs(append([]string{"serve"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		cancel()
		t.Fatalf("serve exited before listening: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("serve did not listen within 20s\n%s", logs.String())
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of cancellation")
		}
	}
	t.Cleanup(stop)
	return base, &logs, stop
}

func getJSON(t *testing.T, method, url, key string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decoding %s %s: %v\n%s", method, url, err, data)
		}
	}
	return resp.StatusCode
}

type modelList struct {
	Object string `json:"object"`
	Data   []struct {
		ID     string `json:"id"`
		Object string `json:"object"`
	} `json:"data"`
}

func TestServeDemoSmoke(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	base, logs, stop := startServe(t, nil, "--demo", "--listen", "127.0.0.1:0", "--data-dir", dataDir)

	var models modelList
	if code := getJSON(t, http.MethodGet, base+"/v1/models", "", nil, &models); code != http.StatusOK {
		t.Fatalf("GET /v1/models = %d", code)
	}
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
	}
	if models.Object != "list" || len(ids) < 3 || ids[0] != "demo-z-image-turbo" || ids[1] != "demo-image-edit" || ids[2] != "z-image-turbo" {
		t.Errorf("models = %v, want demo-z-image-turbo first, then demo-image-edit, then z-image-turbo", ids)
	}

	// A generation on the demo model runs entirely in-process.
	var gen struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	code := getJSON(t, http.MethodPost, base+"/v1/images/generations", "", map[string]any{
		"model": "demo-z-image-turbo", "prompt": "a red fox in snow", "size": "768x512",
	}, &gen)
	if code != http.StatusOK || len(gen.Data) != 1 {
		t.Fatalf("generation = %d, %d images\n%s", code, len(gen.Data), logs.String())
	}
	raw, err := base64.StdEncoding.DecodeString(gen.Data[0].B64JSON)
	if err != nil {
		t.Fatalf("b64_json: %v", err)
	}
	// The fake draws width x height from the Space's (height, width)
	// inputs, so this also checks the preset's input order.
	if pc, err := png.DecodeConfig(bytes.NewReader(raw)); err != nil {
		t.Errorf("result is not a PNG: %v", err)
	} else if pc.Width != 768 || pc.Height != 512 {
		t.Errorf("result is %dx%d, want 768x512", pc.Width, pc.Height)
	}

	if !strings.Contains(logs.String(), "auth disabled: no API keys configured; listening on loopback only") {
		t.Errorf("no auth warning logged:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "signing.key")); err != nil {
		t.Errorf("signing key not created: %v", err)
	}
	stop()
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no clean stop logged:\n%s", logs.String())
	}
}

func TestServeWithKeys(t *testing.T) {
	t.Parallel()
	env := map[string]string{"EASEL_API_KEYS": testKey, "EASEL_LOG_FORMAT": "json"}
	base, logs, _ := startServe(t, env, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	if code := getJSON(t, http.MethodGet, base+"/v1/models", "", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/models without a key = %d, want 401", code)
	}
	var models modelList
	if code := getJSON(t, http.MethodGet, base+"/v1/models", testKey, nil, &models); code != http.StatusOK {
		t.Fatalf("GET /v1/models with the key = %d", code)
	}
	if len(models.Data) != 1 || models.Data[0].ID != "z-image-turbo" {
		t.Errorf("models = %+v", models.Data)
	}
	if code := getJSON(t, http.MethodGet, base+"/healthz", "", nil, nil); code != http.StatusOK {
		t.Errorf("GET /healthz without a key = %d, want 200", code)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Error("the API key appears in the log")
	}
	if !strings.Contains(logs.String(), `"msg":"easel listening"`) {
		t.Errorf("json log lacks the listen line:\n%s", logs.String())
	}
}

func TestServeBadConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "easel.yaml")
	if err := os.WriteFile(path, []byte("listn: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, nil, "serve", "--config", path)
	if err == nil || !strings.Contains(err.Error(), `line 1: unknown key "listn"`) {
		t.Errorf("serve with unknown key = %v", err)
	}
	var pe *os.PathError
	_, _, err = run(t, nil, "serve", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.As(err, &pe) {
		t.Errorf("serve with missing file = %v, want a path error", err)
	}
}

// TestServeLocksDataDir: a second serve on a data directory in use is
// refused at once (it would requeue the first one's running jobs), and the
// directory is free again once the first stops.
func TestServeLocksDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"EASEL_DATA_DIR": dir, "EASEL_LISTEN": "127.0.0.1:0"}
	_, _, stop := startServe(t, env, "--demo")
	second := func() error {
		var logs syncBuffer
		root := NewRoot(Options{Version: "v9.9.9", Getenv: envMap(env), Stdout: io.Discard, Stderr: &logs})
		root.SetArgs([]string{"serve", "--demo"})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return root.ExecuteContext(ctx)
	}
	err := second()
	if err == nil || !strings.Contains(err.Error(), "another easel serve is using the data directory") {
		t.Fatalf("second serve on the same data directory: %v", err)
	}
	stop()
	_, _, stop2 := startServe(t, env, "--demo")
	stop2()
}
