package keys

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/webhook"
)

// Bounds of what a key spec may hold.
const (
	// MaxNameLen caps a key's name, in characters.
	MaxNameLen = 100
	// MaxLimit caps each limit; larger numbers are typos, not policies.
	MaxLimit = 1_000_000_000
	// MaxWebhookURLLen caps a key's default webhook URL.
	MaxWebhookURLLen = 2048
)

// Spec describes a key to create.
type Spec struct {
	// Name is the operator's label; required.
	Name string
	// Admin gives the key the admin scope as well as user.
	Admin bool
	// Limits are the key's own limits: nil keeps the server's default, 0
	// means unlimited, a positive number is the limit.
	Limits LimitSettings
	// WebhookURL is the key's default webhook (http or https); empty for
	// none. Deliveries go through the SSRF guard like any webhook.
	WebhookURL string
}

// LimitSettings are a key's own limits as the admin API and the CLI show
// and take them: null (nil) is the server's default, 0 unlimited.
type LimitSettings struct {
	// RequestsPerMinute caps API requests per minute.
	RequestsPerMinute *int `json:"requests_per_minute"`
	// ConcurrentJobs caps jobs queued or running at once.
	ConcurrentJobs *int `json:"concurrent_jobs"`
	// ImagesPerDay caps images per 24 hours.
	ImagesPerDay *int `json:"images_per_day"`
}

// SpecError is a Spec the service refuses; Param names the field.
type SpecError struct {
	// Param is the field at fault ("name", "webhook_url", "limits.images_per_day").
	Param string
	// Message says what is wrong.
	Message string
}

func (e *SpecError) Error() string { return e.Param + ": " + e.Message }

// KeyInfo is a key as listings show it: never its hash or a secret.
type KeyInfo struct {
	// ID is the key's 8-character id.
	ID string `json:"id"`
	// Object is always "api_key".
	Object string `json:"object"`
	// Prefix is the display form, "sk-user_abcd1234_…WXYZ".
	Prefix string `json:"prefix"`
	// Name is the operator's label.
	Name string `json:"name"`
	// Scopes are "admin" and/or "user".
	Scopes []string `json:"scopes"`
	// CreatedAt is in unix seconds.
	CreatedAt int64 `json:"created_at"`
	// RevokedAt is in unix seconds; null while live.
	RevokedAt *int64 `json:"revoked_at"`
	// LastUsedAt is in unix seconds; null if never used. It is updated
	// at most once a minute.
	LastUsedAt *int64 `json:"last_used_at"`
	// Limits are the key's own limits (null: the server's default).
	Limits LimitSettings `json:"limits"`
	// EffectiveLimits apply the server's defaults (0: unlimited).
	EffectiveLimits Limits `json:"effective_limits"`
	// WebhookURL is the key's default webhook; empty for none.
	WebhookURL string `json:"webhook_url"`
}

// Created is a new key with its two secrets, shown this once.
type Created struct {
	KeyInfo
	// Key is the API key itself; only its hash is stored.
	Key string `json:"key"`
	// WebhookSecret signs the key's webhooks ("whsec_...").
	WebhookSecret string `json:"webhook_secret"`
}

// CreateKey makes a database key. A bad spec is a *SpecError.
func (s *Service) CreateKey(ctx context.Context, spec Spec) (*Created, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	kind := store.KindUser
	if spec.Admin {
		kind = store.KindAdmin
	}
	plain, rec, err := store.NewKey(kind)
	if err != nil {
		return nil, fmt.Errorf("creating key: %w", err)
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return nil, fmt.Errorf("creating webhook secret: %w", err)
	}
	rec.Hash = store.Hash(s.pepper, plain)
	rec.Name = spec.Name
	if spec.Admin {
		rec.Scopes = []string{ScopeAdmin, ScopeUser}
	}
	rec.Created = s.now().UTC().Truncate(time.Millisecond)
	rec.RequestsPerMinute = toStored(spec.Limits.RequestsPerMinute)
	rec.ConcurrentJobs = toStored(spec.Limits.ConcurrentJobs)
	rec.ImagesPerDay = toStored(spec.Limits.ImagesPerDay)
	rec.WebhookURL = spec.WebhookURL
	rec.WebhookSecret = secret
	if err := s.keys.Create(ctx, rec); err != nil {
		return nil, fmt.Errorf("storing key: %w", err)
	}
	return &Created{KeyInfo: s.info(&rec), Key: plain, WebhookSecret: secret}, nil
}

