// Package keys decides who may call easel and how much: it authenticates
// bearer keys (the operator's keys from the environment and keys kept in
// the database), enforces each key's limits (requests per minute,
// concurrent jobs, images per day), guards against key guessing, and
// serves the admin API that creates, lists and revokes database keys.
//
// Keys from the environment are the operator's bootstrap keys: they carry
// the scopes admin and user, the default limits, and a webhook secret
// derived from the signing key. Database keys are made by `easel keys
// create` or POST /admin/keys; only their id and HMAC are stored (see
// store.Hash), with the pepper derived from the signing key, so a copy of
// the database alone does not even allow guessing offline.
//
// Revocation takes effect at once: database keys are looked up on every
// request, never cached. Whether auth is on at all is re-read at most once
// a second while it is off, and once on it stays on for the life of the
// process, so revoking the last key never opens the server.
package keys

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/easelgw/easel/internal/store"
)

// Scope names, as stored in store.KeyRecord.Scopes.
const (
	ScopeAdmin = store.KindAdmin
	ScopeUser  = store.KindUser
)

// Defaults of the Options fields left zero.
const (
	// DefaultMaxFailures is how many failed authentications one client
	// address may make per FailureWindow before it gets 429s.
	DefaultMaxFailures = 20
	// DefaultFailureWindow is the brute-force guard's window.
	DefaultFailureWindow = time.Minute
	// EnabledRecheck is how long "auth is off" is believed before the
	// database is asked again for a live key.
	EnabledRecheck = time.Second
	// touchInterval throttles LastUsed writes: one per key per minute is
	// enough to answer "is this key still used?", and a write per request
	// would serialise every request on the database.
	touchInterval = time.Minute
	// QuotaWindow is the images-per-day window.
	QuotaWindow = 24 * time.Hour
	// ConcurrencyRetryAfter is the retry hint of a concurrency refusal:
	// nothing tells when a running job will end, so it is a short, fixed
	// wait.
	ConcurrencyRetryAfter = 2 * time.Second
)

// Derivation labels: each secret derived from the signing key has its own,
// so no two uses can ever share a value.
const (
	pepperLabel        = "easel api-key pepper v1"
	webhookSecretLabel = "easel webhook secret v1:"
)

// Limits are a key's effective limits; 0 means unlimited.
type Limits struct {
	// RequestsPerMinute caps the key's API requests per minute, with a
	// burst of the same size.
	RequestsPerMinute int `json:"requests_per_minute"`
	// ConcurrentJobs caps the key's jobs queued or running at once.
	ConcurrentJobs int `json:"concurrent_jobs"`
	// ImagesPerDay caps the images admitted for the key in any 24 hours.
	ImagesPerDay int `json:"images_per_day"`
}

// Identity is the caller of one request, as the middleware put it in the
// request's context.
type Identity struct {
	// KeyID is the key's id: 8 characters for a database key, 12 hex
	// digits (of the key's SHA-256) for a key from the environment. It
	// equals server.KeyID of the request.
	KeyID string
	// Name is the operator's label ("" for environment keys).
	Name string
	// Admin reports the admin scope.
	Admin bool
	// Scopes are the key's scopes.
	Scopes []string
	// Limits are the key's effective limits (its own, else the defaults).
	Limits Limits
	// WebhookURL is the key's default webhook; empty for none.
	WebhookURL string
	// WebhookSecret signs this key's webhooks ("whsec_...").
	WebhookSecret string
}

// LogValue keeps the webhook secret out of logs when an Identity is
// logged whole.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", id.KeyID), slog.Bool("admin", id.Admin))
}

type ctxKey struct{}

// FromContext returns the identity the middleware stored; false when auth
// is off or the path is public.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// WithIdentity returns ctx carrying id, as the middleware does; for tests
// and non-HTTP callers.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Options configures a Service.
type Options struct {
	// Keys holds the database keys. Required.
	Keys store.Keys
	// Usage counts images for the daily quota. Required.
	Usage store.Usage
	// EnvKeys are the operator's keys from the environment (plain form),
	// with the scopes admin and user.
	EnvKeys []string
	// SigningKey is the server's secret (config LoadSigningKey); the key
	// pepper and the environment keys' webhook secrets are derived from
	// it. At least 32 bytes.
	SigningKey []byte
	// Defaults are the limits of keys that have none of their own.
	Defaults Limits
	// TrustProxy takes the client address for the brute-force guard from
	// the last X-Forwarded-For entry (the one the proxy added) instead of
	// the connection's peer.
	TrustProxy bool
	// MaxFailures and FailureWindow set the brute-force guard: more than
	// MaxFailures failed authentications from one address per window get
	// 429. Defaults 20 per minute.
	MaxFailures   int
	FailureWindow time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now. Tests move it by hand.
	Now func() time.Time
}

