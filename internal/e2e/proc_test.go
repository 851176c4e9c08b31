package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/cli"
)

// gatewayEnv makes the test binary act as `easel` (its arguments after
// "--"), so the durability tests run the real server as a child process
// they can SIGKILL, without a toolchain or a second build: the child is
// this same binary, race detector included when the tests have it.
const gatewayEnv = "EASEL_E2E_GATEWAY"

func TestMain(m *testing.M) {
	if os.Getenv(gatewayEnv) == "1" {
		os.Exit(gatewayMain())
	}
	os.Exit(m.Run())
}

// gatewayMain is cmd/easel's main with the test binary's arguments.
func gatewayMain() int {
	args := os.Args[1:]
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The test holds our stdin open; EOF means it is gone (a test binary
	// killed by its timeout, say), and no server may outlive it.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	return cli.Run(ctx, "v0.0.0-e2e", args)
}

// gateway is easel running as a child process on a fixed configuration
// and data directory, restartable after a kill.
type gateway struct {
	t       *testing.T
	args    []string
	env     []string
	logs    *logTail
	started int

	mu   sync.Mutex
	cmd  *exec.Cmd
	base string
	done chan struct{} // closed when the current process has exited
	werr error         // its Wait error, valid after done
}

// newGateway prepares (does not start) `easel serve` on cfgPath and
// dataDir, listening on a fresh loopback port each start. env is the
// child's whole environment: nothing leaks in from the test's.
func newGateway(t *testing.T, cfgPath, dataDir string, env map[string]string) *gateway {
	t.Helper()
	g := &gateway{
		t:    t,
		args: []string{"--", "serve", "--config", cfgPath, "--data-dir", dataDir, "--listen", "127.0.0.1:0"},
		logs: &logTail{},
	}
	g.env = append(g.env, gatewayEnv+"=1", "TMPDIR="+os.TempDir())
	for k, v := range env {
		g.env = append(g.env, k+"="+v)
	}
	t.Cleanup(func() {
		// Whatever happened, no child outlives the test.
		g.mu.Lock()
		cmd, done := g.cmd, g.done
		g.mu.Unlock()
		if cmd != nil {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("easel log (tail):\n%s", g.logs.tail())
		}
	})
	return g
}

// listenLine finds the address in serve's "easel listening" log line.
var listenLine = regexp.MustCompile(`msg="easel listening".* addr=(127\.0\.0\.1:\d+)`)

// start runs a new process and waits until it listens.
func (g *gateway) start() {
	g.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		g.t.Fatal(err)
	}
	g.started++
	addrc := make(chan string, 1)
	fmt.Fprintf(g.logs, "---- start %d ----\n", g.started)
	cmd := exec.Command(exe, g.args...)
	cmd.Env = g.env
	cmd.Stdout = g.logs
	cmd.Stderr = &lineWatcher{out: g.logs, match: listenLine, found: addrc}
	// Never written to: the child stops when it closes, that is when this
	// process ends. Wait closes it once the child has exited.
	if _, err := cmd.StdinPipe(); err != nil {
		g.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("starting easel: %v", err)
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.cmd, g.done, g.base = cmd, done, ""
	g.mu.Unlock()
	go func() {
		err := cmd.Wait()
		g.mu.Lock()
		g.werr = err
		g.mu.Unlock()
		close(done)
	}()
	select {
	case addr := <-addrc:
		g.mu.Lock()
		g.base = "http://" + addr
		g.mu.Unlock()
	case <-done:
		g.t.Fatalf("easel (start %d) exited before listening: %v\n%s", g.started, g.waitErr(), g.logs.tail())
	case <-time.After(startTimeout):
		g.t.Fatalf("easel (start %d) did not listen within %s\n%s", g.started, startTimeout, g.logs.tail())
	}
}

// url is the base URL of the running process, "" while it is down.
func (g *gateway) url() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.base
}

func (g *gateway) waitErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.werr
}

// kill sends SIGKILL and waits for the process to be gone, so that no
// request of it reaches the upstream afterwards.
func (g *gateway) kill() {
	g.t.Helper()
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.base = ""
	g.mu.Unlock()
	fmt.Fprintf(g.logs, "---- SIGKILL %d ----\n", g.started)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		g.t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-done:
	case <-time.After(stopTimeout):
		g.t.Fatalf("easel did not die within %s of SIGKILL", stopTimeout)
	}
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (g *gateway) stop() error {
	g.t.Helper()
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.base = ""
	g.mu.Unlock()
	fmt.Fprintf(g.logs, "---- SIGTERM %d ----\n", g.started)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-done:
		return g.waitErr()
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("easel did not exit within %s of SIGTERM", stopTimeout)
	}
}

// lineWatcher passes output on and reports the first capture of match,
// once per process.
type lineWatcher struct {
	out     *logTail
	match   *regexp.Regexp
	found   chan<- string
	partial []byte
	sent    bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	_, _ = w.out.Write(p)
	if w.sent {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		if m := w.match.FindSubmatch(line); m != nil {
			w.found <- string(m[1])
			w.sent = true
			w.partial = nil
			break
		}
	}
	if len(w.partial) > 64<<10 {
		w.partial = w.partial[len(w.partial)-(64<<10):]
	}
	return len(p), nil
}

// logTail keeps the last megabyte of the children's output.
type logTail struct {
	mu sync.Mutex
	b  []byte
}

const logTailMax = 1 << 20

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > logTailMax {
		l.b = append(l.b[:0], l.b[len(l.b)-logTailMax/2:]...)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// tail is the end of the log, enough to diagnose a failure.
func (l *logTail) tail() string {
	const keep = 24 << 10
	out := l.String()
	if len(out) > keep {
		out = "…" + out[len(out)-keep:]
	}
	return out
}
