package webhook

import (
	"math/rand/v2"
	"time"

	"github.com/easelgw/easel/internal/retryafter"
)

// schedule is the Standard Webhooks example schedule: the wait before
// attempts 2 through 10, spanning a little over three days so a receiver
// that is down over a weekend still gets its events.
var schedule = [...]time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	14 * time.Hour,
	20 * time.Hour,
	24 * time.Hour,
}

const (
	// MaxAttempts is how many times one message is sent at most: the
	// first attempt plus one per schedule step.
	MaxAttempts = len(schedule) + 1
	// MaxRetryAfter caps a receiver's Retry-After: longer than the longest
	// step would let one answer postpone delivery without bound.
	MaxRetryAfter = retryafter.Max
	// jitterFraction spreads retries over ±10% of each step, so endpoints
	// that failed together (one outage) are not all retried in the same
	// second.
	jitterFraction = 0.10
)

// Schedule returns the nominal (unjittered) waits before attempts 2
// through MaxAttempts, for documentation and the defaults table.
func Schedule() []time.Duration { return append([]time.Duration(nil), schedule[:]...) }

// NextDelay says how long to wait after failed attempt number attempt
// (1 for the first) before sending again. The wait is the schedule's step
// with ±10% jitter, or retryAfter when the receiver asked for longer
// (capped at MaxRetryAfter). It returns false when attempt was the last
// one (MaxAttempts) and the message should be given up. An attempt below
// 1 is treated as 1.
func NextDelay(attempt int, retryAfter time.Duration) (time.Duration, bool) {
	if attempt < 1 {
		attempt = 1
	}
	if attempt >= MaxAttempts {
		return 0, false
	}
	step := schedule[attempt-1]
	spread := time.Duration(float64(step) * jitterFraction)
	delay := step - spread + rand.N(2*spread+1)
	if retryAfter > MaxRetryAfter {
		retryAfter = MaxRetryAfter
	}
	if retryAfter > delay {
		delay = retryAfter
	}
	return delay, true
}
