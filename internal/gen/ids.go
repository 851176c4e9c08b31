package gen

import (
	"crypto/rand"
	"encoding/base32"
)

// jobIDEncoding spells 16 random bytes as 26 lowercase characters with no
// padding: the standard base32 alphabet, lowercased.
var jobIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewJobID returns a new job id, for callers that record a job before it
// runs (Request.JobID).
func NewJobID() string { return newJobID() }

// newJobID returns "img_" and 26 lowercase base32 characters (128 random
// bits): unguessable, since a job id alone lets a holder read its results.
func newJobID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (it aborts the process if
	// the system's generator fails).
	_, _ = rand.Read(b[:])
	return "img_" + jobIDEncoding.EncodeToString(b[:])
}
