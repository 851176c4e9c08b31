package gen

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/easelgw/easel/internal/provider"
)

// generate runs call c with failover and retries, the one retry policy for
// every provider. Only a *provider.Error with NotStarted is retried: the
// upstream provably did not begin the (billable, non-idempotent) work. Each
// round tries the model's backends in order; between rounds it waits the
// smallest Retry-After the round was given, else a full-jitter backoff. A
// Retry-After beyond MaxRetryAfter, or a wait beyond the job's deadline,
// ends the call at once with that error so the client can retry later.
func (r *run) generate(ctx context.Context, c callSpec) (*provider.Result, error) {
	opts := r.s.opts
	var last, tooLong *provider.Error
	for round := range opts.Attempts {
		var retryAfter time.Duration
		for _, b := range r.m.backends {
			res, err := r.try(ctx, b, c)
			if err == nil {
				return res, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			pe, ok := provider.AsError(err)
			if !ok || !pe.NotStarted {
				return nil, err
			}
			r.log.Debug("upstream call not started; will fail over or retry",
				slog.String("backend", b.Name), slog.Int("round", round+1), slog.Any("err", pe))
			last = pe
			if pe.RetryAfter > opts.MaxRetryAfter {
				tooLong = pe
				continue
			}
			if pe.RetryAfter > 0 && (retryAfter == 0 || pe.RetryAfter < retryAfter) {
				retryAfter = pe.RetryAfter
			}
		}
		if tooLong != nil {
			return nil, tooLong
		}
		if round == opts.Attempts-1 {
			break
		}
		wait := retryAfter
		if wait == 0 {
			wait = backoff(opts.BackoffBase, opts.BackoffCap, round)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, last
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
	return nil, last
}

// backoff is full jitter: uniform in [0, min(cap, base*2^round)].
func backoff(base, cap time.Duration, round int) time.Duration {
	d := cap
	if round < 30 && base<<round < cap && base<<round > 0 {
		d = base << round
	}
	return rand.N(d + 1)
}
