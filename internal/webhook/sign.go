package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

const (
	// SecretPrefix marks a Standard Webhooks symmetric signing secret, so a
	// leaked one is recognisable and is never mistaken for another key kind.
	SecretPrefix = "whsec_"
	// MinSecretBytes is the smallest decoded secret accepted: the
	// Standard Webhooks minimum of 192 bits.
	MinSecretBytes = 24
	// MaxSecretBytes is the largest decoded secret accepted (512 bits).
	MaxSecretBytes = 64
	// secretBytes is what NewSecret draws: 256 bits, comfortably inside
	// the spec's range.
	secretBytes = 32
	// signatureVersion tags an HMAC-SHA256 signature in webhook-signature.
	signatureVersion = "v1"
)

// ErrSecret is returned by ParseSecret and NewSigner for a secret that is
// not base64 of 24 to 64 bytes. Its message never contains the secret.
var ErrSecret = errors.New("webhook: invalid signing secret")

// NewSecret returns a fresh signing secret, "whsec_" followed by the
// standard base64 of 32 random bytes. It is shown to the endpoint's owner
// once and stored like any other credential.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes for a webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// ParseSecret decodes a signing secret written with or without the
// "whsec_" prefix. The rest must be standard base64 (padded) of 24 to 64
// bytes; anything else is ErrSecret.
func ParseSecret(s string) ([]byte, error) {
	enc := strings.TrimPrefix(s, SecretPrefix)
	if enc == "" {
		return nil, fmt.Errorf("%w: empty", ErrSecret)
	}
	// Longer input cannot decode to an acceptable length; refusing it
	// early keeps hostile input from costing an allocation of its size.
	if len(enc) > base64.StdEncoding.EncodedLen(MaxSecretBytes) {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSecret, MaxSecretBytes)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil {
		// The decoder's error quotes an offset, never the input.
		return nil, fmt.Errorf("%w: not standard base64: %w", ErrSecret, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: %d bytes, want %d to %d", ErrSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// Signer computes webhook-signature header values. It holds one or more
// secrets: during a rotation the endpoint's new and old secrets are both
// held, and every message carries one signature per secret so receivers
// on either secret keep verifying. A Signer is safe for concurrent use and
// never prints its secrets.
type Signer struct {
	keys [][]byte
}

// NewSigner builds a Signer from one or more secrets (see ParseSecret),
// current secret first. It fails with ErrSecret when none is given or one
// does not parse; the error names the secret's position, not its value.
func NewSigner(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrSecret)
	}
	s := &Signer{keys: make([][]byte, 0, len(secrets))}
	for i, sec := range secrets {
		key, err := ParseSecret(sec)
		if err != nil {
			return nil, fmt.Errorf("parsing webhook secret #%d: %w", i+1, err)
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// Sign returns the webhook-signature header value for one attempt: a
// space-separated list of "v1,<base64 HMAC-SHA256>" over
// "{id}.{unix seconds}.{body}", one entry per secret in the order given to
// NewSigner. ts must be the timestamp sent in webhook-timestamp.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	prefix := id + "." + strconv.FormatInt(ts.Unix(), 10) + "."
	sigs := make([]string, 0, len(s.keys))
	for _, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(prefix))
		mac.Write(body)
		sigs = append(sigs, signatureVersion+","+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// String redacts the secrets, so a Signer printed by mistake (as a value
// or a pointer) leaks nothing.
func (s Signer) String() string {
	return fmt.Sprintf("webhook.Signer(%d secrets, redacted)", len(s.keys))
}

// GoString redacts the secrets for %#v as String does for %v.
func (s Signer) GoString() string { return s.String() }

// LogValue redacts the secrets when a Signer is passed to slog.
func (s Signer) LogValue() slog.Value { return slog.StringValue(s.String()) }
