package keys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/server"
)

// Error codes of LimitError, as the API reports them.
const (
	// CodeRateLimit: the key's requests per minute (or the client's
	// failed authentications) are used up.
	CodeRateLimit = "rate_limit_exceeded"
	// CodeConcurrency: the key has as many jobs running as it may.
	CodeConcurrency = "concurrency_limit_exceeded"
	// CodeQuota: the key's images per day are used up.
	CodeQuota = "quota_exceeded"
)

// LimitError is a request refused by one of the key's limits.
// WriteLimitError renders it.
type LimitError struct {
	// Code is CodeRateLimit, CodeConcurrency or CodeQuota.
	Code string
	// Message is safe to show to the caller.
	Message string
	// RetryAfter is when trying again can succeed; 0 when it never can
	// (a job larger than the whole daily quota).
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Message }

// Status is the HTTP status of the refusal: 429, or 400 for a request
// that no wait would let through.
func (e *LimitError) Status() int {
	if e.RetryAfter <= 0 {
		return http.StatusBadRequest
	}
	return http.StatusTooManyRequests
}

// WriteLimitError writes err in OpenAI's error envelope when it is (or
// wraps) a *LimitError and reports whether it did: 429 with Retry-After
// (whole seconds, at least 1) and retry-after-ms, the error's code and type
// "requests" (OpenAI's type for rate limits; "insufficient_quota" for
// CodeQuota); or 400 invalid_request_error for a request larger than the
// whole quota.
func WriteLimitError(w http.ResponseWriter, err error) bool {
	var le *LimitError
	if !errors.As(err, &le) {
		return false
	}
	writeTooMany(w, le)
	return true
}

func writeTooMany(w http.ResponseWriter, le *LimitError) {
	if le.Status() == http.StatusBadRequest {
		server.WriteError(w, http.StatusBadRequest, "invalid_request_error", le.Code, le.Message)
		return
	}
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(seconds(le.RetryAfter)))
	h.Set("retry-after-ms", strconv.FormatInt(max(1, (le.RetryAfter+time.Millisecond-1).Milliseconds()), 10))
	typ := "requests"
	if le.Code == CodeQuota {
		typ = "insufficient_quota"
	}
	server.WriteError(w, http.StatusTooManyRequests, typ, le.Code, le.Message)
}

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// Ticket is one admitted job. Done must be called exactly once when the
// job ends, however it ends; later calls do nothing.
type Ticket struct {
	s        *Service
	keyID    string
	slot     bool
	reserved int
	at       time.Time
	once     sync.Once
}

// AdmitJob admits a job of images images for id, or refuses it with a
// *LimitError: CodeConcurrency when the key already runs as many jobs as
// it may, CodeQuota when the images would pass its images per day (with
// the wait until enough of the 24-hour window has passed). The images are
// counted at once, atomically in the store, so concurrent admissions never
// overrun the quota; Ticket.Done gives back what the job did not produce.
// An identity without a key id (auth off) is admitted without limits.
//
// Concurrency is counted in this process: a second replica, or a restart
// with jobs still running, starts from its own count.
func (s *Service) AdmitJob(ctx context.Context, id Identity, images int) (*Ticket, error) {
	if images < 0 {
		return nil, fmt.Errorf("admitting a job of %d images: negative count", images)
	}
	t := &Ticket{s: s, keyID: id.KeyID}
	if id.KeyID == "" {
		return t, nil
	}
	if limit := id.Limits.ConcurrentJobs; limit > 0 {
		s.mu.Lock()
		if s.running[id.KeyID] >= limit {
			s.mu.Unlock()
			return nil, &LimitError{
				Code:       CodeConcurrency,
				Message:    fmt.Sprintf("This key already has %d jobs running, its limit; retry when one finishes.", limit),
				RetryAfter: ConcurrencyRetryAfter,
			}
		}
		s.running[id.KeyID]++
		s.mu.Unlock()
		t.slot = true
	}
	if images == 0 {
		return t, nil
	}
	if quota := id.Limits.ImagesPerDay; quota > 0 {
		if err := s.reserve(ctx, t, quota, images); err != nil {
			t.release()
			return nil, err
		}
		return t, nil
	}
	// A key without a daily quota writes nothing here: its usage is in
	// its job records (key, images, times), and a synchronous ledger
	// write would put a database commit in front of every job.
	return t, nil
}

func (s *Service) reserve(ctx context.Context, t *Ticket, quota, images int) error {
	if images > quota {
		return &LimitError{
			Code:    CodeQuota,
			Message: fmt.Sprintf("This request asks for %d images, more than this key's %d images per day.", images, quota),
		}
	}
	now := s.now()
	ok, err := s.usage.RecordWithin(ctx, t.keyID, now, images, now.Add(-QuotaWindow), quota)
	if err != nil {
		return fmt.Errorf("recording usage: %w", err)
	}
	if !ok {
		wait, err := s.quotaWait(ctx, t.keyID, now, quota, images)
		if err != nil {
			return err
		}
		return &LimitError{
			Code:       CodeQuota,
			Message:    fmt.Sprintf("This key's quota of %d images per day is used up; retry after %d s.", quota, seconds(wait)),
			RetryAfter: wait,
		}
	}
	t.reserved, t.at = images, now
	return nil
}

// quotaWait finds when images more fit: the earliest window start s for
// which the images recorded since s plus images stay within quota; the
// window starting there ends s+QuotaWindow-now from now. Usage since a
// time only falls as the time moves later, so a binary search to the
// second finds it.
func (s *Service) quotaWait(ctx context.Context, keyID string, now time.Time, quota, images int) (time.Duration, error) {
	lo, hi := time.Duration(0), QuotaWindow // offsets after now-QuotaWindow
	for hi-lo > time.Second {
		mid := lo + (hi-lo)/2
		used, err := s.usage.ImagesSince(ctx, keyID, now.Add(-QuotaWindow+mid))
		if err != nil {
			return 0, fmt.Errorf("reading usage: %w", err)
		}
		if used+images <= quota {
			hi = mid
		} else {
			lo = mid
		}
	}
	return max(hi, time.Second), nil
}

// Done ends the job: it frees its concurrency slot and gives back the
// images it reserved but did not produce (a failed job costs nothing).
// The refund is written even when ctx is already canceled.
func (t *Ticket) Done(ctx context.Context, producedImages int) {
	if t == nil {
		return
	}
	t.once.Do(func() {
		t.release()
		refund := t.reserved - max(0, producedImages)
		if refund <= 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := t.s.usage.Refund(ctx, t.keyID, t.at, refund); err != nil {
			t.s.log.Warn("refunding unused images", "key_id", t.keyID, "images", refund, "err", err)
		}
	})
}

func (t *Ticket) release() {
	if !t.slot {
		return
	}
	t.slot = false
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.s.running[t.keyID] <= 1 {
		delete(t.s.running, t.keyID)
	} else {
		t.s.running[t.keyID]--
	}
}
