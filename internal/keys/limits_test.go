package keys_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// TestRequestsPerMinute is A15's rate part: the first rpm requests pass
// (burst = rpm), the rest get 429 with Retry-After and rate-limit headers,
// and the bucket refills at rpm per minute.
func TestRequestsPerMinute(t *testing.T) {
	t.Parallel()
	const rpm = 6
	b := setup(t, setupOpts{})
	k := b.mustCreate(t, keys.Spec{Name: "r", Limits: keys.LimitSettings{RequestsPerMinute: ptr(rpm)}})
	other := b.mustCreate(t, keys.Spec{Name: "other", Limits: keys.LimitSettings{RequestsPerMinute: ptr(rpm)}})
	for i := range rpm + 5 {
		r := b.do(t, "GET", "/v1/models", bearer(k.Key), "")
		if r.header.Get("x-ratelimit-limit-requests") != strconv.Itoa(rpm) {
			t.Errorf("request %d: x-ratelimit-limit-requests = %q", i, r.header.Get("x-ratelimit-limit-requests"))
		}
		if i < rpm {
			if r.status != 200 {
				t.Fatalf("request %d: %d, want 200", i, r.status)
			}
			if got := r.header.Get("x-ratelimit-remaining-requests"); got != strconv.Itoa(rpm-1-i) {
				t.Errorf("request %d: remaining %q, want %d", i, got, rpm-1-i)
			}
			continue
		}
		if r.status != 429 || errorCode(t, r.body) != keys.CodeRateLimit {
			t.Fatalf("request %d: %d %s, want 429 %s", i, r.status, r.body, keys.CodeRateLimit)
		}
		// One token comes back every 10 s.
		if r.header.Get("Retry-After") != "10" || r.header.Get("retry-after-ms") != "10000" {
			t.Errorf("request %d: Retry-After %q, retry-after-ms %q; want 10 and 10000", i, r.header.Get("Retry-After"), r.header.Get("retry-after-ms"))
		}
		if r.header.Get("x-ratelimit-remaining-requests") != "0" {
			t.Errorf("request %d: remaining %q, want 0", i, r.header.Get("x-ratelimit-remaining-requests"))
		}
	}
	if r := b.do(t, "GET", "/v1/models", bearer(other.Key), ""); r.status != 200 {
		t.Errorf("another key: %d, want 200 (limits are per key)", r.status)
	}
	b.clock.Add(4 * time.Second)
	if r := b.do(t, "GET", "/v1/models", bearer(k.Key), ""); r.status != 429 || r.header.Get("Retry-After") != "6" {
		t.Errorf("after 4 s: %d Retry-After %q, want 429 and 6", r.status, r.header.Get("Retry-After"))
	}
	b.clock.Add(6 * time.Second)
	if r := b.do(t, "GET", "/v1/models", bearer(k.Key), ""); r.status != 200 {
		t.Errorf("after 10 s: %d, want 200", r.status)
	}
	if r := b.do(t, "GET", "/v1/models", bearer(k.Key), ""); r.status != 429 {
		t.Errorf("right after: %d, want 429", r.status)
	}
}

