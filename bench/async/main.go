// Command async measures easel's durable async jobs on the embedded
// SQLite queue. It runs the job-API fake in this process and a real easel
// binary as a child process wired to it, and reports two figures:
//
//   - pickup latency: from this client receiving the 202 of an async edit
//     to the fake receiving the upstream submit of that job, matched by
//     the job's unique prompt. A thin front handler on loopback stamps
//     each submit on arrival, before its body is read, and passes it on
//     to the fake; jobs are sent at a steady -pickup-rate, so the
//     figure is the queue's own hand-off, not a wait for a backend slot
//     (the backend's concurrency, -concurrency, exceeds the jobs in
//     flight).
//   - sustained throughput: -submitters clients, each submitting an async
//     edit and waiting for it to end (reading its event stream, or
//     polling GET /v1/images/jobs/{id} every -poll with -wait poll), then
//     the next, for -duration after -warmup, against a fake that finishes
//     jobs at once. Jobs that reach succeeded inside the window count.
//
// Each phase runs its own easel on a fresh data directory (under
// -data-dir when given). Everything runs on 127.0.0.1 and every wait is
// bounded.
//
// Run it from the module root:
//
//	go run ./bench/async -pickup-jobs 200 -pickup-rate 20 -submitters 32 -duration 20s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// apiKey is the benchmark's own key for the child easel.
const apiKey = "bench-async-Tq4Wz8Kd2Nm6Rv"

const model = "bench-i2i"

type options struct {
	bin, dataDir       string
	fsync              bool
	concurrency        int
	pickupJobs         int
	pickupRate         float64
	pickupDelay        time.Duration
	submitters         int
	duration, warmup   time.Duration
	wait               string
	poll               time.Duration
	pickupOnly, tpOnly bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "easel", "", "path to an easel binary (default: build ./cmd/easel)")
	flag.StringVar(&o.dataDir, "data-dir", "", "parent of easel's data directories (default: a temporary directory; put it on the disk you will deploy on)")
	flag.BoolVar(&o.fsync, "fsync", true, "easel's storage.fsync")
	flag.IntVar(&o.concurrency, "concurrency", 64, "the backend's concurrency in easel")
	flag.IntVar(&o.pickupJobs, "pickup-jobs", 200, "jobs measured for the pickup latency")
	flag.Float64Var(&o.pickupRate, "pickup-rate", 20, "submissions per second while measuring pickup")
	flag.DurationVar(&o.pickupDelay, "pickup-job-duration", 200*time.Millisecond, "how long the fake takes per job while measuring pickup")
	flag.IntVar(&o.submitters, "submitters", 32, "closed-loop clients in the throughput phase")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of the throughput phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before it")
	flag.StringVar(&o.wait, "wait", "events", "how a throughput client waits for its job: events or poll")
	flag.DurationVar(&o.poll, "poll", 20*time.Millisecond, "GET interval with -wait poll")
	flag.BoolVar(&o.pickupOnly, "pickup-only", false, "run only the pickup phase")
	flag.BoolVar(&o.tpOnly, "throughput-only", false, "run only the throughput phase")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "async:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	switch {
	case o.pickupJobs < 1 || o.pickupRate <= 0 || o.submitters < 1 || o.concurrency < 1:
		return errors.New("-pickup-jobs, -pickup-rate, -submitters and -concurrency must be positive")
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	case o.wait != "events" && o.wait != "poll":
		return fmt.Errorf("-wait %q: want events or poll", o.wait)
	}
	tmp, err := os.MkdirTemp("", "easel-bench-async-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.dataDir == "" {
		o.dataDir = tmp
	}
	if o.bin == "" {
		o.bin = filepath.Join(tmp, "easel")
		build := exec.Command("go", "build", "-o", o.bin, "./cmd/easel")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building easel: %w", err)
		}
	}
	input := inputPNG()
	fmt.Printf("easel async benchmark: SQLite queue, fsync=%t, backend concurrency %d, %d CPUs\n\n", o.fsync, o.concurrency, numCPU())
	fmt.Println("| measure | p50 | p90 | p99 | max | n | notes |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---|")
	if !o.tpOnly {
		if err := pickupPhase(o, tmp, input); err != nil {
			return fmt.Errorf("pickup phase: %w", err)
		}
	}
	if !o.pickupOnly {
		if err := throughputPhase(o, tmp, input); err != nil {
			return fmt.Errorf("throughput phase: %w", err)
		}
	}
	return nil
}

