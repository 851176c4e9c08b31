package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/cli"
	"github.com/easelgw/easel/internal/logbuf"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// Where the test expects its tools; CI installs both (.ci/run, scripts/test).
const (
	chromiumPath  = "/usr/bin/chromium"
	playwrightPkg = "node_modules/playwright-core/package.json"
	artifactsEnv  = "EASEL_UI_ARTIFACTS"
	studioScript  = "studio.mjs"
	brokenModelID = "demo-broken"
	// brokenMessage is what the failing fake says; easel turns upstream
	// markup into text (tags dropped, entities decoded), so the client
	// receives brokenText, markup that only text rendering keeps inert.
	brokenMessage  = `<b>CUDA out of memory</b> &lt;img src=x onerror=alert(1)&gt;`
	brokenText     = `CUDA out of memory <img src=x onerror=alert(1)>`
	inputW, inputH = 48, 32
)

// testKey satisfies easel's key rules (20+ characters, 8+ distinct); the
// script checks it never comes back in a response.
const testKey = "ui-Zq8Wv3Lm6Rt1Ks9Xn4Pb7Hc"

// Timeouts: every wait here is bounded.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 30 * time.Second
	nodeTimeout  = 5 * time.Minute
)

// requireTools fails (never skips) when the browser or the driver is
// missing, saying how to install it, so a CI without them cannot pass.
func requireTools(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is missing at %s (%v): install Debian's package with `apt-get install -y chromium` (.ci/run does)", chromiumPath, err)
	}
	if _, err := os.Stat(playwrightPkg); err != nil {
		t.Fatalf("playwright-core is not installed (%v): run `npm ci` in internal/ui/browsertest (scripts/test does)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: install Debian's nodejs package (.ci/run does): %v", err)
	}
	return node
}

// artifactsDir is where screenshots and downloads go: EASEL_UI_ARTIFACTS
// (CI sets .ci/out/ui) or a temporary folder.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(artifactsEnv)
	if dir == "" {
		return t.TempDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	return abs
}

// gradient is a w×h opaque PNG whose pixels differ, so the demo edit
// model's negative can be told from a copy.
func gradient(w, h int) ([]byte, *image.NRGBA) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 5), G: uint8(y * 7), B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes(), img
}

// brokenEndpoints is the Z-Image-Turbo layout whose generation reports two
// steps and then fails with a message holding markup, which the studio
// must show as text (reliability spec A11).
func brokenEndpoints() []gradiotest.Endpoint {
	eps := gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 2})
	for i := range eps {
		if eps[i].APIName == "generate_image" {
			eps[i].Run = func(ctx context.Context, c *gradiotest.Call) ([]any, error) {
				for k := range 2 {
					c.Progress(k, 2, "steps")
				}
				return nil, &gradiotest.AppError{Message: brokenMessage}
			}
		}
	}
	return eps
}

// syncBuffer collects a server log from concurrent writers.
type syncBuffer = logbuf.Buffer