// Service authenticates requests and admits jobs. It is safe for
// concurrent use.
type Service struct {
	keys     store.Keys
	usage    store.Usage
	pepper   []byte
	signing  []byte
	defaults Limits
	log      *slog.Logger
	now      func() time.Time

	env []envKey

	// enabled latches: once any key exists auth stays on.
	enabled     atomic.Bool
	enabledMu   sync.Mutex
	enabledSeen time.Time

	guard *guard
	rpm   *rpmLimiters

	mu      sync.Mutex
	running map[string]int       // key id → admitted jobs not yet Done
	touched map[string]time.Time // key id → last LastUsed write
}

type envKey struct {
	digest [sha256.Size]byte
	id     Identity
}

// New builds a Service.
func New(opts Options) (*Service, error) {
	var errs []error
	if opts.Keys == nil {
		errs = append(errs, errors.New("keys: Options.Keys is required"))
	}
	if opts.Usage == nil {
		errs = append(errs, errors.New("keys: Options.Usage is required"))
	}
	if len(opts.SigningKey) < 32 {
		errs = append(errs, errors.New("keys: Options.SigningKey must have at least 32 bytes"))
	}
	if opts.Defaults.RequestsPerMinute < 0 || opts.Defaults.ConcurrentJobs < 0 || opts.Defaults.ImagesPerDay < 0 {
		errs = append(errs, errors.New("keys: default limits must not be negative"))
	}
	if opts.MaxFailures < 0 || opts.FailureWindow < 0 {
		errs = append(errs, errors.New("keys: MaxFailures and FailureWindow must not be negative"))
	}
	for i, k := range opts.EnvKeys {
		if k == "" {
			errs = append(errs, fmt.Errorf("keys: environment key %d is empty", i+1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.MaxFailures == 0 {
		opts.MaxFailures = DefaultMaxFailures
	}
	if opts.FailureWindow == 0 {
		opts.FailureWindow = DefaultFailureWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		keys:     opts.Keys,
		usage:    opts.Usage,
		pepper:   derive(opts.SigningKey, pepperLabel),
		signing:  slices.Clone(opts.SigningKey),
		defaults: opts.Defaults,
		log:      log,
		now:      opts.Now,
		guard:    newGuard(opts.MaxFailures, opts.FailureWindow, opts.TrustProxy),
		rpm:      &rpmLimiters{m: map[string]*rpmEntry{}},
		running:  map[string]int{},
		touched:  map[string]time.Time{},
	}
	for _, k := range opts.EnvKeys {
		d := sha256.Sum256([]byte(k))
		id := hex.EncodeToString(d[:])[:12]
		s.env = append(s.env, envKey{digest: d, id: Identity{
			KeyID:         id,
			Admin:         true,
			Scopes:        []string{ScopeAdmin, ScopeUser},
			Limits:        s.defaults,
			WebhookSecret: s.derivedWebhookSecret(id),
		}})
	}
	if len(s.env) > 0 {
		s.enabled.Store(true)
	}
	return s, nil
}

// derive is HMAC-SHA-256(secret, label).
func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Pepper returns the key pepper derived from signingKey, the HMAC key of
// every stored key hash.
func Pepper(signingKey []byte) []byte { return derive(signingKey, pepperLabel) }

// derivedWebhookSecret is the stable webhook secret of a key that has no
// stored one (environment keys, and the anonymous caller when auth is
// off): the same across restarts and replicas sharing the signing key.
func (s *Service) derivedWebhookSecret(keyID string) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(derive(s.signing, webhookSecretLabel+keyID)[:32])
}

// Anonymous is the identity of requests while auth is off: no key id, no
// limits, and the webhook secret derived for the empty key id.
func (s *Service) Anonymous() Identity {
	return Identity{WebhookSecret: s.derivedWebhookSecret("")}
}

// Enabled reports whether requests must authenticate: there are keys in
// the environment, or there is (or was, since this process started) a live
// key in the database. While it is false it asks the database again at
// most once per EnabledRecheck, so a first key made with `easel keys
// create` while the server runs turns auth on within a second.
func (s *Service) Enabled(ctx context.Context) (bool, error) {
	if s.enabled.Load() {
		return true, nil
	}
	s.enabledMu.Lock()
	defer s.enabledMu.Unlock()
	if s.enabled.Load() {
		return true, nil
	}
	now := s.now()
	if !s.enabledSeen.IsZero() && now.Sub(s.enabledSeen) < EnabledRecheck && now.Sub(s.enabledSeen) >= 0 {
		return false, nil
	}
	recs, err := s.keys.List(ctx)
	if err != nil {
		return false, fmt.Errorf("checking for API keys: %w", err)
	}
	s.enabledSeen = now
	for _, r := range recs {
		if r.Revoked == nil {
			s.enabled.Store(true)
			return true, nil
		}
	}
	return false, nil
}

// identity builds the Identity of a database key.
func (s *Service) identity(rec *store.KeyRecord) Identity {
	return Identity{
		KeyID:         rec.ID,
		Name:          rec.Name,
		Admin:         slices.Contains(rec.Scopes, ScopeAdmin),
		Scopes:        slices.Clone(rec.Scopes),
		Limits:        s.effective(rec),
		WebhookURL:    rec.WebhookURL,
		WebhookSecret: rec.WebhookSecret,
	}
}

// effective applies the stored limit convention: positive is the key's
// own, 0 the default, negative unlimited.
func (s *Service) effective(rec *store.KeyRecord) Limits {
	pick := func(own, def int) int {
		switch {
		case own > 0:
			return own
		case own < 0:
			return 0
		}
		return def
	}
	return Limits{
		RequestsPerMinute: pick(rec.RequestsPerMinute, s.defaults.RequestsPerMinute),
		ConcurrentJobs:    pick(rec.ConcurrentJobs, s.defaults.ConcurrentJobs),
		ImagesPerDay:      pick(rec.ImagesPerDay, s.defaults.ImagesPerDay),
	}
}

// errUnknown is every authentication failure; callers answer all of them
// with the same 401.
var errUnknown = errors.New("keys: unknown or revoked key")

// verify returns the identity of plain, errUnknown when it is not a live
// key, or a store failure.
func (s *Service) verify(ctx context.Context, plain string) (Identity, error) {
	d := sha256.Sum256([]byte(plain))
	found := -1
	for i := range s.env {
		if subtle.ConstantTimeCompare(d[:], s.env[i].digest[:]) == 1 {
			found = i
		}
	}
	if found >= 0 {
		return s.env[found].id, nil
	}
	id, ok := store.ParseKey(plain)
	if !ok {
		return Identity{}, errUnknown
	}
	rec, err := s.keys.ByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Hash anyway so an unknown id costs what a wrong secret does.
		store.Verify(&store.KeyRecord{ID: id}, s.pepper, plain)
		return Identity{}, errUnknown
	}
	if err != nil {
		return Identity{}, fmt.Errorf("looking up key: %w", err)
	}
	if !store.Verify(rec, s.pepper, plain) {
		return Identity{}, errUnknown
	}
	s.touch(ctx, rec.ID)
	return s.identity(rec), nil
}

// touch records the key's use, at most once per touchInterval per key.
// A failed write is logged and otherwise ignored: it must not fail the
// request it belongs to.
func (s *Service) touch(ctx context.Context, id string) {
	now := s.now()
	s.mu.Lock()
	last, seen := s.touched[id]
	if seen && now.Sub(last) < touchInterval && now.Sub(last) >= 0 {
		s.mu.Unlock()
		return
	}
	s.touched[id] = now
	s.mu.Unlock()
	if err := s.keys.Touch(ctx, id, now); err != nil {
		s.log.Warn("recording API key use", "key_id", id, "err", err)
	}
}

// rpmLimiters holds one token bucket per key.
type rpmLimiters struct {
	mu sync.Mutex
	m  map[string]*rpmEntry
}

type rpmEntry struct {
	rpm int
	lim *rate.Limiter
}

// get returns the key's bucket, replacing it when the key's limit changed.
func (r *rpmLimiters) get(keyID string, rpm int) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[keyID]
	if e == nil || e.rpm != rpm {
		e = &rpmEntry{rpm: rpm, lim: rate.NewLimiter(rate.Limit(float64(rpm)/60), rpm)}
		r.m[keyID] = e
	}
	return e.lim
}

// WebhookSecret returns the secret that signs the webhooks of key keyID
// (a database key's stored secret, else the derived one of an environment
// key or of the anonymous caller), for deliveries made after the request.
func (s *Service) WebhookSecret(ctx context.Context, keyID string) (string, error) {
	if keyID == "" {
		return s.derivedWebhookSecret(""), nil
	}
	rec, err := s.keys.ByID(ctx, keyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Environment keys are not stored; their id is a digest.
		return s.derivedWebhookSecret(keyID), nil
	case err != nil:
		return "", fmt.Errorf("reading the webhook secret of key %s: %w", keyID, err)
	case rec.WebhookSecret == "":
		return s.derivedWebhookSecret(keyID), nil
	}
	return rec.WebhookSecret, nil
}