// pickupPhase submits jobs at a steady low rate and times each from its
// 202 to its upstream submit.
func pickupPhase(o options, tmp string, input []byte) error {
	fake := jobapitest.New(jobapitest.Options{JobDuration: o.pickupDelay})
	defer fake.Close()
	st, err := newStamper(fake.URL)
	if err != nil {
		return err
	}
	defer st.close()
	e, err := startEasel(o, tmp, "pickup", st.url+jobapitest.SubmitPath, fake.PollURLTemplate())
	if err != nil {
		return err
	}
	defer e.stop()
	client := newClient()
	run := fmt.Sprintf("%x", time.Now().UnixNano())

	type sent struct {
		prompt   string
		accepted time.Time
		rtt      time.Duration
	}
	var (
		mu    sync.Mutex
		sents []sent
		errs  []error
		wg    sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / o.pickupRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(float64(o.pickupJobs)/o.pickupRate*float64(time.Second))+2*time.Minute)
	defer cancel()
	for i := range o.pickupJobs {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			prompt := fmt.Sprintf("pickup %s %d", run, i)
			t0 := time.Now()
			_, err := submit(ctx, client, e.base, prompt, input)
			t1 := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			sents = append(sents, sent{prompt: prompt, accepted: t1, rtt: t1.Sub(t0)})
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d submissions failed; first: %w", len(errs), o.pickupJobs, errs[0])
	}
	// Every accepted job must reach the upstream; wait for the last ones.
	deadline := time.Now().Add(time.Minute)
	var pickups, rtts []time.Duration
	for {
		pickups, rtts = pickups[:0], rtts[:0]
		missing := 0
		for _, s := range sents {
			at, ok := st.arrival(s.prompt)
			if !ok {
				missing++
				continue
			}
			pickups = append(pickups, at.Sub(s.accepted))
			rtts = append(rtts, s.rtt)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d accepted jobs never reached the upstream", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(pickups)
	slices.Sort(rtts)
	note := fmt.Sprintf("%g jobs/s, %s jobs at the fake, backend concurrency %d (no slot wait)", o.pickupRate, o.pickupDelay, o.concurrency)
	if pickups[0] < 0 {
		note += fmt.Sprintf("; %d submits arrived before the client had read its 202 (min %s)", countNegative(pickups), ms(pickups[0]))
	}
	printRow("pickup: 202 received → upstream submit", pickups, note)
	printRow("accept: POST sent → 202 received", rtts, "async edit, 1 small PNG")
	return nil
}

// throughputPhase runs closed-loop clients against an instant fake and
// counts the jobs that succeed inside the measured window.
func throughputPhase(o options, tmp string, input []byte) error {
	fake := jobapitest.New(jobapitest.Options{JobDuration: time.Nanosecond})
	defer fake.Close()
	e, err := startEasel(o, tmp, "throughput", fake.SubmitURL(), fake.PollURLTemplate())
	if err != nil {
		return err
	}
	defer e.stop()
	client := newClient()
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), o.warmup+o.duration+2*time.Minute)
	defer cancel()
	start := time.Now()
	from, until := start.Add(o.warmup), start.Add(o.warmup+o.duration)

	var (
		mu       sync.Mutex
		lat      []time.Duration
		failed   int
		firstErr error
		accepted atomic.Int64
		wg       sync.WaitGroup
	)
	for c := range o.submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if !time.Now().Before(until) {
					return
				}
				prompt := fmt.Sprintf("tp %s %d %d", run, c, i)
				j, err := submit(ctx, client, e.base, prompt, input)
				var t1 time.Time
				var status string
				if err == nil {
					accepted.Add(1)
					t0 := time.Now()
					if o.wait == "events" {
						status, err = waitEvents(ctx, client, e.base, j.ID)
					} else {
						status, err = waitPoll(ctx, client, e.base, j.ID, o.poll)
					}
					t1 = time.Now()
					mu.Lock()
					if err == nil && status == "succeeded" && !t1.Before(from) && t1.Before(until) {
						lat = append(lat, t1.Sub(t0))
					}
					mu.Unlock()
				}
				if err == nil && status != "succeeded" {
					err = fmt.Errorf("job %s ended %s", j.ID, status)
				}
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	rate := float64(len(lat)) / o.duration.Seconds()
	printRow("async job: 202 → succeeded seen", lat,
		fmt.Sprintf("**%.1f jobs/s** succeeded over %s; %d submitters (-wait %s), instant fake; %d accepted in all, %d errors", rate, o.duration, o.submitters, o.wait, accepted.Load(), failed))
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "first error:", firstErr)
	}
	return nil
}

func countNegative(ds []time.Duration) int {
	n := 0
	for _, d := range ds {
		if d < 0 {
			n++
		}
	}
	return n
}

