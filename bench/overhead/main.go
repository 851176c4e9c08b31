// Command overhead measures the latency easel adds on top of a Gradio
// backend. It starts the faithful Gradio fake on loopback in a process of
// its own, starts a real easel binary wired to it, and drives the same
// image requests at several concurrency levels two ways:
//
//   - direct: this process calls the fake with easel's own Gradio client
//     (join, stream, download). One process boundary each way: bench to
//     fake.
//   - easel: this process calls easel's OpenAI endpoint
//     (POST /v1/images/generations, response_format as -format), and easel
//     runs the same Gradio client against the fake and stores the result.
//     Two boundaries each way: bench to easel, easel to fake.
//
// So the added latency is easel's own work (HTTP serving, JSON, job
// bookkeeping, storing the image: see -data-dir and -fsync) plus the one
// extra loopback hop through a separate process. Both the fake and easel
// run with GOMAXPROCS=2; the fake is this same binary re-executed with
// EASEL_BENCH_ROLE=fake, so its code and Go runtime match the direct
// client's.
//
// It prints p50, p99 and requests per second for both paths, the added
// latency, easel's CPU time and context switches per request (from /proc,
// warmup included), and the peak RSS of easel and of the fake.
//
// Everything runs on 127.0.0.1 and every loop is bounded by -duration.
//
//	go run ./bench/overhead -levels 1,50,500 -duration 10s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// roleEnv selects what a run of this binary does; roleFake makes it serve
// only the Gradio fake, for the parent benchmark to measure against.
const (
	roleEnv  = "EASEL_BENCH_ROLE"
	roleFake = "fake"
)

// fakeMaxLife bounds a fake process whose parent vanished without closing
// its stdin.
const fakeMaxLife = 30 * time.Minute

func main() {
	if os.Getenv(roleEnv) == roleFake {
		if err := serveFake(); err != nil {
			fmt.Fprintln(os.Stderr, "overhead fake:", err)
			os.Exit(1)
		}
		return
	}
	levels := flag.String("levels", "1,50,500", "comma-separated client concurrency levels")
	duration := flag.Duration("duration", 10*time.Second, "measuring time per level and path")
	warmup := flag.Duration("warmup", time.Second, "unmeasured time before each run")
	size := flag.Int("size", 512, "square image side asked of the backend")
	format := flag.String("format", "url", "response_format through easel: url or b64_json")
	bin := flag.String("easel", "", "path to an easel binary (default: build ./cmd/easel)")
	dataDir := flag.String("data-dir", "", "easel's data directory (default: a temporary directory; put it on the disk you will deploy on)")
	fsync := flag.Bool("fsync", true, "easel's storage.fsync: make each stored image durable before answering")
	flag.Parse()

	if err := run(*levels, *duration, *warmup, *size, *format, *bin, *dataDir, *fsync); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

// fakeOptions is the fake's setup, one Gradio app with the z-image-turbo
// endpoints answering in one step and no request log to grow.
func fakeOptions() gradiotest.Options {
	return gradiotest.Options{
		Endpoints:   gradiotest.ZImageTurbo(gradiotest.Behavior{Steps: 1}),
		Concurrency: 10000,
		NoRecord:    true,
	}
}

// serveFake is the whole of a fake process: it prints the fake's URL as
// one line on stdout, then serves until stdin closes (the parent ended or
// is done), a SIGTERM or interrupt arrives, or fakeMaxLife passes.
func serveFake() error {
	fake, err := gradiotest.Start("127.0.0.1:0", fakeOptions())
	if err != nil {
		return fmt.Errorf("starting the Gradio fake: %w", err)
	}
	defer fake.Close()
	if _, err := fmt.Println(fake.URL); err != nil {
		return fmt.Errorf("announcing the fake's URL: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	timer := time.NewTimer(fakeMaxLife)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-stdinClosed:
	case <-timer.C:
	}
	return nil
}

// fakeProc is a running fake process.
type fakeProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	url   string
}

// startFake re-executes this binary as a fake and reads the URL it
// announces.
func startFake() (*fakeProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleFake, "GOMAXPROCS=2")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the fake process: %w", err)
	}
	p := &fakeProc{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(stdout, 4096)).ReadString('\n')
		line <- strings.TrimSpace(s)
		// Keep draining so a stray write cannot block the fake.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-line:
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			p.stop()
			return nil, fmt.Errorf("the fake process announced %q, not a loopback URL", u)
		}
		p.url = u
		return p, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("the fake process did not announce its URL in time")
	}
}

