package blob

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func testSigner(t *testing.T, now time.Time) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now }
	return s
}

func TestNewSignerKeyLength(t *testing.T) {
	t.Parallel()
	if _, err := NewSigner(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
	if _, err := NewSigner(make([]byte, 32)); err != nil {
		t.Fatalf("32-byte key refused: %v", err)
	}
}

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := testSigner(t, now)
	key := strings.Repeat("ab", 32) + ".png"
	u := s.URL("http://127.0.0.1:8080", key, time.Hour)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Path != "/v1/files/"+key || parsed.Host != "127.0.0.1:8080" {
		t.Fatalf("URL = %s", u)
	}
	q := parsed.Query()
	if q.Get("exp") != "1800003600" {
		t.Fatalf("exp = %q", q.Get("exp"))
	}
	if sig := q.Get("sig"); strings.ContainsAny(sig, "=+/") || len(sig) != 43 {
		t.Fatalf("sig %q is not unpadded base64url of 32 bytes", sig)
	}
	if err := s.Verify(key, q.Get("exp"), q.Get("sig")); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// Just past expiry.
	late := testSigner(t, now.Add(time.Hour+time.Second))
	if err := late.Verify(key, q.Get("exp"), q.Get("sig")); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: err = %v", err)
	}
}

func TestSignerRefuses(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := testSigner(t, now)
	key := strings.Repeat("cd", 32) + ".webp"
	q := s.Query(key, time.Hour)
	exp, sig := q.Get("exp"), q.Get("sig")
	other, err := NewSigner([]byte(strings.Repeat("x", 32)))
	if err != nil {
		t.Fatal(err)
	}
	otherSig := other.Query(key, time.Hour).Get("sig")
	tests := []struct {
		name          string
		key, exp, sig string
	}{
		{"other key", strings.Repeat("ef", 32) + ".webp", exp, sig},
		{"extended expiry", key, "1900000000", sig},
		{"other secret", key, exp, otherSig},
		{"empty sig", key, exp, ""},
		{"garbage sig", key, exp, "%%%not base64%%%"},
		{"short sig", key, exp, "AAAA"},
		{"padded sig", key, exp, sig + "="},
		{"garbage exp", key, "soon", sig},
		{"empty everything", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := s.Verify(tc.key, tc.exp, tc.sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("err = %v, want ErrBadSignature", err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	q := s.Query("a.png", time.Hour)
	f.Add("a.png", q.Get("exp"), q.Get("sig"))
	f.Add("", "-1", "")
	f.Fuzz(func(t *testing.T, key, exp, sig string) {
		err := s.Verify(key, exp, sig)
		if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrExpired) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
