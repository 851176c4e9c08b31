// Command uploads measures the peak memory of a real easel process while
// concurrent clients upload large images to /v1/images/edits.
//
// It builds ./cmd/easel, starts a fake Gradio app (the Qwen-Image-Edit-like
// layout, which answers with the input inverted) in this process, starts
// easel against it with a preset-less gradio backend, sends -clients
// concurrent multipart edits of one noise PNG of about -mb megabytes
// (stored uncompressed, so its size is its pixel count times four), and
// prints the easel process's peak resident set (VmHWM) from /proc. All
// traffic stays on 127.0.0.1 and the whole run is bounded by -timeout.
//
// Run from the repository root:
//
//	go run ./bench/uploads
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

const apiKey = "bench-Kq7Vx2Lm9Rt4Zs8Wn3Yb"

func main() {
	clients := flag.Int("clients", 20, "concurrent uploads")
	side := flag.Int("side", 2280, "side of the square RGBA noise PNG (2280 gives about 20.8 MB, under the 20 MiB cap)")
	concurrency := flag.Int("concurrency", 4, "easel's concurrency for the edit backend")
	timeout := flag.Duration("timeout", 55*time.Second, "bound of the whole run")
	n := flag.String("n", "1", `the n field; "11" makes easel refuse each request after reading the whole upload, which measures the upload path alone`)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *clients, *side, *concurrency, *n); err != nil {
		fmt.Fprintln(os.Stderr, "uploads:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, clients, side, concurrency int, n string) error {
	dir, err := os.MkdirTemp("", "easel-bench-uploads-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "easel")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/easel")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building easel: %w", err)
	}

	fake := gradiotest.New(gradiotest.Options{Endpoints: gradiotest.ImageEdit(gradiotest.Behavior{Steps: 1})})
	defer fake.Close()

	port, err := freePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
log:
  level: warn
images:
  job_timeout: 50s
backends:
  - name: fake-edit
    type: gradio
    concurrency: %d
    gradio:
      space: %s
      api_name: /infer
      token_env: ""
      inputs:
        - {from: image}
        - {from: prompt}
        - {from: seed, default: 0}
        - {from: randomize_seed}
        - {value: 4}
        - {from: steps, default: 1}
models:
  - id: edit
    backends: [fake-edit]
`, port, filepath.Join(dir, "data"), concurrency, fake.URL)
	cfgPath := filepath.Join(dir, "easel.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "EASEL_API_KEYS="+apiKey)
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting easel: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitHealthy(ctx, base); err != nil {
		return err
	}
	idle, _ := memory(cmd.Process.Pid)

	img, err := noisePNG(side)
	if err != nil {
		return err
	}
	fmt.Printf("upload: %dx%d RGBA noise PNG, %d bytes; %d clients; backend concurrency %d\n", side, side, len(img), clients, concurrency)

	start := time.Now()
	var wg sync.WaitGroup
	results := make([]string, clients)
	for i := range clients {
		wg.Go(func() { results[i] = upload(ctx, base, img, n) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak, err := memory(cmd.Process.Pid)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[r]++
	}
	fmt.Printf("results: %v in %s\n", counts, elapsed.Round(time.Millisecond))
	fmt.Printf("easel memory: idle VmHWM %s; after the run VmHWM %s, VmRSS %s\n", idle["VmHWM"], peak["VmHWM"], peak["VmRSS"])
	return nil
}

// upload sends one edit and returns "200" or the failure. The body has a
// Content-Length, as the SDKs send it, and is streamed from the one shared
// image so the bench itself holds a single copy.
func upload(ctx context.Context, base string, img []byte, n string) string {
	var head, tail bytes.Buffer
	mw := multipart.NewWriter(&head)
	_ = mw.WriteField("model", "edit")
	_ = mw.WriteField("prompt", "invert it")
	_ = mw.WriteField("response_format", "url")
	if _, err := mw.CreateFormFile("image", "anonymous_file"); err != nil {
		return err.Error()
	}
	// The rest goes to tail: n after the file, so a refusal of n comes
	// only once the whole upload has been read.
	tw := multipart.NewWriter(&tail)
	if err := tw.SetBoundary(mw.Boundary()); err != nil {
		return err.Error()
	}
	_ = tw.WriteField("n", n)
	if err := tw.Close(); err != nil {
		return err.Error()
	}
	// The tail writer starts with "--boundary"; a file part needs "\r\n"
	// before it.
	tailBytes := append([]byte("\r\n"), tail.Bytes()...)
	body := io.MultiReader(bytes.NewReader(head.Bytes()), bytes.NewReader(img), bytes.NewReader(tailBytes))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/images/edits", body)
	if err != nil {
		return err.Error()
	}
	req.ContentLength = int64(head.Len() + len(img) + len(tailBytes))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return "200"
}

// noisePNG is an uncompressed PNG of random pixels: its size is about
// side*side*4 bytes whatever the encoder.
func noisePNG(side int) ([]byte, error) {
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitHealthy(ctx context.Context, base string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("easel did not become healthy in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// memory reads the Vm* lines of a process's /proc status.
func memory(pid int) (map[string]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.HasPrefix(k, "Vm") {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}
