package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/provider"
)

// checker is implemented by providers that can verify their upstream
// without running a job.
type checker interface {
	Check(ctx context.Context) error
}

type backendsFlags struct {
	config  string
	timeout time.Duration
}

// backendStatus is one row of the backends table.
type backendStatus struct {
	Name    string
	Type    string
	Status  string // up, down, unchecked
	Latency time.Duration
	Detail  string
}

func newBackendsCommand(o *Options) *cobra.Command {
	var f backendsFlags
	cmd := &cobra.Command{
		Use:   "backends",
		Short: "Check that every configured backend is reachable",
		Long: `Load the configuration as "easel serve" would and check every backend at once:
for a Gradio backend, that the app's /config and API description can be read,
that it speaks a supported protocol and that the configured endpoint exists
with the configured number of inputs; for a job-API backend, that its API
host answers (one HEAD request, no job is submitted). Prints one line per backend with its
status and the time the check took; nothing is generated.

Exits with 0 when every backend is up and 1 when any is down.`,
		Example: `  # The built-in backends
  easel backends

  # A config file, with a shorter bound per backend
  easel backends --config easel.yaml --timeout 5s`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBackends(cmd.Context(), o, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "YAML config file (env "+EnvConfig+"; default: built-in configuration)")
	fl.DurationVar(&f.timeout, "timeout", 20*time.Second, "bound on each backend's check")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}

func runBackends(ctx context.Context, o *Options, f backendsFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.timeout <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	cfg, err := config.Load(configPath(f.config, o.Getenv), o.Getenv)
	if err != nil {
		return err
	}
	// Provider diagnostics would interleave with the table; the table's
	// detail column carries what matters.
	log := slog.New(slog.DiscardHandler)
	rows := checkBackends(ctx, cfg.Backends, f.timeout, o.Version, log)
	if ctx.Err() != nil {
		return &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted")}
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATUS\tLATENCY\tDETAIL")
	down := 0
	for _, r := range rows {
		if r.Status == "down" {
			down++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Type, r.Status, formatLatency(r.Latency), r.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if down > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d of %d backends down", down, len(rows))}
	}
	return nil
}

// checkBackends checks every backend concurrently, each within timeout,
// and returns the rows in configuration order.
func checkBackends(ctx context.Context, backends []config.Backend, timeout time.Duration, version string, log *slog.Logger) []backendStatus {
	rows := make([]backendStatus, len(backends))
	var wg sync.WaitGroup
	for i, b := range backends {
		rows[i] = backendStatus{Name: b.Name, Type: b.Type}
		p, err := newProvider(b, version, log)
		if err != nil {
			rows[i].Status, rows[i].Detail = "down", oneLine(err.Error())
			continue
		}
		c, ok := p.(checker)
		if !ok {
			rows[i].Status, rows[i].Detail = "unchecked", "this backend type has no check"
			closeProvider(p)
			continue
		}
		wg.Add(1)
		go func(row *backendStatus, b config.Backend) {
			defer wg.Done()
			defer closeProvider(p)
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := c.Check(cctx)
			row.Latency = time.Since(start)
			if err != nil {
				row.Status, row.Detail = "down", oneLine(err.Error())
				if cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
					row.Detail = fmt.Sprintf("no answer within %s", timeout)
				}
				return
			}
			row.Status, row.Detail = "up", okDetail(b)
		}(&rows[i], b)
	}
	wg.Wait()
	return rows
}

func closeProvider(p provider.Provider) {
	if c, ok := p.(provider.Closer); ok {
		_ = c.Close()
	}
}

func okDetail(b config.Backend) string {
	if b.Gradio == nil {
		return "reachable"
	}
	if b.Gradio.APIName != "" {
		return "endpoint /" + strings.TrimPrefix(b.Gradio.APIName, "/") + " found"
	}
	if b.Gradio.FnIndex != nil {
		return fmt.Sprintf("fn_index %d found", *b.Gradio.FnIndex)
	}
	return "reachable"
}

func formatLatency(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return d.Round(10 * time.Millisecond).String()
}

// oneLine keeps a table cell on one line and of reasonable length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 240 {
		s = string(r[:240]) + "…"
	}
	return s
}
