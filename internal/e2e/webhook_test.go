package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// signedHookSink verifies Standard Webhooks signatures as the spec writes
// them: base64 HMAC-SHA256 over "id.timestamp.body" keyed with the
// base64-decoded part of the secret after "whsec_", compared in constant
// time, timestamps within 5 minutes.
type signedHookSink struct {
	srv *httptest.Server

	mu       sync.Mutex
	secret   string
	messages []signedHook
	bad      int
}

type signedHook struct {
	id   string
	body []byte
}

func newSignedHookSink(t *testing.T) *signedHookSink {
	h := &signedHookSink{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.verify(r.Header, body) {
			h.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.messages = append(h.messages, signedHook{r.Header.Get("webhook-id"), body})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *signedHookSink) verify(hd http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return false
	}
	ts := hd.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(hd.Get("webhook-id") + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(hd.Get("webhook-signature")) {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
			return true
		}
	}
	return false
}

// TestWebhookFromKeyDefaults: an admin makes a database key with a
// default webhook URL; that key's async job, naming no webhook, is
// announced to it, signed with the secret shown at the key's creation.
func TestWebhookFromKeyDefaults(t *testing.T) {
	t.Parallel()
	hook := newSignedHookSink(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(hook.srv.URL, "http://"))
	b := setup(t, scenario{
		extraTop: "webhooks:\n  allow_private_networks: true\n  allowed_ports: [" + port + "]\n",
	})

	// The environment key is the operator's admin key.
	body, _ := json.Marshal(map[string]any{"name": "app", "webhook_url": hook.srv.URL + "/easel"})
	resp, data := b.do(t, http.MethodPost, "/admin/keys", testKey, body)
	var created struct {
		ID            string `json:"id"`
		Key           string `json:"key"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &created) != nil || created.Key == "" || !strings.HasPrefix(created.WebhookSecret, "whsec_") {
		t.Fatalf("creating a key: %d %s", resp.StatusCode, data)
	}
	hook.mu.Lock()
	hook.secret = created.WebhookSecret
	hook.mu.Unlock()

	// The key reads the same secret back.
	resp, data = b.do(t, http.MethodGet, "/v1/webhooks/secret", created.Key, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), created.WebhookSecret) {
		t.Errorf("GET /v1/webhooks/secret: %d %s", resp.StatusCode, data)
	}

	job := submitAsyncGen(t, b, created.Key, "announce me")
	if job.WebhookURL != hook.srv.URL+"/easel" {
		t.Errorf("job webhook_url %q, want the key's default", job.WebhookURL)
	}
	if got := pollJob(t, b, created.Key, job.ID); got.Status != "succeeded" {
		t.Fatalf("job ended %s", got.Status)
	}
	var msgs []signedHook
	waitFor(t, 20*time.Second, "the webhook", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		msgs = append([]signedHook(nil), hook.messages...)
		return len(msgs) > 0 || hook.bad > 0
	})
	hook.mu.Lock()
	bad := hook.bad
	hook.mu.Unlock()
	if bad > 0 || len(msgs) != 1 {
		t.Fatalf("%d deliveries failed verification, %d verified", bad, len(msgs))
	}
	var payload struct {
		Type string `json:"type"`
		Data struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Data   []struct {
				URL string `json:"url"`
			} `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal(msgs[0].body, &payload); err != nil {
		t.Fatalf("payload: %v: %s", err, msgs[0].body)
	}
	if payload.Type != "image.job.succeeded" || payload.Data.ID != job.ID || payload.Data.Status != "succeeded" || len(payload.Data.Data) != 1 {
		t.Errorf("payload %s", msgs[0].body)
	}
	// The result link in the payload is the gateway's own and works.
	if resp, _ := b.do(t, http.MethodGet, payload.Data.Data[0].URL, "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("result URL from the webhook: %d", resp.StatusCode)
	}
}
