package store

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNewKeyFormat(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^sk-(admin|user)_([a-z0-9]{8})_([A-Za-z0-9]{43})$`)
	seen := map[string]bool{}
	for _, kind := range []string{KindUser, KindAdmin, KindUser, KindAdmin} {
		plain, rec, err := NewKey(kind)
		if err != nil {
			t.Fatalf("NewKey(%s): %v", kind, err)
		}
		m := shape.FindStringSubmatch(plain)
		if m == nil || m[1] != kind {
			t.Fatalf("NewKey(%s) = %q, not sk-%s_<8 id>_<43 base62>", kind, plain, kind)
		}
		if seen[plain] || seen[rec.ID] {
			t.Fatalf("NewKey repeated itself: %q", plain)
		}
		seen[plain], seen[rec.ID] = true, true
		if rec.ID != m[2] {
			t.Errorf("rec.ID = %q, want the key's id %q", rec.ID, m[2])
		}
		wantPrefix := "sk-" + kind + "_" + m[2] + "_…" + m[3][len(m[3])-4:]
		if rec.Prefix != wantPrefix {
			t.Errorf("rec.Prefix = %q, want %q", rec.Prefix, wantPrefix)
		}
		if strings.Contains(rec.Prefix, m[3][:8]) {
			t.Errorf("rec.Prefix %q shows the start of the secret", rec.Prefix)
		}
		if len(rec.Scopes) != 1 || rec.Scopes[0] != kind || rec.Hash != nil || rec.Revoked != nil {
			t.Errorf("rec = %+v, want scope %s, no hash, not revoked", rec, kind)
		}
		if time.Since(rec.Created) > time.Minute || rec.Created.Location() != time.UTC {
			t.Errorf("rec.Created = %v, want now in UTC", rec.Created)
		}
		if id, ok := ParseKey(plain); !ok || id != rec.ID {
			t.Errorf("ParseKey(NewKey()) = %q, %v", id, ok)
		}
	}
	for _, bad := range []string{"", "root", "USER", "user_x"} {
		if _, _, err := NewKey(bad); err == nil {
			t.Errorf("NewKey(%q) succeeded, want an error", bad)
		}
	}
}

func TestRandomStringUniform(t *testing.T) {
	t.Parallel()
	// 62*2000 draws: every character must appear, and none wildly more
	// than its share (a modulo bias would favour the first 8 by 1/31,
	// too small to see here; this catches a broken alphabet walk).
	s, err := randomString(base62Alphabet, 62*2000)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[rune]int{}
	for _, r := range s {
		counts[r]++
	}
	if len(counts) != 62 {
		t.Fatalf("saw %d distinct characters, want 62", len(counts))
	}
	for r, n := range counts {
		if n < 1500 || n > 2500 {
			t.Errorf("character %q drawn %d times, want about 2000", r, n)
		}
	}
}

func TestHashKnownAnswer(t *testing.T) {
	t.Parallel()
	// RFC 4231, test case 2.
	got := hex.EncodeToString(Hash([]byte("Jefe"), "what do ya want for nothing?"))
	want := "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("aZ9", 11) // 33 characters
	tests := []struct {
		in     string
		wantID string
		ok     bool
	}{
		{"sk-user_abcd1234_" + secret, "abcd1234", true},
		{"sk-admin_0000zzzz_" + secret[:32], "0000zzzz", true},
		{"sk-user_abcd1234_" + secret[:31], "", false},                // secret too short
		{"sk-user_abcd1234_" + secret + " ", "", false},               // trailing space
		{" sk-user_abcd1234_" + secret, "", false},                    // leading space
		{"Bearer sk-user_abcd1234_" + secret, "", false},              // scheme left on
		{"sk_user_abcd1234_" + secret, "", false},                     // wrong prefix
		{"sk-User_abcd1234_" + secret, "", false},                     // uppercase kind
		{"sk-_abcd1234_" + secret, "", false},                         // empty kind
		{"sk-user_abcd123_" + secret, "", false},                      // short id
		{"sk-user_abcd12345_" + secret, "", false},                    // long id
		{"sk-user_ABCD1234_" + secret, "", false},                     // uppercase id
		{"sk-user_abcd1234_" + secret[:20] + "-" + secret, "", false}, // bad character
		{"sk-user_abcd1234_" + secret + "_x", "", false},              // extra part
		{"sk-user_abcd1234", "", false},
		{"sk-user_abcd1234_" + strings.Repeat("a", 129), "", false}, // over-long
		{"sk-user_abcd1234_" + strings.Repeat("é", 20), "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		id, ok := ParseKey(tt.in)
		if id != tt.wantID || ok != tt.ok {
			t.Errorf("ParseKey(%q) = %q, %v; want %q, %v", tt.in, id, ok, tt.wantID, tt.ok)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	pepper := []byte("pepper-for-tests")
	plain, rec, err := NewKey(KindUser)
	if err != nil {
		t.Fatal(err)
	}
	rec.Hash = Hash(pepper, plain)
	if !Verify(&rec, pepper, plain) {
		t.Fatal("Verify(right key) = false")
	}
	_, other, err := NewKey(KindUser)
	if err != nil {
		t.Fatal(err)
	}
	last := plain[len(plain)-1]
	flipped := plain[:len(plain)-1] + string(map[bool]byte{true: 'A', false: 'B'}[last != 'A'])
	revoked := rec
	at := time.Now()
	revoked.Revoked = &at
	otherID := rec
	otherID.ID = other.ID
	tests := []struct {
		name   string
		rec    *KeyRecord
		pepper []byte
		plain  string
	}{
		{"wrong secret", &rec, pepper, flipped},
		{"wrong pepper", &rec, []byte("other"), plain},
		{"truncated", &rec, pepper, plain[:len(plain)-12]},
		{"trailing space", &rec, pepper, plain + " "},
		{"record of another id", &otherID, pepper, plain},
		{"revoked", &revoked, pepper, plain},
		{"nil record", nil, pepper, plain},
		{"empty key", &rec, pepper, ""},
	}
	for _, tt := range tests {
		if Verify(tt.rec, tt.pepper, tt.plain) {
			t.Errorf("Verify(%s) = true, want false", tt.name)
		}
	}
	// The stored forms never contain the secret.
	secret := plain[strings.LastIndexByte(plain, '_')+1:]
	for _, stored := range []string{rec.Prefix, string(rec.Hash), hex.EncodeToString(rec.Hash), base64.StdEncoding.EncodeToString(rec.Hash)} {
		if strings.Contains(stored, secret) || strings.Contains(stored, secret[:16]) {
			t.Errorf("stored form %q contains the secret", stored)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("sk-user_abcd1234_" + strings.Repeat("x", 40))
	f.Add("sk-admin__")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ParseKey(s)
		if !ok {
			if id != "" {
				t.Fatalf("ParseKey(%q) returned id %q without ok", s, id)
			}
			return
		}
		if len(id) != KeyIDLen || !strings.Contains(s, "_"+id+"_") {
			t.Fatalf("ParseKey(%q) = %q, not the key's id", s, id)
		}
	})
}
