package gen

import (
	"context"
	"log/slog"
	"math"
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
//
// A Patient request (an async job, whose client is not waiting on a
// connection) keeps trying until its deadline instead: any Retry-After that
// fits in the time left is waited out, the backoff grows to patientCap, and
// each wait is announced as a log event.
func (r *run) generate(ctx context.Context, c callSpec) (*provider.Result, error) {
	opts := r.s.opts
	attempts, maxRetryAfter, backoffCap := opts.Attempts, opts.MaxRetryAfter, opts.BackoffCap
	if r.req.Patient {
		attempts = math.MaxInt
		backoffCap = max(backoffCap, patientCap)
		if dl, ok := ctx.Deadline(); ok {
			maxRetryAfter = max(maxRetryAfter, time.Until(dl))
		}
	}
	var last, tooLong *provider.Error
	for round := range attempts {
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
			if pe.RetryAfter > maxRetryAfter {
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
		if round == attempts-1 {
			break
		}
		wait := retryAfter
		if wait == 0 {
			wait = backoff(opts.BackoffBase, backoffCap, round)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, last
		}
		if r.req.Patient {
			r.job.Publish(provider.Event{Type: provider.EventLog, Index: c.index,
				Message: "the backend did not take the work (" + last.Message + "); trying again in " + seconds(wait.Round(time.Second))}, nil)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
	return nil, last
}

// patientCap is the longest backoff between the attempts of a Patient
// job: a down upstream is asked about twice a minute, not hammered.
const patientCap = 30 * time.Second

// backoff is full jitter: uniform in [0, min(cap, base*2^round)].
func backoff(base, cap time.Duration, round int) time.Duration {
	d := cap
	if round < 30 && base<<round < cap && base<<round > 0 {
		d = base << round
	}
	return rand.N(d + 1)
}
