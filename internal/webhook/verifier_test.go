package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file holds a receiver-side verifier written from the Standard
// Webhooks spec alone. It shares no code with the package's signer, so a
// signer bug cannot be mirrored by a matching verifier bug.

var (
	errMissingHeader = errors.New("verifier: missing webhook header")
	errBadTimestamp  = errors.New("verifier: webhook-timestamp is not an integer")
	errStale         = errors.New("verifier: webhook-timestamp outside tolerance")
	errNoSignature   = errors.New("verifier: no signature matches")
)

// verifier checks deliveries the way a consumer would.
type verifier struct {
	keys      [][]byte
	tolerance time.Duration
}

// newVerifier decodes "whsec_" secrets on its own, as a receiver would.
func newVerifier(t testing.TB, secrets ...string) *verifier {
	t.Helper()
	v := &verifier{tolerance: 5 * time.Minute}
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil {
			t.Fatalf("test secret does not decode: %v", err)
		}
		v.keys = append(v.keys, key)
	}
	return v
}

// sigEntry is one "version,signature" item of webhook-signature.
type sigEntry struct {
	version string
	sig     []byte
}

// parseSignatures splits a webhook-signature value into its entries,
// skipping any that are not "version,base64".
func parseSignatures(header string) []sigEntry {
	var out []sigEntry
	for _, item := range strings.Split(header, " ") {
		version, b64, ok := strings.Cut(item, ",")
		if !ok || version == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		out = append(out, sigEntry{version: version, sig: raw})
	}
	return out
}

// verify checks one delivery's headers and body at time now.
func (v *verifier) verify(id, ts, sigHeader string, body []byte, now time.Time) error {
	if id == "" || ts == "" || sigHeader == "" {
		return errMissingHeader
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errBadTimestamp
	}
	sent := time.Unix(secs, 0)
	if now.Sub(sent) > v.tolerance || sent.Sub(now) > v.tolerance {
		return errStale
	}
	content := []byte(id + "." + ts + ".")
	content = append(content, body...)
	entries := parseSignatures(sigHeader)
	for _, key := range v.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write(content)
		want := mac.Sum(nil)
		for _, e := range entries {
			if e.version == "v1" && hmac.Equal(e.sig, want) {
				return nil
			}
		}
	}
	return errNoSignature
}

// verifyRequest reads the three headers from h.
func (v *verifier) verifyRequest(h http.Header, body []byte, now time.Time) error {
	return v.verify(h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), body, now)
}

func TestVerifierRejects(t *testing.T) {
	t.Parallel()
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	v := newVerifier(t, secret)
	id, ts, body := "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`)
	good := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	at := time.Unix(1614265330, 0)
	tests := []struct {
		name        string
		id, ts, sig string
		body        []byte
		now         time.Time
		want        error
	}{
		{name: "valid", id: id, ts: ts, sig: good, body: body, now: at},
		{name: "valid among others", id: id, ts: ts, sig: "v1a,AAAA v1,Zm9v " + good, body: body, now: at},
		{name: "4m59s late", id: id, ts: ts, sig: good, body: body, now: at.Add(5*time.Minute - time.Second)},
		{name: "6 min late", id: id, ts: ts, sig: good, body: body, now: at.Add(6 * time.Minute), want: errStale},
		{name: "6 min early", id: id, ts: ts, sig: good, body: body, now: at.Add(-6 * time.Minute), want: errStale},
		{name: "body changed", id: id, ts: ts, sig: good, body: []byte(`{"test": 2432232315}`), now: at, want: errNoSignature},
		{name: "id changed", id: id + "x", ts: ts, sig: good, body: body, now: at, want: errNoSignature},
		{name: "timestamp changed", id: id, ts: "1614265331", sig: good, body: body, now: at, want: errNoSignature},
		{name: "wrong version", id: id, ts: ts, sig: "v2" + good[2:], body: body, now: at, want: errNoSignature},
		{name: "truncated", id: id, ts: ts, sig: good[:20], body: body, now: at, want: errNoSignature},
		{name: "no id", ts: ts, sig: good, body: body, now: at, want: errMissingHeader},
		{name: "bad timestamp", id: id, ts: "16142653e3", sig: good, body: body, now: at, want: errBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := v.verify(tc.id, tc.ts, tc.sig, tc.body, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzVerifySignatureHeader feeds arbitrary signature headers, ids and
// bodies to the verifier, and cross-checks it against the package signer.
func FuzzVerifySignatureHeader(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "msg_p5jXN8AQM9LWM0D4loKWxJek", int64(1614265330), []byte(`{"test": 2432232314}`))
	f.Add("v1,abc v1a,xyz", "msg_1", int64(0), []byte{})
	f.Add("  ,, v1, v1,=== ,v1", "a", int64(-1), []byte("x"))
	f.Add(strings.Repeat("v1,AAAA ", 64), "msg_2", int64(1<<40), []byte("{}"))
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	signer, err := NewSigner(secret)
	if err != nil {
		f.Fatal(err)
	}
	v := newVerifier(f, secret)
	f.Fuzz(func(t *testing.T, header, id string, ts int64, body []byte) {
		at := time.Unix(ts, 0)
		tsHeader := strconv.FormatInt(ts, 10)
		_ = parseSignatures(header)
		err := v.verify(id, tsHeader, header, body, at)

		want := signer.Sign(id, at, body)
		exact := slices.Contains(strings.Split(header, " "), want)
		if id != "" && header != "" && exact && err != nil {
			t.Fatalf("header holds the signer's signature %q but verify = %v", want, err)
		}
		if err == nil {
			// Accepted: some entry must decode to the signer's MAC (a
			// non-canonical base64 spelling of it is acceptable).
			wantSig := parseSignatures(want)[0].sig
			ok := false
			for _, e := range parseSignatures(header) {
				ok = ok || e.version == "v1" && hmac.Equal(e.sig, wantSig)
			}
			if !ok {
				t.Fatalf("verify accepted %q without the signer's MAC", header)
			}
		}

		// Round trip: what the package signs, the verifier accepts; a
		// changed body is refused.
		if id == "" {
			return
		}
		if err := v.verify(id, tsHeader, want, body, at); err != nil {
			t.Fatalf("signer output %q rejected: %v", want, err)
		}
		tampered := append(append([]byte(nil), body...), '!')
		if err := v.verify(id, tsHeader, want, tampered, at); err == nil {
			t.Fatal("tampered body accepted")
		}
	})
}