// stop closes the fake's stdin, which ends it, and kills it if it lingers.
func (p *fakeProc) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func run(levelList string, duration, warmup time.Duration, side int, format, bin, dataDir string, fsync bool) error {
	var levels []int
	for _, f := range strings.Split(levelList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 || c > 5000 {
			return fmt.Errorf("bad concurrency level %q", f)
		}
		levels = append(levels, c)
	}
	tmp, err := os.MkdirTemp("", "easel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if bin == "" {
		bin = filepath.Join(tmp, "easel")
		build := exec.Command("go", "build", "-o", bin, "./cmd/easel")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building easel: %w", err)
		}
	}

	fake, err := startFake()
	if err != nil {
		return err
	}
	defer fake.stop()

	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if dataDir == "" {
		dataDir = filepath.Join(tmp, "data")
	}
	cfgPath := filepath.Join(tmp, "easel.yaml")
	cfg := fmt.Sprintf(`listen: %q
data_dir: %q
log:
  level: error
storage:
  fsync: %t
backends:
  - name: bench
    type: gradio
    preset: z-image-turbo-mrfakename
    concurrency: 1000
    max_queue: 100000
    gradio:
      space: %q
models:
  - id: bench
    backends: [bench]
`, addr, dataDir, fsync, fake.url)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// The empty EASEL_STORAGE_FSYNC keeps an inherited value from
	// overriding -fsync.
	cmd.Env = append(os.Environ(), "EASEL_API_KEYS=", "EASEL_STORAGE_FSYNC=", "GOMAXPROCS=2")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting easel: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        20000,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     time.Minute,
	}}
	if err := waitHealthy(client, base+"/healthz", 30*time.Second); err != nil {
		return err
	}

	direct, err := gradio.New("direct", gradio.Config{
		Space:   fake.url,
		APIName: "/generate_image",
		Inputs: []gradio.Input{
			{From: "prompt"}, {From: "height"}, {From: "width"},
			{From: "steps", Default: 9}, {From: "seed", Default: 42}, {From: "randomize_seed"},
		},
		Output: gradio.Output{Index: ptr(0), Kind: "image", SeedIndex: ptr(1)},
	}, gradio.Options{HTTPClient: client, UserAgent: "easel-bench"})
	if err != nil {
		return fmt.Errorf("direct client: %w", err)
	}

	directCall := func(ctx context.Context) error {
		seed := rand.Int64N(1 << 40)
		_, err := direct.Generate(ctx, &provider.Request{
			Kind: provider.KindGenerate, Prompt: "a lighthouse at dusk", N: 1,
			Width: side, Height: side, Seed: &seed,
		}, func(provider.Event) {})
		return err
	}
	easelCall := func(ctx context.Context) error {
		seed := rand.Int64N(1 << 40)
		body, _ := json.Marshal(map[string]any{
			"model": "bench", "prompt": "a lighthouse at dusk",
			"size": fmt.Sprintf("%dx%d", side, side), "seed": seed, "response_format": format,
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/images/generations", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 300)]))
		}
		return nil
	}

	fmt.Printf("easel overhead benchmark: %dx%d PNG, response_format=%s, %s per run, fsync=%t, GOMAXPROCS=2 for easel and the fake (separate processes), %d CPUs\n\n",
		side, side, format, duration, fsync, numCPU())
	fmt.Println("| clients | direct p50 | easel p50 | added p50 | ratio p50 | direct p99 | easel p99 | direct req/s | easel req/s | easel CPU/req | easel switches/req | errors (d/e) |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range levels {
		d := load(c, warmup, duration, directCall)
		cpu0, cpuErr := cpuTime(cmd.Process.Pid)
		cs0, csErr := contextSwitches(cmd.Process.Pid)
		e := load(c, warmup, duration, easelCall)
		cpu1, cpuErr1 := cpuTime(cmd.Process.Pid)
		cs1, csErr1 := contextSwitches(cmd.Process.Pid)
		cpuPerReq, csPerReq := "n/a", "n/a"
		if n := e.calls; cpuErr == nil && cpuErr1 == nil && n > 0 {
			cpuPerReq = ms((cpu1 - cpu0) / time.Duration(n))
		}
		if n := e.calls; csErr == nil && csErr1 == nil && n > 0 {
			csPerReq = fmt.Sprintf("%.1f", float64(cs1-cs0)/float64(n))
		}
		fmt.Printf("| %d | %s | %s | %s | %.2f× | %s | %s | %.0f | %.0f | %s | %s | %d/%d |\n",
			c, ms(d.p(50)), ms(e.p(50)), ms(e.p(50)-d.p(50)), float64(e.p(50))/float64(d.p(50)),
			ms(d.p(99)), ms(e.p(99)), d.rps, e.rps, cpuPerReq, csPerReq, d.errors, e.errors)
		if e.firstErr != nil {
			fmt.Fprintln(os.Stderr, "first easel error:", e.firstErr)
		}
		if d.firstErr != nil {
			fmt.Fprintln(os.Stderr, "first direct error:", d.firstErr)
		}
	}
	peak, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("\neasel peak RSS: %.1f MiB\n", float64(peak)/(1<<20))
	if fp, err := peakRSS(fake.cmd.Process.Pid); err == nil {
		fmt.Printf("fake peak RSS: %.1f MiB\n", float64(fp)/(1<<20))
	}
	return nil
}

