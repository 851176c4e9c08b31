package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The known-answer vector of the Standard Webhooks reference library.
const (
	katSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	katID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	katTS     = 1614265330
	katBody   = `{"test": 2432232314}`
	katSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{katSecret, strings.TrimPrefix(katSecret, SecretPrefix)} {
		s, err := NewSigner(secret)
		if err != nil {
			t.Fatalf("NewSigner: %v", err)
		}
		got := s.Sign(katID, time.Unix(katTS, 0), []byte(katBody))
		if got != katSig {
			t.Fatalf("Sign = %q, want %q", got, katSig)
		}
		// The timestamp is whole seconds: sub-second parts and the zone
		// must not change the signature.
		got = s.Sign(katID, time.Unix(katTS, 999_999_999).In(time.FixedZone("x", 3600)), []byte(katBody))
		if got != katSig {
			t.Fatalf("Sign with nanoseconds and zone = %q, want %q", got, katSig)
		}
	}
	v := newVerifier(t, katSecret)
	if err := v.verify(katID, "1614265330", katSig, []byte(katBody), time.Unix(katTS, 0)); err != nil {
		t.Fatalf("independent verifier rejects the KAT: %v", err)
	}
}

func TestSignerRotation(t *testing.T) {
	t.Parallel()
	current, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(current, katSecret)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"image.job.succeeded"}`)
	header := s.Sign("msg_rot", at, body)
	parts := strings.Split(header, " ")
	if len(parts) != 2 {
		t.Fatalf("rotation header has %d signatures, want 2: %q", len(parts), header)
	}
	for i, secret := range []string{current, katSecret} {
		v := newVerifier(t, secret)
		if err := v.verify("msg_rot", "1700000000", parts[i], body, at); err != nil {
			t.Errorf("signature %d does not verify with its own secret: %v", i, err)
		}
		if err := v.verify("msg_rot", "1700000000", parts[1-i], body, at); !errors.Is(err, errNoSignature) {
			t.Errorf("signature %d verifies with the other secret: %v", 1-i, err)
		}
		if err := v.verify("msg_rot", "1700000000", header, body, at); err != nil {
			t.Errorf("full header does not verify with secret %d: %v", i, err)
		}
	}
	// Each endpoint its own secret: another endpoint's receiver rejects.
	other, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := newVerifier(t, other).verify("msg_rot", "1700000000", header, body, at); !errors.Is(err, errNoSignature) {
		t.Errorf("unrelated secret verifies: %v", err)
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 20 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("secret %q lacks the whsec_ prefix", s)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret decodes to %d bytes (%v), want 32", len(raw), err)
		}
		key, err := ParseSecret(s)
		if err != nil || !bytes.Equal(key, raw) {
			t.Fatalf("ParseSecret(NewSecret()) = %x, %v", key, err)
		}
		if seen[s] {
			t.Fatal("NewSecret repeated a secret")
		}
		seen[s] = true
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, n)) }
	tests := []struct {
		name    string
		in      string
		wantLen int // 0 means an error is expected
	}{
		{name: "kat", in: katSecret, wantLen: 24},
		{name: "no prefix", in: strings.TrimPrefix(katSecret, "whsec_"), wantLen: 24},
		{name: "24 bytes", in: "whsec_" + b64(24), wantLen: 24},
		{name: "64 bytes", in: "whsec_" + b64(64), wantLen: 64},
		{name: "23 bytes", in: "whsec_" + b64(23)},
		{name: "65 bytes", in: "whsec_" + b64(65)},
		{name: "empty", in: ""},
		{name: "prefix only", in: "whsec_"},
		{name: "not base64", in: "whsec_!!!!" + b64(30)},
		{name: "unpadded", in: "whsec_" + strings.TrimRight(b64(25), "=")},
		{name: "url alphabet", in: "whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 30))},
		{name: "other prefix", in: "whsk_" + b64(32)},
		{name: "huge", in: "whsec_" + strings.Repeat("A", 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, err := ParseSecret(tc.in)
			if tc.wantLen == 0 {
				if !errors.Is(err, ErrSecret) {
					t.Fatalf("ParseSecret = %d bytes, %v; want ErrSecret", len(key), err)
				}
				if body := strings.TrimPrefix(tc.in, "whsec_"); len(body) >= 8 && strings.Contains(err.Error(), body[:8]) {
					t.Fatalf("error %q repeats the secret", err)
				}
				if _, err := NewSigner(katSecret, tc.in); !errors.Is(err, ErrSecret) {
					t.Fatalf("NewSigner with a bad second secret = %v, want ErrSecret", err)
				}
				return
			}
			if err != nil || len(key) != tc.wantLen {
				t.Fatalf("ParseSecret = %d bytes, %v; want %d", len(key), err, tc.wantLen)
			}
		})
	}
}

func TestNewSignerNoSecret(t *testing.T) {
	t.Parallel()
	if _, err := NewSigner(); !errors.Is(err, ErrSecret) {
		t.Fatalf("NewSigner() = %v, want ErrSecret", err)
	}
}

func TestSignerNeverPrintsSecret(t *testing.T) {
	t.Parallel()
	s, err := NewSigner(katSecret)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ParseSecret(katSecret)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "signer", s)
	outputs := []string{
		fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprint(s), logs.String(),
		fmt.Sprintf("%v", *s), fmt.Sprintf("%+v", []*Signer{s}),
	}
	for _, out := range outputs {
		if strings.Contains(out, "MfKQ9r8G") || strings.Contains(out, string(raw)) || strings.Contains(out, fmt.Sprint(raw[:4])) {
			t.Errorf("output leaks the secret: %q", out)
		}
	}
}

func FuzzParseSecret(f *testing.F) {
	f.Add(katSecret)
	f.Add("whsec_")
	f.Add("whsec_====")
	f.Add(strings.Repeat("A", 90))
	f.Fuzz(func(t *testing.T, in string) {
		key, err := ParseSecret(in)
		if err != nil {
			if !errors.Is(err, ErrSecret) {
				t.Fatalf("error %v is not ErrSecret", err)
			}
			return
		}
		if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
			t.Fatalf("accepted a %d-byte secret", len(key))
		}
	})
}
