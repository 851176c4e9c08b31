package keys_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/store"
)

// TestVerification is A2: every malformed or wrong credential is 401, and
// an unknown id and a wrong secret are answered identically.
func TestVerification(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{env: []string{envKey}})
	user := b.mustCreate(t, keys.Spec{Name: "user"})
	k := user.Key
	id, _ := store.ParseKey(k)
	secret := k[strings.LastIndex(k, "_")+1:]
	wrongSecret := k[:len(k)-1] + flip(k[len(k)-1])
	unknownID := "sk-user_zzzzzzzz_" + secret

	tests := []struct {
		name   string
		path   string
		auth   []string
		status int
		keyID  string
	}{
		{"valid", "/v1/models", bearer(k), 200, id},
		{"env key", "/v1/models", bearer(envKey), 200, envID(envKey)},
		{"no header", "/v1/models", nil, 401, ""},
		{"wrong secret", "/v1/models", bearer(wrongSecret), 401, ""},
		{"unknown id", "/v1/models", bearer(unknownID), 401, ""},
		{"truncated", "/v1/models", bearer(k[:len(k)-12]), 401, ""},
		{"trailing text", "/v1/models", bearer(k + " x"), 401, ""},
		{"lowercase bearer", "/v1/models", []string{"bearer " + k}, 401, ""},
		{"two headers", "/v1/models", []string{"Bearer " + k, "Bearer " + k}, 401, ""},
		{"key in query", "/v1/models?api_key=" + k, nil, 401, ""},
		{"key in query and header", "/v1/models?api_key=" + k, bearer(k), 401, ""},
		{"public path", "/v1/files/x.png", nil, 200, ""},
	}
	bodies := map[string]string{}
	for _, tt := range tests {
		r := b.do(t, "GET", tt.path, tt.auth, "")
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.status, tt.status, r.body)
			continue
		}
		bodies[tt.name] = r.body
		if r.status == 401 {
			if code := errorCode(t, r.body); code != "invalid_api_key" {
				t.Errorf("%s: code %q, want invalid_api_key", tt.name, code)
			}
			if strings.Contains(r.body, secret) {
				t.Errorf("%s: the 401 echoes the key", tt.name)
			}
			continue
		}
		var who whoamiResponse
		if err := json.Unmarshal([]byte(r.body), &who); err != nil {
			t.Fatal(err)
		}
		if who.KeyID != tt.keyID || who.ServerKeyID != tt.keyID {
			t.Errorf("%s: identity %q, server.KeyID %q; want %q", tt.name, who.KeyID, who.ServerKeyID, tt.keyID)
		}
	}
	if bodies["unknown id"] != bodies["wrong secret"] {
		t.Errorf("unknown id and wrong secret differ:\n%s\n%s", bodies["unknown id"], bodies["wrong secret"])
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func envID(k string) string {
	d := sha256.Sum256([]byte(k))
	return hex.EncodeToString(d[:])[:12]
}

// TestKeyStorage is A1: the key's secret is shown once, and appears in no
// byte of the database files nor in any listing.
func TestKeyStorage(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{env: []string{envKey}})
	r := b.do(t, "POST", "/admin/keys", bearer(envKey), `{"name":"canary","limits":{"images_per_day":7}}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created keys.Created
	if err := json.Unmarshal([]byte(r.body), &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Key, "sk-user_"+created.ID+"_") || !strings.HasPrefix(created.WebhookSecret, "whsec_") {
		t.Fatalf("created = %+v", created)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
	}
	canary := created.Key[strings.LastIndex(created.Key, "_")+1:]
	wantPrefix := "sk-user_" + created.ID + "_…" + canary[len(canary)-4:]
	if created.Prefix != wantPrefix {
		t.Errorf("prefix %q, want %q", created.Prefix, wantPrefix)
	}
	// The key works, so the stored form is the real one.
	if r := b.do(t, "GET", "/v1/models", bearer(created.Key), ""); r.status != 200 {
		t.Fatalf("new key: %d", r.status)
	}

	list := b.do(t, "GET", "/admin/keys", bearer(envKey), "")
	cliList, err := b.svc.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := json.Marshal(cliList)
	if err := b.st.Close(); err != nil { // flush the WAL into the file
		t.Fatal(err)
	}
	dumps := map[string][]byte{"list": []byte(list.body), "ListKeys": listed}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(b.path + suffix)
		if err == nil {
			dumps["db"+suffix] = data
		}
	}
	if len(dumps["db"]) == 0 {
		t.Fatal("database file is empty")
	}
	for name, data := range dumps {
		for _, needle := range []string{canary, canary[:16], canary[len(canary)-16:]} {
			if bytes.Contains(data, []byte(needle)) {
				t.Errorf("%s holds part of the key's secret", name)
			}
		}
	}
	if !strings.Contains(list.body, wantPrefix) || strings.Contains(list.body, "whsec_") || strings.Contains(list.body, "hash") {
		t.Errorf("listing shows more than the prefix: %s", list.body)
	}
}

// TestScopes is A3: a user key cannot reach /admin, an admin key can, and a
// revoked key gets 401 on its very next request.
func TestScopes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	admin := b.mustCreate(t, keys.Spec{Name: "admin", Admin: true})
	user := b.mustCreate(t, keys.Spec{Name: "user"})

	for _, tt := range []struct {
		name, method, path string
		key                string
		status             int
	}{
		{"user lists", "GET", "/admin/keys", user.Key, 403},
		{"user creates", "POST", "/admin/keys", user.Key, 403},
		{"user revokes", "DELETE", "/admin/keys/" + admin.ID, user.Key, 403},
		{"admin lists", "GET", "/admin/keys", admin.Key, 200},
		{"user reads own secret", "GET", "/v1/webhooks/secret", user.Key, 200},
	} {
		body := ""
		if tt.method == "POST" {
			body = `{"name":"x"}`
		}
		r := b.do(t, tt.method, tt.path, bearer(tt.key), body)
		if r.status != tt.status {
			t.Errorf("%s: %d, want %d: %s", tt.name, r.status, tt.status, r.body)
		}
		if tt.status == 403 && errorCode(t, r.body) != "insufficient_scope" {
			t.Errorf("%s: %s, want insufficient_scope", tt.name, r.body)
		}
	}
	var who whoamiResponse
	r := b.do(t, "GET", "/v1/models", bearer(admin.Key), "")
	if err := json.Unmarshal([]byte(r.body), &who); err != nil || !who.Admin || !who.ServerAdmin {
		t.Errorf("admin identity = %+v, %v", who, err)
	}

	// Revocation through the API is effective at once: the next request,
	// well within a second, is refused.
	start := time.Now()
	r = b.do(t, "DELETE", "/admin/keys/"+user.ID, bearer(admin.Key), "")
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	var info keys.KeyInfo
	if err := json.Unmarshal([]byte(r.body), &info); err != nil || info.RevokedAt == nil || info.ID != user.ID {
		t.Fatalf("revoke answer = %+v, %v", info, err)
	}
	if r := b.do(t, "GET", "/v1/models", bearer(user.Key), ""); r.status != 401 {
		t.Errorf("revoked key: %d, want 401", r.status)
	}
	if time.Since(start) > time.Second {
		t.Errorf("revocation took %v", time.Since(start))
	}
	if r := b.do(t, "DELETE", "/admin/keys/nope1234", bearer(admin.Key), ""); r.status != 404 || errorCode(t, r.body) != "key_not_found" {
		t.Errorf("revoke unknown: %d %s", r.status, r.body)
	}
}

// TestBruteForce is A14: after 20 failures a minute from one address every
// request from it gets 429, the same for unknown ids and wrong secrets,
// and even for a right key (no oracle); other addresses are not affected.
func TestBruteForce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	good := b.mustCreate(t, keys.Spec{Name: "good"})
	secret := good.Key[strings.LastIndex(good.Key, "_")+1:]
	var got401, got429 []string
	for i := range 1000 {
		k := "sk-user_" + good.ID + "_" + strings.Repeat("x", 40) + strconv.Itoa(i%10)
		if i%2 == 0 {
			k = "sk-user_" + strconv.Itoa(10_000_000+i) + "_" + secret
		}
		r := b.do(t, "GET", "/v1/models", bearer(k), "")
		switch r.status {
		case 401:
			got401 = append(got401, r.body)
		case 429:
			got429 = append(got429, r.body)
			if i == 20 && (r.header.Get("Retry-After") == "" || errorCode(t, r.body) != "rate_limit_exceeded") {
				t.Errorf("429 lacks Retry-After or code: %v %s", r.header, r.body)
			}
		default:
			t.Fatalf("attempt %d: status %d", i, r.status)
		}
	}
	if len(got401) != keys.DefaultMaxFailures || len(got429) != 1000-keys.DefaultMaxFailures {
		t.Errorf("%d 401s and %d 429s, want %d and %d", len(got401), len(got429), keys.DefaultMaxFailures, 1000-keys.DefaultMaxFailures)
	}
	for _, set := range [][]string{got401, got429} {
		for _, body := range set {
			if body != set[0] {
				t.Fatalf("responses differ:\n%s\n%s", set[0], body)
			}
		}
	}
	if r := b.do(t, "GET", "/v1/models", bearer(good.Key), ""); r.status != 429 {
		t.Errorf("right key from a blocked address: %d, want 429", r.status)
	}
	// The block lifts as the window passes.
	b.clock.Add(keys.DefaultFailureWindow / time.Duration(keys.DefaultMaxFailures))
	if r := b.do(t, "GET", "/v1/models", bearer(good.Key), ""); r.status != 200 {
		t.Errorf("right key after the wait: %d, want 200", r.status)
	}
}

func TestBruteForcePerClient(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{trustProxy: true})
	good := b.mustCreate(t, keys.Spec{Name: "good"})
	send := func(from, key string) int {
		t.Helper()
		return b.doFrom(t, from, "Bearer "+key)
	}
	for range keys.DefaultMaxFailures + 1 {
		send("203.0.113.9", good.Key+"x")
	}
	if got := send("203.0.113.9", good.Key); got != 429 {
		t.Errorf("blocked client: %d, want 429", got)
	}
	if got := send("198.51.100.7", good.Key); got != 200 {
		t.Errorf("other client: %d, want 200", got)
	}
	// Malformed credentials are guesses too.
	for range keys.DefaultMaxFailures + 1 {
		b.doFrom(t, "192.0.2.44", "Basic "+good.Key)
	}
	if got := send("192.0.2.44", good.Key); got != 429 {
		t.Errorf("after malformed keys: %d, want 429", got)
	}
	// IPv6 clients count per /64.
	for range keys.DefaultMaxFailures + 1 {
		send("2001:db8:1:2::1", good.Key+"x")
	}
	if got := send("2001:db8:1:2::ffff", good.Key); got != 429 {
		t.Errorf("same /64: %d, want 429", got)
	}
	if got := send("2001:db8:1:3::1", good.Key); got != 200 {
		t.Errorf("other /64: %d, want 200", got)
	}
}

func (b *bundle) doFrom(t *testing.T, from, authorization string) int {
	t.Helper()
	req, err := newRequest(t, b.srv.URL+"/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("X-Forwarded-For", "10.0.0.1, "+from)
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEnvKeys: operator keys are admins with the default limits and a
// webhook secret derived from the signing key; each key reads its own
// secret.
func TestEnvKeys(t *testing.T) {
	t.Parallel()
	defaults := keys.Limits{RequestsPerMinute: 100, ConcurrentJobs: 3, ImagesPerDay: 50}
	b := setup(t, setupOpts{env: []string{envKey}, defaults: defaults})
	var who whoamiResponse
	r := b.do(t, "GET", "/v1/models", bearer(envKey), "")
	if err := json.Unmarshal([]byte(r.body), &who); err != nil {
		t.Fatal(err)
	}
	want := whoamiResponse{KeyID: envID(envKey), ServerKeyID: envID(envKey), Admin: true, ServerAdmin: true, HasIdentity: true, Limits: defaults}
	if diff := cmp.Diff(want, who); diff != "" {
		t.Errorf("env identity (-want +got):\n%s", diff)
	}
	m := hmac.New(sha256.New, signingKey)
	m.Write([]byte("easel webhook secret v1:" + envID(envKey)))
	wantSecret := "whsec_" + base64.StdEncoding.EncodeToString(m.Sum(nil)[:32])

	user := b.mustCreate(t, keys.Spec{Name: "u", WebhookURL: "https://hooks.example/u"})
	for _, tt := range []struct {
		key, keyID, secret string
	}{
		{envKey, envID(envKey), wantSecret},
		{user.Key, user.ID, user.WebhookSecret},
	} {
		r := b.do(t, "GET", "/v1/webhooks/secret", bearer(tt.key), "")
		var got struct {
			KeyID  string `json:"key_id"`
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != 200 {
			t.Fatalf("secret: %d %s", r.status, r.body)
		}
		if got.KeyID != tt.keyID || got.Secret != tt.secret {
			t.Errorf("secret of %s = %+v, want %s", tt.keyID, got, tt.secret)
		}
	}
	r = b.do(t, "GET", "/v1/models", bearer(user.Key), "")
	if err := json.Unmarshal([]byte(r.body), &who); err != nil || who.WebhookURL != "https://hooks.example/u" || who.Admin {
		t.Errorf("user identity = %+v, %v", who, err)
	}
}

// TestAuthTurnsOn: with no keys anywhere requests pass without identity;
// the first database key turns auth on within a second, and revoking it
// does not turn auth off again.
func TestAuthTurnsOn(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	r := b.do(t, "GET", "/v1/models", nil, "")
	var who whoamiResponse
	if err := json.Unmarshal([]byte(r.body), &who); err != nil || r.status != 200 || who.HasIdentity || who.KeyID != "" {
		t.Fatalf("auth off: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/admin/keys", nil, ""); r.status != 403 {
		t.Errorf("admin API with auth off: %d, want 403", r.status)
	}
	if r := b.do(t, "GET", "/v1/webhooks/secret", nil, ""); r.status != 200 || !strings.Contains(r.body, "whsec_") {
		t.Errorf("anonymous webhook secret: %d %s", r.status, r.body)
	}
	k := b.mustCreate(t, keys.Spec{Name: "first"})
	// Still believed off for under a second.
	if r := b.do(t, "GET", "/v1/models", nil, ""); r.status != 200 {
		t.Errorf("within the recheck interval: %d, want 200", r.status)
	}
	b.clock.Add(keys.EnabledRecheck)
	if r := b.do(t, "GET", "/v1/models", nil, ""); r.status != 401 {
		t.Errorf("after the first key: %d, want 401", r.status)
	}
	if _, err := b.svc.RevokeKey(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(time.Minute)
	if r := b.do(t, "GET", "/v1/models", nil, ""); r.status != 401 {
		t.Errorf("after revoking the only key: %d, want 401 (auth stays on)", r.status)
	}
	on, err := b.svc.Enabled(t.Context())
	if err != nil || !on {
		t.Errorf("Enabled = %v, %v", on, err)
	}
}

// TestLastUsed: a successful request records the key's use.
func TestLastUsed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	k := b.mustCreate(t, keys.Spec{Name: "u"})
	if r := b.do(t, "GET", "/v1/models", bearer(k.Key), ""); r.status != 200 {
		t.Fatal(r.status)
	}
	rec, err := b.st.Keys().ByID(t.Context(), k.ID)
	if err != nil || !rec.LastUsed.Equal(b.clock.Now()) {
		t.Errorf("LastUsed = %v, %v; want %v", rec.LastUsed, err, b.clock.Now())
	}
}
