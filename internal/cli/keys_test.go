package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/server"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// runKeys runs the real binary's keys command against dataDir and returns
// stdout, stderr and the exit code.
func runKeys(t *testing.T, dataDir string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := helperCmd(ctx, append([]string{"keys"}, args...)...)
	cmd.Env = append(cmd.Env, config.EnvDataDir+"="+dataDir, "EASEL_API_KEYS=", config.EnvSigningKey+"=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running keys %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// accessServer is what serve builds around the key service: the store
// in dataDir, newAccess, the admin routes and a handler that reports the
// caller.
func accessServer(t *testing.T, dataDir string) *httptest.Server {
	t.Helper()
	cfg, err := config.Load("", envMap(map[string]string{config.EnvDataDir: dataDir}))
	if err != nil {
		t.Fatal(err)
	}
	signingKey, err := cfg.LoadSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dataDir, DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	access, err := newAccess(t.Context(), cfg, st, signingKey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	access.Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, server.KeyID(r.Context()))
	})
	s, err := server.New(server.Options{Handler: mux, Authenticator: access})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// TestKeysCommandEndToEnd creates, lists and revokes keys with the real
// binary while a server runs on the same database.
func TestKeysCommandEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := accessServer(t, dir)
	if code, _ := get(t, srv.URL+"/v1/models", ""); code != 200 {
		t.Fatalf("no keys yet: %d, want 200 (auth off on loopback)", code)
	}

	out, errOut, code := runKeys(t, dir, "create", "--name", "app", "--rpm", "3", "--images-per-day", "0",
		"--webhook-url", "https://hooks.example/app", "--json")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	var app keys.Created
	if err := json.Unmarshal([]byte(out), &app); err != nil {
		t.Fatalf("create --json: %v: %s", err, out)
	}
	if !strings.HasPrefix(app.Key, "sk-user_"+app.ID+"_") || !strings.HasPrefix(app.WebhookSecret, "whsec_") ||
		app.WebhookURL != "https://hooks.example/app" || *app.Limits.RequestsPerMinute != 3 || *app.Limits.ImagesPerDay != 0 {
		t.Errorf("created = %s", out)
	}
	if !strings.Contains(errOut, "cannot be shown again") {
		t.Errorf("create does not warn that the key is shown once: %q", errOut)
	}

	// The running server turns auth on within a second of the first key.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, srv.URL+"/v1/models", "")
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("auth still off %v after the first key", 5*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get(t, srv.URL+"/v1/models", app.Key); code != 200 || body != app.ID {
		t.Errorf("new key: %d %q, want 200 and its id", code, body)
	}
	if code, body := get(t, srv.URL+"/v1/webhooks/secret", app.Key); code != 200 || !strings.Contains(body, app.WebhookSecret) {
		t.Errorf("webhook secret: %d %s", code, body)
	}
	if code, _ := get(t, srv.URL+"/admin/keys", app.Key); code != 403 {
		t.Errorf("user key on /admin: %d, want 403", code)
	}

	out, errOut, code = runKeys(t, dir, "create", "--name", "ops", "--admin")
	if code != 0 {
		t.Fatalf("create --admin: exit %d: %s", code, errOut)
	}
	opsKey := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "API key:"); ok {
			opsKey = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(opsKey, "sk-admin_") || !strings.Contains(out, "Webhook secret:  whsec_") || !strings.Contains(out, "admin, user") {
		t.Fatalf("create text output:\n%s", out)
	}
	if code, body := get(t, srv.URL+"/admin/keys", opsKey); code != 200 || !strings.Contains(body, app.Prefix) {
		t.Errorf("admin key lists: %d %s", code, body)
	}

	out, errOut, code = runKeys(t, dir, "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"ID", "LAST USED", app.ID, app.Prefix, "ops", "admin,user", "https://hooks.example/app", "unlimited", "default (unlimited)"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runKeys(t, dir, "list", "--json")
	var listed []keys.KeyInfo
	if err := json.Unmarshal([]byte(out), &listed); err != nil || code != 0 || len(listed) != 2 {
		t.Fatalf("list --json: %v %d: %s", err, code, out)
	}
	if listed[0].LastUsedAt == nil {
		t.Error("list does not show the app key's use")
	}
	for _, secret := range []string{app.Key, opsKey, app.WebhookSecret} {
		if strings.Contains(out, secret) {
			t.Error("list --json shows a secret")
		}
	}

	out, errOut, code = runKeys(t, dir, "revoke", app.ID)
	if code != 0 || !strings.Contains(out, "Revoked API key "+app.ID) {
		t.Fatalf("revoke: exit %d: %s %s", code, out, errOut)
	}
	if code, _ := get(t, srv.URL+"/v1/models", app.Key); code != 401 {
		t.Errorf("revoked key: %d, want 401", code)
	}
	if code, _ := get(t, srv.URL+"/v1/models", opsKey); code != 200 {
		t.Errorf("other key after a revoke: %d, want 200", code)
	}
	_, errOut, code = runKeys(t, dir, "revoke", "nope1234")
	if code != ExitFailure || !strings.Contains(errOut, "nope1234") {
		t.Errorf("revoke unknown: exit %d: %s", code, errOut)
	}
}

func TestKeysCommandRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"create"},
		{"create", "--name", "x", "--rpm", "-5"},
		{"create", "--name", "x", "--webhook-url", "ftp://a.example/"},
		{"create", "--name", " "},
		{"revoke"},
		{"list", "extra"},
	} {
		if _, errOut, code := runKeys(t, dir, args...); code != ExitUsage {
			t.Errorf("keys %v: exit %d, want %d: %s", args, code, ExitUsage, errOut)
		}
	}
	// --data-dir wins over the environment; nothing was created above.
	other := t.TempDir()
	out, _, err := run(t, map[string]string{config.EnvDataDir: dir}, "keys", "list", "--data-dir", other)
	if err != nil || !strings.Contains(out, "No API keys") {
		t.Errorf("list --data-dir: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(other, DatabaseFile)); err != nil {
		t.Errorf("--data-dir not used: %v", err)
	}
}

func TestNewAccessExposure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	load := func(listen string) *config.Config {
		cfg, err := config.Load("", envMap(map[string]string{config.EnvDataDir: dir, config.EnvListen: listen}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := slog.New(slog.DiscardHandler)
	key := bytes.Repeat([]byte{7}, 32)
	if _, err := newAccess(t.Context(), load("0.0.0.0:8080"), st, key, log); err == nil || !strings.Contains(err.Error(), "EASEL_API_KEYS") {
		t.Errorf("no keys on all interfaces: %v, want a refusal", err)
	}
	access, err := newAccess(t.Context(), load("127.0.0.1:8080"), st, key, log)
	if err != nil {
		t.Fatal(err)
	}
	public := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80}
	if err := checkBoundAddr(t.Context(), access, public); err == nil {
		t.Error("bound to a public address without keys")
	}
	if err := checkBoundAddr(t.Context(), access, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}); err != nil {
		t.Errorf("loopback without keys: %v", err)
	}
	if _, err := access.CreateKey(t.Context(), keys.Spec{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	access, err = newAccess(t.Context(), load("0.0.0.0:8080"), st, key, log)
	if err != nil {
		t.Errorf("a database key on all interfaces: %v", err)
	}
	if err := checkBoundAddr(t.Context(), access, public); err != nil {
		t.Errorf("public address with a key: %v", err)
	}
}
