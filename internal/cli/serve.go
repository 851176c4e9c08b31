package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/blob/local"
	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/openaiapi"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/gradio"
	"github.com/easelgw/easel/internal/provider/jobapi"
	"github.com/easelgw/easel/internal/retention"
	"github.com/easelgw/easel/internal/server"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
	"github.com/easelgw/easel/internal/ui"
)

// ShutdownDrain is how long serve lets requests in flight finish after
// SIGINT or SIGTERM; it stays under Kubernetes' default 30 s grace period.
const ShutdownDrain = 25 * time.Second

// Demo fake settings: steps and delay make progress visible in clients
// (about 1.2 s an image) without making the demo tedious.
const (
	demoSteps       = 8
	demoStepDelay   = 150 * time.Millisecond
	demoConcurrency = 2
)

type serveFlags struct {
	config  string
	listen  string
	dataDir string
	demo    bool
}

func newServeCommand(o *Options) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP gateway",
		Long: `Run the OpenAI-compatible HTTP gateway until SIGINT or SIGTERM, then finish
requests in flight (up to 25s) and exit.

Without a config file easel listens on 127.0.0.1:8080 and serves the model
z-image-turbo (aliases dall-e-3, dall-e-2, gpt-image-1, gpt-image-1.5) from
two Z-Image-Turbo Spaces on Hugging Face, failing over from one to the other.

Secrets come from the environment: EASEL_API_KEYS (comma-separated keys of at
least 20 characters), HF_TOKEN (Hugging Face token, optional) and
EASEL_SIGNING_KEY (signs result URLs; default: a key generated once into the
data directory). Without API keys (in the environment or made with
"easel keys create") easel only listens on a loopback address.

Jobs, keys and the async queue live in <data-dir>/easel.db (SQLite); results
in <data-dir>/blobs.`,
		Example: `  # Built-in backends on 127.0.0.1:8080, no auth (loopback only)
  easel serve

  # Try it offline: adds demo-z-image-turbo and demo-image-edit, backed by
  # in-process fakes; the web studio is at http://127.0.0.1:8080/
  easel serve --demo

  # Expose it on every interface, with keys and a config file
  EASEL_API_KEYS="$(openssl rand -hex 24)" easel serve --config easel.yaml --listen 0.0.0.0:8080

  # Then, from any OpenAI client:
  curl http://127.0.0.1:8080/v1/images/generations \
    -H 'Content-Type: application/json' \
    -d '{"model":"z-image-turbo","prompt":"a red fox in snow","size":"1024x1024"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "YAML config file (env "+EnvConfig+"; default: built-in configuration)")
	fl.StringVar(&f.listen, "listen", "", "listen address host:port (env "+config.EnvListen+"; default "+config.DefaultListen+")")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for results and the signing key (env "+config.EnvDataDir+"; default "+config.DefaultDataDir+")")
	fl.BoolVar(&f.demo, "demo", false, "also run in-process fake Gradio Spaces and serve them as models "+config.DemoModelID+" (text to image) and "+config.DemoEditModelID+" (image to image); no network needed")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

// runServe is the composition root: config, logger, blob store, signer,
// providers, job service, API, server; then it serves until ctx ends and
// shuts everything down in reverse order.
func runServe(ctx context.Context, o *Options, f serveFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// Flags win over the environment; passing them through the overlay
	// keeps one validation path for both.
	getenv := func(k string) string {
		switch {
		case k == config.EnvListen && f.listen != "":
			return f.listen
		case k == config.EnvDataDir && f.dataDir != "":
			return f.dataDir
		}
		return o.Getenv(k)
	}
	cfg, err := config.Load(configPath(f.config, o.Getenv), getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(o.Stderr, cfg.Log)
	if err != nil {
		return err
	}

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	if f.demo {
		stop, err := startDemo(cfg, log)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
	}

	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	closers = append(closers, unlock)
	blobs, err := local.New(filepath.Join(cfg.DataDir, "blobs"), local.Options{NoSync: !cfg.Storage.FSync})
	if err != nil {
		return fmt.Errorf("opening the blob store: %w", err)
	}
	if !cfg.Storage.FSync {
		log.Info("result files are not synced to disk (storage.fsync false); a power loss may lose recent results")
	}
	key, err := cfg.LoadSigningKey()
	if err != nil {
		return err
	}
	signer, err := blob.NewSigner(key)
	if err != nil {
		return fmt.Errorf("creating the URL signer: %w", err)
	}

	backends := make([]gen.Backend, 0, len(cfg.Backends))
	backendNames := make([]string, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		backendNames = append(backendNames, b.Name)
		p, err := newProvider(b, o.Version, log)
		if err != nil {
			return err
		}
		if c, ok := p.(provider.Closer); ok {
			closers = append(closers, func() { _ = c.Close() })
		}
		backends = append(backends, gen.Backend{
			Name:         b.Name,
			Provider:     p,
			Concurrency:  b.Concurrency,
			MaxQueue:     b.MaxQueue,
			QueueTimeout: b.QueueTimeout,
		})
	}
	started := time.Now().Truncate(time.Second)
	models := make([]gen.Model, 0, len(cfg.Models))
	ids := make([]string, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		models = append(models, gen.Model{
			ID:          m.ID,
			Aliases:     m.Aliases,
			Backends:    m.Backends,
			Description: m.Description,
			Demo:        m.Demo,
			Created:     started,
		})
		ids = append(ids, m.ID)
	}
	svc, err := gen.NewService(gen.Options{
		Backends:   backends,
		Models:     models,
		Blobs:      blobs,
		Logger:     log,
		MaxN:       cfg.Images.MaxN,
		MaxPixels:  cfg.Images.MaxPixels,
		Stagger:    cfg.Images.Stagger,
		JobTimeout: cfg.Images.JobTimeout,
	})
	if err != nil {
		return fmt.Errorf("creating the job service: %w", err)
	}

	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "easel.db"))
	if err != nil {
		closeService(svc, log)
		return fmt.Errorf("opening the database: %w", err)
	}
	closers = append(closers, func() { _ = st.Close() })
	access, err := newAccess(ctx, cfg, st, key, log)
	if err != nil {
		closeService(svc, log)
		return err
	}
	cleaner, err := retention.New(retention.Options{
		Jobs: st.Jobs(), Idempotency: st.Idempotency(), Usage: st.Usage(), Blobs: blobs,
		Results: cfg.Retention.Results, Records: cfg.Retention.Jobs, Interval: cfg.Retention.Interval,
		Logger: log.With("component", "retention"),
	})
	if err != nil {
		closeService(svc, log)
		return fmt.Errorf("starting retention: %w", err)
	}
	cleanCtx, stopCleaner := context.WithCancel(context.WithoutCancel(ctx))
	cleanerDone := make(chan struct{})
	go func() { defer close(cleanerDone); cleaner.Run(cleanCtx) }()
	closers = append(closers, func() { stopCleaner(); <-cleanerDone })

	var api *openaiapi.API // set below; webhooks render jobs with it
	mgr, err := newJobs(ctx, cfg, svc, st, blobs, access, log, func(rec *store.JobRecord) any { return api.JobObject(rec) })
	if err != nil {
		closeService(svc, log)
		return err
	}

	if cfg.Fetch.AllowPrivateNetworks {
		// Said once at start: with it, any client can make easel fetch
		// from hosts on its own network.
		log.Warn("image URLs may point at private networks (fetch.allow_private_networks)",
			"allowed_ports", cfg.Fetch.AllowedPorts)
	}
	api, err = openaiapi.New(openaiapi.Options{
		Service:               mgr,
		Jobs:                  mgr,
		ResultsTTL:            cfg.Retention.Results,
		Signer:                signer,
		PublicURL:             cfg.PublicURL,
		TrustProxy:            cfg.TrustProxy,
		URLTTL:                cfg.Images.URLTTL,
		DefaultResponseFormat: cfg.Images.DefaultResponseFormat,
		MaxPromptChars:        cfg.Images.MaxPromptChars,
		MaxN:                  cfg.Images.MaxN,
		MaxInputPixels:        cfg.Images.MaxPixels,
		Fetcher: netguard.New(netguard.Options{
			AllowPrivate: cfg.Fetch.AllowPrivateNetworks,
			AllowedPorts: cfg.Fetch.AllowedPorts,
			MaxBytes:     cfg.Fetch.MaxBytes,
			Timeout:      cfg.Fetch.Timeout,
		}),
		Admitter: admitter{access},
		Logger:   log,
	})
	if err != nil {
		closeService(svc, log)
		return fmt.Errorf("creating the API: %w", err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	access.Register(mux)
	ui.Register(mux)
	srv, err := server.New(server.Options{
		Addr:          cfg.Listen,
		Handler:       mux,
		Authenticator: access,
		CORSOrigins:   cfg.CORS.AllowedOrigins,
		Logger:        log,
		PublicPaths:   append([]string{"/v1/files/", "/healthz"}, ui.PublicPaths()...),
	})
	if err != nil {
		closeService(svc, log)
		return fmt.Errorf("creating the server: %w", err)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		closeService(svc, log)
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	// "localhost" is resolved by the system; make sure it really gave a
	// loopback address before serving without authentication.
	if err := checkBoundAddr(ctx, access, ln.Addr()); err != nil {
		_ = ln.Close()
		closeService(svc, log)
		return err
	}
	log.Info("easel listening",
		"addr", ln.Addr().String(),
		"version", o.Version,
		"models", ids,
		"backends", backendNames,
		"auth", len(cfg.Auth.Keys) > 0,
		"data_dir", cfg.DataDir)

	if err := mgr.StartWorkers(ctx); err != nil {
		_ = ln.Close()
		closeService(svc, log)
		return err
	}
	srv.OnShutdown(api.Shutdown)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if o.OnListen != nil {
		o.OnListen(ln.Addr())
	}

	select {
	case err := <-serveErr:
		// The listener failed on its own; nothing is left to drain.
		stopJobs(mgr, log)
		closeService(svc, log)
		if err == nil {
			err = errors.New("server stopped unexpectedly")
		}
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain", ShutdownDrain)
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownDrain)
	defer cancel()
	shutdownErr := srv.Shutdown(drainCtx)
	if shutdownErr != nil {
		log.Warn("requests still running at the end of the drain", "err", shutdownErr)
	}
	if err := mgr.Stop(drainCtx); err != nil {
		log.Warn("stopping async jobs", "err", err)
	}
	if err := svc.Close(drainCtx); err != nil {
		log.Warn("closing the job service", "err", err)
	}
	if err := <-serveErr; err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newProvider builds the provider of one configured backend.
func newProvider(b config.Backend, version string, log *slog.Logger) (provider.Provider, error) {
	switch b.Type {
	case "gradio":
		if b.Gradio == nil {
			return nil, fmt.Errorf("backend %q: no gradio settings", b.Name)
		}
		p, err := gradio.New(b.Name, *b.Gradio, gradio.Options{
			UserAgent: "easel/" + version,
			Logger:    log,
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	case "jobapi":
		if b.JobAPI == nil {
			return nil, fmt.Errorf("backend %q: no jobapi settings", b.Name)
		}
		p, err := jobapi.New(b.Name, *b.JobAPI, jobapi.Options{
			UserAgent: "easel/" + version,
			Logger:    log,
			// Until jobs are stored durably there is nothing to resume
			// from; the pair is only worth a debug line for operators
			// matching easel's jobs with the service's.
			OnUpstreamID: func(jobID, upstreamID string) {
				log.Debug("upstream job accepted", "backend", b.Name, "job", jobID, "upstream_job", upstreamID)
			},
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	default:
		return nil, fmt.Errorf("backend %q: unsupported type %q", b.Name, b.Type)
	}
}

func closeService(svc *gen.Service, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownDrain)
	defer cancel()
	if err := svc.Close(ctx); err != nil {
		log.Warn("closing the job service", "err", err)
	}
}

// newLogger builds the process logger from the log settings.
func newLogger(w io.Writer, c config.LogConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log.format: %q is not text or json", c.Format)
	}
}