func printRow(what string, ds []time.Duration, note string) {
	if len(ds) == 0 {
		fmt.Printf("| %s | – | – | – | – | 0 | %s |\n", what, note)
		return
	}
	p := func(q float64) time.Duration { return ds[int(float64(len(ds)-1)*q/100)] }
	fmt.Printf("| %s | %s | %s | %s | %s | %d | %s |\n", what, ms(p(50)), ms(p(90)), ms(p(99)), ms(ds[len(ds)-1]), len(ds), note)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// job is the part of the job object the benchmark reads.
type job struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// submit sends one async edit and returns the accepted job.
func submit(ctx context.Context, c *http.Client, base, prompt string, img []byte) (*job, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("model", model)
	_ = mw.WriteField("prompt", prompt)
	_ = mw.WriteField("async", "true")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="in.png"`)
	h.Set("Content-Type", "image/png")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	_, _ = pw.Write(img)
	if err := mw.Close(); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/images/edits", &buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the 202: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 300)]))
	}
	var j job
	if err := json.Unmarshal(data, &j); err != nil || j.ID == "" {
		return nil, fmt.Errorf("202 body %q: %v", data[:min(len(data), 300)], err)
	}
	return &j, nil
}

// waitPoll polls the job until it is terminal.
func waitPoll(ctx context.Context, c *http.Client, base, id string, every time.Duration) (string, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/images/jobs/"+id, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET job %s: status %d", id, resp.StatusCode)
		}
		var j job
		if err := json.Unmarshal(data, &j); err != nil {
			return "", err
		}
		switch j.Status {
		case "succeeded", "failed", "canceled":
			return j.Status, nil
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// waitEvents reads the job's event stream to its terminal event.
func waitEvents(ctx context.Context, c *http.Client, base, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/images/jobs/"+id+"/events", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("events of %s: status %d", id, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		ev, ok := strings.CutPrefix(sc.Text(), "event:")
		if !ok {
			continue
		}
		switch ev = strings.TrimSpace(ev); ev {
		case "succeeded", "failed", "canceled":
			return ev, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("events of %s: %w", id, err)
	}
	return "", fmt.Errorf("events of %s ended without a terminal event", id)
}

// stamper is a loopback front for the fake's submit route that notes when
// each submit arrives, by its prompt, before passing it on.
type stamper struct {
	url string
	srv *http.Server

	mu sync.Mutex
	at map[string]time.Time
}

func newStamper(fakeURL string) (*stamper, error) {
	target, err := url.Parse(fakeURL)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &stamper{url: "http://" + ln.Addr().String(), at: map[string]time.Time{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	s.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived := time.Now()
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			if p := promptOf(r.Header.Get("Content-Type"), body); p != "" {
				s.mu.Lock()
				if _, seen := s.at[p]; !seen {
					s.at[p] = arrived
				}
				s.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			proxy.ServeHTTP(w, r)
		}),
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *stamper) arrival(prompt string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[prompt]
	return t, ok
}

func (s *stamper) close() { _ = s.srv.Close() }

// promptOf reads the "prompt" field of a multipart body.
func promptOf(contentType string, body []byte) string {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return ""
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return ""
		}
		if p.FormName() == "prompt" {
			b, _ := io.ReadAll(io.LimitReader(p, 4096))
			return string(b)
		}
	}
}

// easelProc is a running easel child.
type easelProc struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
}

var listenLine = regexp.MustCompile(`msg="easel listening".* addr=(127\.0\.0\.1:\d+)`)

// startEasel writes a config with one job-API backend (the reference
// preset pointed at submitURL and pollURL) and starts easel on it with a
// fresh data directory.
func startEasel(o options, tmp, name, submitURL, pollURL string) (*easelProc, error) {
	dataDir := filepath.Join(o.dataDir, "easel-"+name+fmt.Sprintf("-%d", time.Now().UnixNano()))
	cfgPath := filepath.Join(tmp, name+".yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
data_dir: %q
log:
  level: info
storage:
  fsync: %t
backends:
  - name: bench
    preset: aiimagetoimage-nano-banana
    concurrency: %d
    max_queue: 100000
    jobapi:
      submit:
        url: %q
      poll:
        url: %q
        interval: 5ms
        backoff: 2
        max_interval: 100ms
        deadline: 60s
models:
  - id: %s
    backends: [bench]
`, dataDir, o.fsync, o.concurrency, submitURL, pollURL, model)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(o.bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "EASEL_API_KEYS="+apiKey, "EASEL_STORAGE_FSYNC=", "EASEL_LISTEN=", "EASEL_DATA_DIR=", "GOMAXPROCS=2")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting easel: %w", err)
	}
	p := &easelProc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
				continue
			}
			// Only problems are worth the reader's attention.
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || !strings.HasPrefix(line, "time=") {
				fmt.Fprintln(os.Stderr, "easel:", line)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case a := <-addr:
		p.base = "http://" + a
		return p, nil
	case <-p.done:
		return nil, errors.New("easel exited before listening")
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("easel did not listen within 30s")
	}
}

// stop ends easel with SIGTERM, then SIGKILL if it lingers.
func (p *easelProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 1000,
		IdleConnTimeout:     time.Minute,
	}}
}

// inputPNG is the small image every job edits.
func inputPNG() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for y := range 32 {
		for x := range 32 {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 8), G: uint8(y * 8), B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
