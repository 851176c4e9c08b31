package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{" 7 ", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"12abc", 0},
		{"abc", 0},
		{"soon", 0},
		{"1e99", 0},
		// Overflowing int64 is garbage, not a day: the caller's backoff
		// applies (reliability spec U4).
		{"99999999999999999999", 0},
		{"86399", 86399 * time.Second},
		{"86400", Max},
		{"99999999", Max},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second},
		{now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(30 * 24 * time.Hour).Format(http.TimeFormat), Max},
		{"Fri, 02 Jan 2026 03:04:35 GMT", 30 * time.Second},
		{"Thu, 01 Jan 2026 00:00:30 GMT", 0},
		{"Sun, 32 Nov 2026 05:00:00 GMT", 0},
	}
	for _, tt := range tests {
		if got := Parse(tt.in, now); got != tt.want {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzParse: any header value gives a delay in [0, Max].
func FuzzParse(f *testing.F) {
	for _, s := range []string{"30", "-1", "Thu, 01 Jan 2026 00:00:30 GMT", "Sunday, 22-Nov-26 05:01:30 GMT", "1e9", "18446744073709551616", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := Parse(s, now); d < 0 || d > Max {
			t.Fatalf("Parse(%q) = %v", s, d)
		}
	})
}
