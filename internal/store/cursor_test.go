package store

import (
	"encoding/base64"
	"errors"
	"hash/crc32"
	"strconv"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		created time.Time
		id      string
	}{
		{time.UnixMilli(1795341601000), "job_abc"},
		{time.UnixMilli(0), "x"},
		{time.UnixMilli(-5), "id:with:colons"},
		{time.UnixMilli(1795341601123), "ünïcode"},
	} {
		c := EncodeCursor(tt.created, tt.id)
		ms, id, err := DecodeCursor(c)
		if err != nil || ms != tt.created.UnixMilli() || id != tt.id {
			t.Errorf("DecodeCursor(EncodeCursor(%v, %q)) = %d, %q, %v", tt.created, tt.id, ms, id, err)
		}
	}
}

// withSum builds a cursor with a valid checksum around any payload, to reach
// the checks behind the checksum.
func withSum(payload string) string {
	sum := strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(payload))), 36)
	return base64.RawURLEncoding.EncodeToString([]byte(sum + ":" + payload))
}

func TestDecodeCursorRejects(t *testing.T) {
	t.Parallel()
	good := EncodeCursor(time.UnixMilli(1000), "job")
	for name, c := range map[string]string{
		"empty":        "",
		"not base64":   "***",
		"no checksum":  base64.RawURLEncoding.EncodeToString([]byte("c1:1000:job")),
		"edited":       good[:len(good)-1] + "A",
		"truncated":    good[:len(good)-2],
		"old version":  withSum("c0:1000:job"),
		"no id":        withSum("c1:1000:"),
		"bad time":     withSum("c1:abc:job"),
		"two parts":    withSum("c1:1000"),
		"invalid utf8": withSum("c1:1000:\xff"),
		"too long":     withSum("c1:1000:" + string(make([]byte, 2000))),
	} {
		if _, _, err := DecodeCursor(c); !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeCursor(%s) error = %v, want ErrBadCursor", name, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(time.UnixMilli(1000), "job"))
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		ms, id, err := DecodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("DecodeCursor(%q) error %v is not ErrBadCursor", s, err)
			}
			return
		}
		if EncodeCursor(time.UnixMilli(ms), id) != s {
			t.Fatalf("DecodeCursor(%q) = %d, %q, which encodes differently", s, ms, id)
		}
	})
}

func TestClampLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]int{-1: 1, 0: 1, 1: 1, 42: 42, 100: 100, 101: 100, 1 << 30: 100} {
		if got := ClampLimit(in); got != want {
			t.Errorf("ClampLimit(%d) = %d, want %d", in, got, want)
		}
	}
}
