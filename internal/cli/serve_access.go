package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// newAccess builds the key service serve authenticates with: the keys in
// the environment and in the store, the default limits, and the brute-force
// guard. It refuses a non-loopback listen address when no key exists
// anywhere, which Validate cannot decide before the store is open.
func newAccess(ctx context.Context, cfg *config.Config, st *sqlite.Store, signingKey []byte, log *slog.Logger) (*keys.Service, error) {
	access, err := keys.New(keys.Options{
		Keys:       st.Keys(),
		Usage:      st.Usage(),
		EnvKeys:    cfg.Auth.Keys,
		SigningKey: signingKey,
		Defaults:   keys.Limits(cfg.Limits),
		TrustProxy: cfg.TrustProxy,
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up API keys: %w", err)
	}
	on, err := access.Enabled(ctx)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckExposure(on); err != nil {
		return nil, fmt.Errorf("refusing to listen on %s without API keys: %w", cfg.Listen, err)
	}
	if !on {
		log.Warn("auth disabled: no API keys configured; listening on loopback only; "+
			"the first key made with `easel keys create` turns auth on within a second",
			"keys_env", cfg.Auth.KeysEnv)
	}
	return access, nil
}

// checkBoundAddr is serve's last check once the listener is bound: a name
// such as "localhost" is resolved by the system, so without auth the
// address actually bound must be a loopback one.
func checkBoundAddr(ctx context.Context, access *keys.Service, addr net.Addr) error {
	on, err := access.Enabled(ctx)
	if err != nil {
		return err
	}
	if tcp, ok := addr.(*net.TCPAddr); !on && (!ok || !tcp.IP.IsLoopback()) {
		return fmt.Errorf("refusing to serve without API keys on %s, which is not a loopback address", addr)
	}
	return nil
}