func TestEffectiveLimits(t *testing.T) {
	t.Parallel()
	defaults := keys.Limits{RequestsPerMinute: 60, ConcurrentJobs: 2, ImagesPerDay: 100}
	b := setup(t, setupOpts{defaults: defaults})
	tests := []struct {
		name string
		set  keys.LimitSettings
		want keys.Limits
	}{
		{"defaults", keys.LimitSettings{}, defaults},
		{"own", keys.LimitSettings{RequestsPerMinute: ptr(5), ConcurrentJobs: ptr(1), ImagesPerDay: ptr(10)}, keys.Limits{RequestsPerMinute: 5, ConcurrentJobs: 1, ImagesPerDay: 10}},
		{"unlimited", keys.LimitSettings{RequestsPerMinute: ptr(0), ImagesPerDay: ptr(0)}, keys.Limits{ConcurrentJobs: 2}},
	}
	for _, tt := range tests {
		k := b.mustCreate(t, keys.Spec{Name: tt.name, Limits: tt.set})
		r := b.do(t, "GET", "/v1/models", bearer(k.Key), "")
		var who whoamiResponse
		if err := json.Unmarshal([]byte(r.body), &who); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, who.Limits); diff != "" {
			t.Errorf("%s: identity limits (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.want, k.EffectiveLimits); diff != "" {
			t.Errorf("%s: listed effective limits (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.set, k.Limits); diff != "" {
			t.Errorf("%s: listed own limits (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestConcurrentJobs: a key runs at most its limit of jobs; Done frees a
// slot; an anonymous caller (auth off) is not limited.
func TestConcurrentJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := t.Context()
	id := keys.Identity{KeyID: "aaaa1111", Limits: keys.Limits{ConcurrentJobs: 2}}
	t1, err := b.svc.AdmitJob(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.AdmitJob(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	_, err = b.svc.AdmitJob(ctx, id, 1)
	var le *keys.LimitError
	if !errors.As(err, &le) || le.Code != keys.CodeConcurrency || le.RetryAfter < time.Second {
		t.Fatalf("third job: %v, want a concurrency LimitError with a retry hint", err)
	}
	rec := httptest.NewRecorder()
	if !keys.WriteLimitError(rec, err) || rec.Code != 429 || rec.Header().Get("Retry-After") == "" ||
		errorCode(t, rec.Body.String()) != keys.CodeConcurrency {
		t.Errorf("WriteLimitError: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	// Another key has its own count.
	if _, err := b.svc.AdmitJob(ctx, keys.Identity{KeyID: "bbbb2222", Limits: id.Limits}, 1); err != nil {
		t.Errorf("other key: %v", err)
	}
	t1.Done(ctx, 1)
	t1.Done(ctx, 1) // a second Done must not free another slot
	t3, err := b.svc.AdmitJob(ctx, id, 1)
	if err != nil {
		t.Fatalf("after Done: %v", err)
	}
	if _, err := b.svc.AdmitJob(ctx, id, 1); err == nil {
		t.Error("a double Done freed two slots")
	}
	t3.Done(ctx, 0)
	for range 10 {
		if _, err := b.svc.AdmitJob(ctx, keys.Identity{}, 4); err != nil {
			t.Fatalf("anonymous: %v", err)
		}
	}
}

// TestImagesPerDay is A15's quota part: of many concurrent admissions
// against a quota of N exactly N pass, the rest are told when the window
// frees up, and the count survives a restart.
func TestImagesPerDay(t *testing.T) {
	t.Parallel()
	const quota, racers = 10, 100
	b := setup(t, setupOpts{})
	ctx := t.Context()
	id := keys.Identity{KeyID: "aaaa1111", Limits: keys.Limits{ImagesPerDay: quota}}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		refused  []*keys.LimitError
	)
	for range racers {
		wg.Go(func() {
			_, err := b.svc.AdmitJob(ctx, id, 1)
			mu.Lock()
			defer mu.Unlock()
			var le *keys.LimitError
			switch {
			case err == nil:
				accepted++
			case errors.As(err, &le):
				refused = append(refused, le)
			default:
				t.Errorf("AdmitJob: %v", err)
			}
		})
	}
	wg.Wait()
	if accepted != quota || len(refused) != racers-quota {
		t.Fatalf("accepted %d, refused %d; want %d and %d", accepted, len(refused), quota, racers-quota)
	}
	for _, le := range refused {
		// Everything was used just now: the whole window must pass.
		if le.Code != keys.CodeQuota || le.RetryAfter < keys.QuotaWindow-2*time.Second || le.RetryAfter > keys.QuotaWindow {
			t.Fatalf("refusal = %+v, want %s after about 24h", le, keys.CodeQuota)
		}
	}

	// Restart: a new store and service on the same file still count.
	if err := b.st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, b.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := newClock()
	svc, err := keys.New(keys.Options{Keys: st.Keys(), Usage: st.Usage(), SigningKey: signingKey, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AdmitJob(ctx, id, 1); !isCode(err, keys.CodeQuota) {
		t.Errorf("after restart: %v, want %s", err, keys.CodeQuota)
	}
	c.Add(keys.QuotaWindow + time.Second)
	if _, err := svc.AdmitJob(ctx, id, quota); err != nil {
		t.Errorf("a day later: %v", err)
	}
	// A job larger than the whole quota can never pass: 400, no retry.
	_, err = svc.AdmitJob(ctx, id, quota+1)
	var le *keys.LimitError
	if !errors.As(err, &le) || le.RetryAfter != 0 || le.Status() != http.StatusBadRequest {
		t.Errorf("job over the quota: %v", err)
	}
	rec := httptest.NewRecorder()
	if !keys.WriteLimitError(rec, err) || rec.Code != 400 || rec.Header().Get("Retry-After") != "" {
		t.Errorf("WriteLimitError(over quota): %d %v", rec.Code, rec.Header())
	}
}

func isCode(err error, code string) bool {
	var le *keys.LimitError
	return errors.As(err, &le) && le.Code == code
}

// TestQuotaRetryAfter: the wait is until enough old images leave the
// 24-hour window.
func TestQuotaRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := t.Context()
	now := b.clock.Now()
	for _, r := range []struct {
		ago    time.Duration
		images int
	}{{23 * time.Hour, 2}, {2 * time.Hour, 1}, {time.Hour, 2}} {
		if err := b.st.Usage().Record(ctx, "aaaa1111", now.Add(-r.ago), r.images); err != nil {
			t.Fatal(err)
		}
	}
	id := keys.Identity{KeyID: "aaaa1111", Limits: keys.Limits{ImagesPerDay: 5}}
	for _, tt := range []struct {
		images int
		wait   time.Duration
	}{
		{1, time.Hour},      // the two from 23 h ago leave in 1 h
		{2, time.Hour},      // so do both of them
		{3, 22 * time.Hour}, // and then the one from 2 h ago
		{5, 23 * time.Hour},
	} {
		_, err := b.svc.AdmitJob(ctx, id, tt.images)
		var le *keys.LimitError
		if !errors.As(err, &le) || le.Code != keys.CodeQuota {
			t.Fatalf("AdmitJob(%d): %v", tt.images, err)
		}
		if le.RetryAfter < tt.wait || le.RetryAfter > tt.wait+time.Second {
			t.Errorf("AdmitJob(%d): RetryAfter %v, want %v", tt.images, le.RetryAfter, tt.wait)
		}
		rec := httptest.NewRecorder()
		keys.WriteLimitError(rec, err)
		if got := rec.Header().Get("Retry-After"); got != strconv.Itoa(int((le.RetryAfter+time.Second-1)/time.Second)) || rec.Code != 429 {
			t.Errorf("Retry-After header %q for %v", got, le.RetryAfter)
		}
	}
	b.clock.Add(time.Hour + time.Second)
	if _, err := b.svc.AdmitJob(ctx, id, 2); err != nil {
		t.Errorf("after the wait: %v", err)
	}
}

// TestUsagePerJob: a key with a daily quota has each job's images
// reserved in the ledger, and Done gives back what it did not produce, so
// failed jobs cost nothing. A key without one writes no ledger rows (its
// usage is in its job records), so its jobs wait for no commit.
func TestUsagePerJob(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := t.Context()
	since := b.clock.Now().Add(-time.Hour)
	used := func() int {
		t.Helper()
		n, err := b.st.Usage().ImagesSince(ctx, "aaaa1111", since)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		limits              keys.Limits
		reserved, afterJobs int
	}{{keys.Limits{ImagesPerDay: 100}, 7, 2}, {keys.Limits{}, 0, 0}} {
		limits := tc.limits
		id := keys.Identity{KeyID: "aaaa1111", Limits: limits}
		before := used()
		ok, err := b.svc.AdmitJob(ctx, id, 3)
		if err != nil {
			t.Fatal(err)
		}
		failed, err := b.svc.AdmitJob(ctx, id, 4)
		if err != nil {
			t.Fatal(err)
		}
		if got := used() - before; got != tc.reserved {
			t.Errorf("limits %+v: %d images reserved, want %d", limits, got, tc.reserved)
		}
		ok.Done(ctx, 2)
		failed.Done(ctx, 0)
		failed.Done(ctx, 0)
		if got := used() - before; got != tc.afterJobs {
			t.Errorf("limits %+v: %d images recorded after the jobs, want %d", limits, got, tc.afterJobs)
		}
	}
	if _, err := b.svc.AdmitJob(ctx, keys.Identity{KeyID: "x"}, -1); err == nil {
		t.Error("negative image count admitted")
	}
}

func TestWriteLimitErrorIgnoresOthers(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	if keys.WriteLimitError(rec, errors.New("other")) || rec.Body.Len() != 0 {
		t.Error("WriteLimitError wrote a non-limit error")
	}
}