// startServe runs `easel serve --demo` in-process with the given config
// file and returns its base URL and log.
func startServe(t *testing.T, cfgPath string) (string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	env := map[string]string{"EASEL_API_KEYS": testKey}
	addrc := make(chan net.Addr, 1)
	root := cli.NewRoot(cli.Options{
		Version:  "v0.0.0-ui",
		Getenv:   func(k string) string { return env[k] },
		Stdout:   io.Discard,
		Stderr:   logs,
		OnListen: func(a net.Addr) { addrc <- a },
	})
	root.SetArgs([]string{"serve", "--demo", "--config", cfgPath, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("easel serve exited before listening: %v\n%s", err, logs.String())
	case <-time.After(startTimeout):
		cancel()
		t.Fatalf("easel serve did not listen within %s\n%s", startTimeout, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("easel serve returned %v", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("easel serve did not stop within %s", stopTimeout)
		}
	})
	return "http://" + addr.String(), logs
}

func TestStudio(t *testing.T) {
	node := requireTools(t)
	artifacts := artifactsDir(t)
	dir := t.TempDir()

	broken := gradiotest.New(gradiotest.Options{Endpoints: brokenEndpoints(), ShowError: true})
	t.Cleanup(broken.Close)

	cfg := fmt.Sprintf(`log:
  level: warn
backends:
  - name: broken-space
    preset: z-image-turbo-mrfakename
    gradio:
      space: %s
models:
  - id: %s
    backends: [broken-space]
    description: A fake Space whose every generation fails
`, broken.URL, brokenModelID)
	cfgPath := filepath.Join(dir, "easel.yaml")
	// The second server allows a key so few requests a minute that the
	// studio's first generation runs into the limit.
	limitedPath := filepath.Join(dir, "limited.yaml")
	for path, text := range map[string]string{cfgPath: cfg, limitedPath: cfg + "limits:\n  requests_per_minute: 3\n"} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inputPNG, inputImg := gradient(inputW, inputH)
	inputPath := filepath.Join(dir, "input.png")
	if err := os.WriteFile(inputPath, inputPNG, 0o600); err != nil {
		t.Fatal(err)
	}

	base, logs := startServe(t, cfgPath)
	limited, limitedLogs := startServe(t, limitedPath)

	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, studioScript)
	cmd.Env = append(os.Environ(),
		"EASEL_UI_BASE="+base,
		"EASEL_UI_LIMITED_BASE="+limited,
		"EASEL_UI_KEY="+testKey,
		"EASEL_UI_INPUT="+inputPath,
		fmt.Sprintf("EASEL_UI_INPUT_WIDTH=%d", inputW),
		"EASEL_UI_BROKEN_MODEL="+brokenModelID,
		"EASEL_UI_BROKEN_TEXT="+brokenText,
		artifactsEnv+"="+artifacts,
	)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	t.Logf("%s output:\n%s", studioScript, out.String())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("%s did not finish within %s", studioScript, nodeTimeout)
	}
	if err != nil {
		t.Fatalf("%s failed: %v (screenshots and downloads in %s)\neasel log:\n%s", studioScript, err, artifacts, logs.String())
	}

	// What the browser downloaded through the studio's buttons.
	checkPNG(t, filepath.Join(artifacts, "generated.png"))
	edited := checkPNG(t, filepath.Join(artifacts, "edited.png"))
	checkNegative(t, edited, inputImg)
	for _, shot := range []struct {
		name  string
		width int
	}{{"studio-desktop.png", 1280}, {"studio-desktop-dark.png", 1280}, {"studio-phone.png", 390}, {"studio-phone-light.png", 390}} {
		img := checkPNG(t, filepath.Join(artifacts, shot.name))
		if img != nil && img.Bounds().Dx() != shot.width {
			t.Errorf("%s is %d px wide, want %d", shot.name, img.Bounds().Dx(), shot.width)
		}
	}
	for _, l := range []*syncBuffer{logs, limitedLogs} {
		if strings.Contains(l.String(), testKey) {
			t.Error("the API key appears in easel's log")
		}
	}
}

// checkPNG decodes a file and fails the test unless it is a whole PNG.
func checkPNG(t *testing.T, path string) image.Image {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("reading %s: %v", path, err)
		return nil
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG (starts %q)", path, data[:min(len(data), 8)])
		return nil
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Errorf("decoding %s: %v", path, err)
		return nil
	}
	return img
}

// checkNegative checks that got is src's negative at src's size: the demo
// edit model's answer, proving the studio uploaded the right image.
func checkNegative(t *testing.T, got image.Image, src *image.NRGBA) {
	t.Helper()
	if got == nil {
		return
	}
	b := src.Bounds()
	if got.Bounds().Dx() != b.Dx() || got.Bounds().Dy() != b.Dy() {
		t.Fatalf("edited image is %dx%d, want the input's %dx%d", got.Bounds().Dx(), got.Bounds().Dy(), b.Dx(), b.Dy())
	}
	for _, p := range []image.Point{{0, 0}, {b.Dx() - 1, b.Dy() - 1}, {b.Dx() / 2, b.Dy() / 3}} {
		r, g, bl, _ := got.At(p.X, p.Y).RGBA()
		s := src.NRGBAAt(p.X, p.Y)
		if uint8(r>>8) != 255-s.R || uint8(g>>8) != 255-s.G || uint8(bl>>8) != 255-s.B {
			t.Errorf("edited pixel %v = %d,%d,%d; want the negative of %d,%d,%d", p, r>>8, g>>8, bl>>8, s.R, s.G, s.B)
		}
	}
}
