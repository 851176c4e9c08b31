package openaiapi

import (
	"bytes"
	"crypto/tls"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/blob"
)

func testSigner(t *testing.T) *blob.Signer {
	t.Helper()
	s, err := blob.NewSigner(bytes.Repeat([]byte("s"), 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOptions(t *testing.T) {
	t.Parallel()
	signer := testSigner(t)
	a, err := New(Options{Service: nopService{}, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if a.urlTTL != time.Hour || a.defaultFormat != "b64_json" || a.maxPromptChars != 32000 || a.maxN != 10 || a.heartbeat != 15*time.Second {
		t.Errorf("defaults: ttl %s format %s prompt %d n %d heartbeat %s", a.urlTTL, a.defaultFormat, a.maxPromptChars, a.maxN, a.heartbeat)
	}
	for name, o := range map[string]Options{
		"no service":     {Signer: signer},
		"no signer":      {Service: nopService{}},
		"ttl too long":   {Service: nopService{}, Signer: signer, URLTTL: 8 * 24 * time.Hour},
		"bad format":     {Service: nopService{}, Signer: signer, DefaultResponseFormat: "png"},
		"relative url":   {Service: nopService{}, Signer: signer, PublicURL: "img.example"},
		"url with query": {Service: nopService{}, Signer: signer, PublicURL: "https://img.example/?a=b"},
		"negative n":     {Service: nopService{}, Signer: signer, MaxN: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	signer := testSigner(t)
	cases := []struct {
		name       string
		public     string
		trust, tls bool
		proto      string
		want       string
	}{
		{"from host", "", false, false, "", "http://gw.example:8080"},
		{"tls", "", false, true, "", "https://gw.example:8080"},
		{"proxy header ignored", "", false, false, "https", "http://gw.example:8080"},
		{"proxy header trusted", "", true, false, "https", "https://gw.example:8080"},
		{"junk proxy header", "", true, false, "gopher", "http://gw.example:8080"},
		{"public url wins", "https://img.example/base/", true, false, "http", "https://img.example/base"},
	}
	for _, c := range cases {
		a, err := New(Options{Service: nopService{}, Signer: signer, PublicURL: c.public, TrustProxy: c.trust})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "http://gw.example:8080/v1/models", nil)
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if got := a.baseURL(r); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
