package webhook

import (
	"testing"
	"time"
)

func TestScheduleMatchesSpec(t *testing.T) {
	t.Parallel()
	var total time.Duration
	for _, d := range Schedule() {
		total += d
	}
	// The spec's table ends at 75:35:05 since the first attempt.
	if want := 75*time.Hour + 35*time.Minute + 5*time.Second; total != want {
		t.Fatalf("schedule spans %v, want %v", total, want)
	}
	if MaxAttempts != 10 {
		t.Fatalf("MaxAttempts = %d, want 10", MaxAttempts)
	}
	// Schedule returns a copy.
	Schedule()[0] = time.Hour
	if Schedule()[0] != 5*time.Second {
		t.Fatal("Schedule exposes its backing array")
	}
}

func TestNextDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempt    int
		retryAfter time.Duration
		nominal    time.Duration // jittered ±10% around this
		exact      time.Duration // when set, the exact delay
		giveUp     bool
	}{
		{attempt: 1, nominal: 5 * time.Second},
		{attempt: 2, nominal: 5 * time.Minute},
		{attempt: 3, nominal: 30 * time.Minute},
		{attempt: 4, nominal: 2 * time.Hour},
		{attempt: 5, nominal: 5 * time.Hour},
		{attempt: 6, nominal: 10 * time.Hour},
		{attempt: 7, nominal: 14 * time.Hour},
		{attempt: 8, nominal: 20 * time.Hour},
		{attempt: 9, nominal: 24 * time.Hour},
		{attempt: 10, giveUp: true},
		{attempt: 11, giveUp: true},
		{attempt: 10, retryAfter: time.Minute, giveUp: true},
		{attempt: 0, nominal: 5 * time.Second},
		{attempt: -3, nominal: 5 * time.Second},
		// Retry-After longer than the step wins, exactly.
		{attempt: 1, retryAfter: 10 * time.Minute, exact: 10 * time.Minute},
		{attempt: 3, retryAfter: 90 * time.Minute, exact: 90 * time.Minute},
		// Shorter than the step: the schedule still applies.
		{attempt: 4, retryAfter: 10 * time.Minute, nominal: 2 * time.Hour},
		{attempt: 1, retryAfter: time.Second, nominal: 5 * time.Second},
		// Capped at MaxRetryAfter.
		{attempt: 1, retryAfter: 48 * time.Hour, exact: 24 * time.Hour},
	}
	for _, tc := range tests {
		lo, hi := tc.nominal-tc.nominal/10, tc.nominal+tc.nominal/10
		lowest, highest := hi, lo
		for range 200 {
			d, ok := NextDelay(tc.attempt, tc.retryAfter)
			if ok == tc.giveUp {
				t.Fatalf("NextDelay(%d, %v) ok = %v, want %v", tc.attempt, tc.retryAfter, ok, !tc.giveUp)
			}
			switch {
			case tc.giveUp:
				if d != 0 {
					t.Fatalf("NextDelay(%d) = %v on give-up, want 0", tc.attempt, d)
				}
				continue
			case tc.exact != 0:
				if d != tc.exact {
					t.Fatalf("NextDelay(%d, %v) = %v, want %v", tc.attempt, tc.retryAfter, d, tc.exact)
				}
				continue
			}
			if d < lo || d > hi {
				t.Fatalf("NextDelay(%d, %v) = %v, outside [%v, %v]", tc.attempt, tc.retryAfter, d, lo, hi)
			}
			lowest, highest = min(lowest, d), max(highest, d)
		}
		if tc.nominal != 0 && tc.exact == 0 && lowest == highest {
			t.Errorf("NextDelay(%d) returned %v 200 times: no jitter", tc.attempt, lowest)
		}
	}
}
