package store

import (
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// cursorVersion lets a later format change refuse old cursors cleanly
// instead of misreading them.
const cursorVersion = "c1"

// EncodeCursor makes the opaque List cursor that resumes after the job with
// this creation time and id. Implementations share it so a cursor means the
// same thing on every backend. A checksum makes a truncated or edited cursor
// ErrBadCursor instead of a silently different page (it is not a secret:
// a cursor grants nothing, List still filters by key).
func EncodeCursor(created time.Time, id string) string {
	payload := cursorVersion + ":" + strconv.FormatInt(created.UnixMilli(), 10) + ":" + id
	sum := strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(payload))), 36)
	return base64.RawURLEncoding.EncodeToString([]byte(sum + ":" + payload))
}

// DecodeCursor reverses EncodeCursor; anything else is ErrBadCursor.
func DecodeCursor(cursor string) (createdMS int64, id string, err error) {
	if len(cursor) > 1024 {
		return 0, "", fmt.Errorf("decoding cursor: too long: %w", ErrBadCursor)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil {
		return 0, "", fmt.Errorf("decoding cursor: %w", ErrBadCursor)
	}
	sum, payload, ok := strings.Cut(string(raw), ":")
	if !ok || sum != strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(payload))), 36) {
		return 0, "", fmt.Errorf("decoding cursor: checksum mismatch: %w", ErrBadCursor)
	}
	parts := strings.SplitN(payload, ":", 3)
	if len(parts) != 3 || parts[0] != cursorVersion || parts[2] == "" || !utf8.ValidString(parts[2]) {
		return 0, "", fmt.Errorf("decoding cursor: malformed: %w", ErrBadCursor)
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("decoding cursor: bad time: %w", ErrBadCursor)
	}
	return ms, parts[2], nil
}
