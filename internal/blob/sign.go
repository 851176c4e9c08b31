package blob

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// MinSignerKey is the shortest accepted signing key: as long as the
// HMAC-SHA256 output, so the key is never the weak part.
const MinSignerKey = 32

var (
	// ErrExpired: the signed URL's expiry has passed.
	ErrExpired = errors.New("signed URL expired")
	// ErrBadSignature: the signature is missing, malformed or wrong.
	ErrBadSignature = errors.New("bad URL signature")
)

// filesPath is the route stored objects are served from.
const filesPath = "/v1/files/"

// Signer makes and checks expiring URLs for stored objects, so results can
// be fetched without an API key while nobody can guess or extend a link.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a Signer using key, which must be at least MinSignerKey
// bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinSignerKey {
		return nil, errors.New("signing key must be at least 32 bytes")
	}
	return &Signer{key: append([]byte(nil), key...), now: time.Now}, nil
}

// sigEncoding is URL-safe base64 without padding, so signatures need no
// escaping in a query string.
var sigEncoding = base64.RawURLEncoding

func (s *Signer) mac(objectKey, exp string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("GET\n" + filesPath + objectKey + "\n" + exp))
	return m.Sum(nil)
}

// Query returns the "exp" (Unix seconds) and "sig" parameters granting GET
// of objectKey for ttl.
func (s *Signer) Query(objectKey string, ttl time.Duration) url.Values {
	exp := strconv.FormatInt(s.now().Add(ttl).Unix(), 10)
	return url.Values{
		"exp": {exp},
		"sig": {sigEncoding.EncodeToString(s.mac(objectKey, exp))},
	}
}

// URL is base (scheme and host, no trailing slash) + "/v1/files/" +
// objectKey + the signed query.
func (s *Signer) URL(base, objectKey string, ttl time.Duration) string {
	return base + filesPath + objectKey + "?" + s.Query(objectKey, ttl).Encode()
}

// Verify checks a URL's exp and sig for objectKey. The signature is checked
// before the expiry so a forged link learns nothing from the answer.
func (s *Signer) Verify(objectKey, exp, sig string) error {
	got, err := sigEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	if !hmac.Equal(got, s.mac(objectKey, exp)) {
		return ErrBadSignature
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if s.now().Unix() > e {
		return ErrExpired
	}
	return nil
}
