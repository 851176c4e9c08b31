package keys_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/server"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// envKey is an operator key as EASEL_API_KEYS would hold it.
const envKey = "op-7Qp2Xv9Lm4Rt8Zs1Wn6YbKe"

// signingKey is a fixed 32-byte signing key.
var signingKey = []byte("0123456789abcdef0123456789abcdef")

// clock is a hand-moved clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bundle is one test's service, store and HTTP server.
type bundle struct {
	svc   *keys.Service
	st    *sqlite.Store
	path  string
	clock *clock
	srv   *httptest.Server
}

type setupOpts struct {
	env        []string
	defaults   keys.Limits
	trustProxy bool
	dbPath     string
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	path := o.dbPath
	if path == "" {
		path = filepath.Join(t.TempDir(), "easel.db")
	}
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := newClock()
	svc, err := keys.New(keys.Options{
		Keys:       st.Keys(),
		Usage:      st.Usage(),
		EnvKeys:    o.env,
		SigningKey: signingKey,
		Defaults:   o.defaults,
		TrustProxy: o.trustProxy,
		Now:        c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	mux.HandleFunc("/", whoami)
	s, err := server.New(server.Options{Handler: mux, Authenticator: svc, PublicPaths: []string{"/v1/files/"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &bundle{svc: svc, st: st, path: path, clock: c, srv: srv}
}

// whoamiResponse is what the catch-all handler reports about the caller.
type whoamiResponse struct {
	KeyID       string      `json:"key_id"`
	ServerKeyID string      `json:"server_key_id"`
	Admin       bool        `json:"admin"`
	ServerAdmin bool        `json:"server_admin"`
	HasIdentity bool        `json:"has_identity"`
	Limits      keys.Limits `json:"limits"`
	WebhookURL  string      `json:"webhook_url"`
}

func whoami(w http.ResponseWriter, r *http.Request) {
	id, ok := keys.FromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(whoamiResponse{
		KeyID:       id.KeyID,
		ServerKeyID: server.KeyID(r.Context()),
		Admin:       id.Admin,
		ServerAdmin: server.IsAdmin(r.Context()),
		HasIdentity: ok,
		Limits:      id.Limits,
		WebhookURL:  id.WebhookURL,
	})
}

// result is one HTTP exchange.
type result struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the given Authorization values (none for nil).
func (b *bundle) do(t *testing.T, method, path string, auth []string, body string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func bearer(k string) []string { return []string{"Bearer " + k} }

// errorCode decodes the OpenAI envelope's code.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var env struct {
		Error struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("not an error envelope: %v: %s", err, body)
	}
	return env.Error.Code
}

func ptr(v int) *int { return &v }

// mustCreate makes a database key.
func (b *bundle) mustCreate(t *testing.T, spec keys.Spec) *keys.Created {
	t.Helper()
	c, err := b.svc.CreateKey(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRequest(t *testing.T, url string) (*http.Request, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}
