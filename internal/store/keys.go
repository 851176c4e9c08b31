package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
)

// API key format: "sk-<kind>_<id>_<secret>". The "sk-" prefix and the kind
// let secret scanners spot a leaked key; the id lets the server find the
// record without a search over hashes; the secret carries the entropy.
const (
	keyPrefix = "sk-"
	// KeyIDLen is the length of a key id.
	KeyIDLen = 8
	// KeySecretLen is the length of a freshly made secret: 43 base62
	// characters are about 256 bits.
	KeySecretLen = 43
	// MinKeySecretLen is the shortest secret ParseKey accepts (≥ 190 bits).
	MinKeySecretLen = 32
	// maxKeySecretLen bounds what ParseKey reads from untrusted input.
	maxKeySecretLen = 128
	maxKindLen      = 16

	idAlphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
	base62Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// Key kinds, which are also the scope NewKey grants.
const (
	KindAdmin = "admin"
	KindUser  = "user"
)

// NewKey makes a new API key of kind (KindAdmin or KindUser) and its record.
// The record has no Hash yet: the caller sets rec.Hash = Hash(pepper, plain)
// before storing it (Keys.Create refuses a record without one). plain is
// shown to the operator once and never stored.
func NewKey(kind string) (plain string, rec KeyRecord, err error) {
	if kind != KindAdmin && kind != KindUser {
		return "", KeyRecord{}, fmt.Errorf("making key: unknown kind %q (want %q or %q): %w", kind, KindAdmin, KindUser, ErrInvalid)
	}
	id, err := randomString(idAlphabet, KeyIDLen)
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("making key id: %w", err)
	}
	secret, err := randomString(base62Alphabet, KeySecretLen)
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("making key secret: %w", err)
	}
	plain = keyPrefix + kind + "_" + id + "_" + secret
	rec = KeyRecord{
		ID:      id,
		Prefix:  keyPrefix + kind + "_" + id + "_…" + secret[len(secret)-4:],
		Scopes:  []string{kind},
		Created: time.Now().UTC().Truncate(time.Millisecond),
	}
	return plain, rec, nil
}

// randomString draws n characters uniformly from alphabet (at most 256
// characters) with crypto/rand, rejecting bytes that would bias the result.
func randomString(alphabet string, n int) (string, error) {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// Hash is HMAC-SHA-256(pepper, plain), the only form of a key the store
// keeps. Keys carry far more than 128 bits, so a fast keyed hash is enough;
// the pepper (kept out of the database) means a stolen database alone does
// not even allow offline guessing.
func Hash(pepper []byte, plain string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(plain))
	return m.Sum(nil)
}

// ParseKey checks plain's shape and returns its id. It reads untrusted
// input, so it is strict: no surrounding space, a lowercase kind, an id of
// KeyIDLen lowercase letters and digits, and a base62 secret of
// MinKeySecretLen..128 characters.
func ParseKey(plain string) (id string, ok bool) {
	rest, found := strings.CutPrefix(plain, keyPrefix)
	if !found || len(rest) > maxKindLen+1+KeyIDLen+1+maxKeySecretLen {
		return "", false
	}
	kind, rest, found := strings.Cut(rest, "_")
	if !found || kind == "" || len(kind) > maxKindLen || !onlyFrom(kind, "abcdefghijklmnopqrstuvwxyz") {
		return "", false
	}
	id, secret, found := strings.Cut(rest, "_")
	if !found || len(id) != KeyIDLen || !onlyFrom(id, idAlphabet) {
		return "", false
	}
	if len(secret) < MinKeySecretLen || len(secret) > maxKeySecretLen || !onlyFrom(secret, base62Alphabet) {
		return "", false
	}
	return id, true
}

func onlyFrom(s, alphabet string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// Verify reports whether plain is the live key that rec describes: well
// formed, with rec's id, not revoked, and hashing to rec.Hash (compared in
// constant time). The hash is computed on every path that reaches a record,
// so a wrong secret and a revoked key take the same time.
func Verify(rec *KeyRecord, pepper []byte, plain string) bool {
	if rec == nil {
		return false
	}
	id, ok := ParseKey(plain)
	if !ok {
		return false
	}
	match := hmac.Equal(Hash(pepper, plain), rec.Hash)
	return match && id == rec.ID && rec.Revoked == nil && len(rec.Hash) == sha256.Size
}