// ListKeys returns every database key, oldest first.
func (s *Service) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	recs, err := s.keys.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	out := make([]KeyInfo, 0, len(recs))
	for i := range recs {
		out = append(out, s.info(&recs[i]))
	}
	return out, nil
}

// RevokeKey revokes a database key at once (the next request with it gets
// 401) and returns it; store.ErrNotFound (wrapped) for an unknown id.
// Revoking twice keeps the first time.
func (s *Service) RevokeKey(ctx context.Context, id string) (*KeyInfo, error) {
	if err := s.keys.Revoke(ctx, id, s.now()); err != nil {
		return nil, fmt.Errorf("revoking key: %w", err)
	}
	rec, err := s.keys.ByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading revoked key: %w", err)
	}
	info := s.info(rec)
	return &info, nil
}

func (s *Service) info(rec *store.KeyRecord) KeyInfo {
	unix := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		v := t.Unix()
		return &v
	}
	info := KeyInfo{
		ID:         rec.ID,
		Object:     "api_key",
		Prefix:     rec.Prefix,
		Name:       rec.Name,
		Scopes:     slices.Clone(rec.Scopes),
		CreatedAt:  rec.Created.Unix(),
		LastUsedAt: unix(rec.LastUsed),
		Limits: LimitSettings{
			RequestsPerMinute: fromStored(rec.RequestsPerMinute),
			ConcurrentJobs:    fromStored(rec.ConcurrentJobs),
			ImagesPerDay:      fromStored(rec.ImagesPerDay),
		},
		EffectiveLimits: s.effective(rec),
		WebhookURL:      rec.WebhookURL,
	}
	if info.Scopes == nil {
		info.Scopes = []string{}
	}
	if rec.Revoked != nil {
		info.RevokedAt = unix(*rec.Revoked)
	}
	return info
}

// toStored maps the API's limit (nil default, 0 unlimited) to the store's
// (0 default, negative unlimited).
func toStored(v *int) int {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return *v
}

func fromStored(v int) *int {
	switch {
	case v == 0:
		return nil
	case v < 0:
		zero := 0
		return &zero
	}
	return &v
}

func (spec *Spec) validate() error {
	name := strings.TrimSpace(spec.Name)
	switch {
	case name == "":
		return &SpecError{"name", "is required"}
	case !utf8.ValidString(spec.Name) || utf8.RuneCountInString(spec.Name) > MaxNameLen:
		return &SpecError{"name", fmt.Sprintf("must be valid UTF-8 of at most %d characters", MaxNameLen)}
	case strings.ContainsFunc(spec.Name, unicode.IsControl):
		return &SpecError{"name", "must not contain control characters"}
	}
	spec.Name = name
	for _, l := range []struct {
		param string
		v     *int
	}{
		{"limits.requests_per_minute", spec.Limits.RequestsPerMinute},
		{"limits.concurrent_jobs", spec.Limits.ConcurrentJobs},
		{"limits.images_per_day", spec.Limits.ImagesPerDay},
	} {
		if l.v != nil && (*l.v < 0 || *l.v > MaxLimit) {
			return &SpecError{l.param, fmt.Sprintf("%d is outside 0 (unlimited) to %d", *l.v, MaxLimit)}
		}
	}
	if spec.WebhookURL != "" {
		if err := checkWebhookURL(spec.WebhookURL); err != nil {
			return &SpecError{"webhook_url", err.Error()}
		}
	}
	return nil
}

func checkWebhookURL(raw string) error {
	if len(raw) > MaxWebhookURLLen {
		return fmt.Errorf("is longer than %d characters", MaxWebhookURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	}
	return nil
}
