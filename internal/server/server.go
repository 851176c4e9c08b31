// Package server runs easel's HTTP listener: it owns the http.Server and
// its timeouts, and wraps every route in the same middleware chain
// (recover, request id, access log, CORS, API-key auth) so that handlers
// deal with requests only.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	// MaxHeaderBytes caps request line plus headers; real clients send a
	// few KiB at most.
	MaxHeaderBytes = 64 << 10
)

// Options configures a Server.
type Options struct {
	// Addr is the listen address for ListenAndServe ("127.0.0.1:8080").
	Addr string
	// Handler serves every route (the OpenAI API mux, later the UI).
	Handler http.Handler
	// APIKeys are the accepted bearer keys in plain form, each with the
	// scopes admin and user. Empty (and no Authenticator) turns auth off;
	// the caller decides whether that is allowed.
	APIKeys []string
	// Authenticator, when set, checks every request to a non-public path
	// instead of APIKeys (setting both is an error): it is how keys kept
	// in the database, scopes and per-key limits reach the server.
	Authenticator Authenticator
	// CORSOrigins are the exact browser origins ("https://app.example")
	// allowed to call the API. "*" is allowed only as the single entry.
	// Empty disables CORS headers entirely.
	CORSOrigins []string
	// Logger receives access logs and panics; nil discards them.
	Logger *slog.Logger
	// ReadHeaderTimeout bounds how long a client may take to send the
	// request headers (slowloris); default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections; default 120s.
	IdleTimeout time.Duration
	// PublicPaths are reachable without an API key. An entry ending in "/"
	// (other than "/" itself) matches as a prefix, every other entry
	// matches the path exactly. "/healthz" is always public.
	PublicPaths []string
}

// Server is easel's HTTP server.
type Server struct {
	srv     *http.Server
	handler http.Handler
	log     *slog.Logger
}

// New validates opts and builds the server and its middleware chain.
func New(opts Options) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("server: Handler is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cors, err := newCORS(opts.CORSOrigins)
	if err != nil {
		return nil, err
	}
	if opts.Authenticator != nil && len(opts.APIKeys) > 0 {
		return nil, errors.New("server: set APIKeys or Authenticator, not both")
	}
	auth, err := newAuth(opts.APIKeys, opts.PublicPaths)
	if err != nil {
		return nil, err
	}
	auth.authn = opts.Authenticator
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.ReadHeaderTimeout < 0 || opts.IdleTimeout < 0 {
		return nil, errors.New("server: timeouts must not be negative")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.Handle("/", opts.Handler)

	s := &Server{log: log}
	s.handler = &outer{log: log, next: cors.wrap(auth.wrap(mux))}
	s.srv = &http.Server{
		Addr:              opts.Addr,
		Handler:           s.handler,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		// No ReadTimeout/WriteTimeout: they are absolute and would cut
		// SSE streams; handlers set per-request deadlines instead.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the full middleware chain, for httptest servers.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln until Shutdown. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serving http: %w", err)
	}
	return nil
}

// ListenAndServe listens on Options.Addr and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.srv.Addr, err)
	}
	return s.Serve(ln)
}

// OnShutdown registers f to run when Shutdown starts, so long-lived
// responses (event streams) can end themselves instead of holding the
// drain open.
func (s *Server) OnShutdown(f func()) { s.srv.RegisterOnShutdown(f) }

// Shutdown stops accepting connections and waits, until ctx ends, for
// requests in flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down http server: %w", err)
	}
	return nil
}
