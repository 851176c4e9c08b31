package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/easelgw/easel/internal/server"
)

type ctxMark struct{}

// fakeAuthn accepts "Bearer good" as key k1 with the user scope, answers
// 429 to "Bearer slow", and 401 to anything else.
type fakeAuthn struct{}

func (fakeAuthn) Authenticate(w http.ResponseWriter, r *http.Request) (context.Context, server.Principal, bool) {
	key, _, ok := server.BearerKey(r)
	switch {
	case ok && key == "good":
		return context.WithValue(r.Context(), ctxMark{}, "marked"), server.Principal{KeyID: "k1", Scopes: []string{"user"}}, true
	case ok && key == "admin":
		return r.Context(), server.Principal{KeyID: "k2", Scopes: []string{"admin", "user"}}, true
	case ok && key == "slow":
		server.WriteError(w, http.StatusTooManyRequests, "requests", "rate_limit_exceeded", "slow down")
		return nil, server.Principal{}, false
	}
	server.WriteUnauthorized(w)
	return nil, server.Principal{}, false
}

func TestAuthenticator(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mark, _ := r.Context().Value(ctxMark{}).(string)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"key_id": server.KeyID(r.Context()),
			"scopes": server.Scopes(r.Context()),
			"admin":  server.IsAdmin(r.Context()),
			"mark":   mark,
		})
	})
	srv, logs := newServer(t, server.Options{Handler: mux, Authenticator: fakeAuthn{}, PublicPaths: []string{"/v1/files/"}})
	tests := []struct {
		name, path, auth string
		status           int
		keyID            string
		admin            bool
		mark             string
	}{
		{"accepted", "/v1/models", "Bearer good", 200, "k1", false, "marked"},
		{"admin", "/v1/models", "Bearer admin", 200, "k2", true, ""},
		{"refused", "/v1/models", "Bearer bad", 401, "", false, ""},
		{"authenticator's own answer", "/v1/models", "Bearer slow", 429, "", false, ""},
		{"public path skips it", "/v1/files/a.png", "Bearer bad", 200, "", false, ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", tt.auth)
		resp, body := send(t, req)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d: %s", tt.name, resp.StatusCode, tt.status, body)
			continue
		}
		if tt.status != 200 {
			continue
		}
		var got struct {
			KeyID  string   `json:"key_id"`
			Scopes []string `json:"scopes"`
			Admin  bool     `json:"admin"`
			Mark   string   `json:"mark"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got.KeyID != tt.keyID || got.Admin != tt.admin || got.Mark != tt.mark {
			t.Errorf("%s: got %+v", tt.name, got)
		}
		if tt.keyID != "" && !slices.Contains(got.Scopes, "user") {
			t.Errorf("%s: scopes %v", tt.name, got.Scopes)
		}
	}
	if !strings.Contains(logs.String(), `"key_id":"k1"`) {
		t.Error("the access log lacks the authenticated key id")
	}
}

func TestAuthenticatorAndKeysExclusive(t *testing.T) {
	t.Parallel()
	if _, err := server.New(server.Options{Handler: echo(), APIKeys: []string{key1}, Authenticator: fakeAuthn{}}); err == nil {
		t.Error("APIKeys and Authenticator together accepted")
	}
}

func TestEnvKeysAreAdmins(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(server.IsAdmin(r.Context()))
	})
	srv, _ := newServer(t, server.Options{Handler: mux, APIKeys: []string{key1}})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+key1)
	if resp, body := send(t, req); resp.StatusCode != 200 || body != "true\n" {
		t.Errorf("env key admin = %d %q", resp.StatusCode, body)
	}
}

func TestBearerKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		url               string
		auth              []string
		key               string
		presented, wantOK bool
	}{
		{"none", "/x", nil, "", false, false},
		{"bearer", "/x", []string{"Bearer k"}, "k", true, true},
		{"basic", "/x", []string{"Basic k"}, "", true, false},
		{"two", "/x", []string{"Bearer k", "Bearer k"}, "", true, false},
		{"query", "/x?api_key=k", nil, "", true, false},
		{"query and header", "/x?token=k", []string{"Bearer k"}, "", true, false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(http.MethodGet, "http://h"+tt.url, nil)
		for _, a := range tt.auth {
			r.Header.Add("Authorization", a)
		}
		key, presented, ok := server.BearerKey(r)
		if key != tt.key || presented != tt.presented || ok != tt.wantOK {
			t.Errorf("%s: BearerKey = %q, %v, %v; want %q, %v, %v", tt.name, key, presented, ok, tt.key, tt.presented, tt.wantOK)
		}
	}
}