type stats struct {
	// calls counts every call made, warmup included, to share out the
	// process CPU time measured around the whole run.
	calls    int
	lat      []time.Duration
	rps      float64
	errors   int
	firstErr error
}

func (s stats) p(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(float64(len(s.lat)-1) * q / 100)
	return s.lat[i]
}

// load runs c closed-loop workers for warmup+d and records the latencies of
// the calls that started after the warmup.
func load(c int, warmup, d time.Duration, call func(context.Context) error) stats {
	ctx, cancel := context.WithTimeout(context.Background(), warmup+d+2*time.Minute)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(warmup)
	stopAt := measureFrom.Add(d)
	var (
		mu  sync.Mutex
		out stats
		wg  sync.WaitGroup
	)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			var errs, calls int
			var first error
			for {
				t0 := time.Now()
				if !t0.Before(stopAt) {
					break
				}
				err := call(ctx)
				el := time.Since(t0)
				calls++
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				local = append(local, el)
			}
			mu.Lock()
			out.lat = append(out.lat, local...)
			out.errors += errs
			out.calls += calls
			if out.firstErr == nil {
				out.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(out.lat)
	out.rps = float64(len(out.lat)) / d.Seconds()
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func ptr[T any](v T) *T { return &v }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitHealthy(c *http.Client, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("easel did not become healthy in time")
}

// cpuTime reads the user plus system CPU time the process has used so far
// from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 10 ms on
// Linux).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields are counted
	// after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// contextSwitches sums the voluntary and involuntary context switches of
// every thread of the process: each is a sleep or a preemption, the cost a
// request pays for every hand-off between goroutines and threads.
func contextSwitches(pid int) (int64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended in between
		}
		for _, line := range strings.Split(string(b), "\n") {
			if name, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(name, "ctxt_switches") {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("reading %s: %w", name, err)
				}
				sum += n
			}
		}
	}
	return sum, nil
}

// peakRSS reads the kernel's high-water mark of the process's resident set.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("VmHWM not found")
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
