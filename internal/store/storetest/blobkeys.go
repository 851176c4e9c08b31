package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/store"
)

// collectKeys runs BlobKeys and returns the distinct keys, sorted.
func collectKeys(t *testing.T, s store.Store, after time.Time) []string {
	t.Helper()
	seen := map[string]bool{}
	if err := s.Jobs().BlobKeys(t.Context(), after, func(k string) error {
		seen[k] = true
		return nil
	}); err != nil {
		t.Fatalf("BlobKeys: %v", err)
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func testJobBlobKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	cutoff := base.Add(time.Hour)
	mk := func(id, status string, finished time.Time, images, inputs []string) {
		rec := minimalJob(id, "k", status, base)
		rec.Finished = finished
		for _, k := range images {
			rec.Images = append(rec.Images, store.ImageRecord{Key: k, MIME: "image/png", Width: 1, Height: 1, Bytes: 1})
		}
		rec.InputKeys = inputs
		mustCreate(t, s, rec)
	}
	mk("queued", store.StatusQueued, time.Time{}, nil, []string{"queued-in.png"})
	mk("running", store.StatusRunning, time.Time{}, []string{"running-out.png"}, []string{"running-in.png"})
	mk("recent", store.StatusSucceeded, cutoff.Add(time.Minute), []string{"recent-1.png", "recent-2.webp", "shared.png"}, []string{"recent-in.jpg"})
	mk("at-cutoff", store.StatusFailed, cutoff, []string{"cutoff.png"}, nil)
	// A terminal status without a finish time cannot be dated: it is kept,
	// as DeleteFinishedBefore keeps it.
	mk("undated", store.StatusSucceeded, time.Time{}, []string{"undated.png"}, nil)
	mk("old-ok", store.StatusSucceeded, base.Add(time.Minute), []string{"old.png", "shared.png"}, []string{"old-in.png"})
	mk("old-failed", store.StatusFailed, base.Add(2*time.Minute), nil, []string{"old-failed-in.png"})
	mk("old-canceled", store.StatusCanceled, base.Add(3*time.Minute), []string{"old-canceled.png"}, nil)
	mk("no-blobs", store.StatusRunning, time.Time{}, nil, nil)

	want := []string{
		"cutoff.png", "queued-in.png", "recent-1.png", "recent-2.webp", "recent-in.jpg",
		"running-in.png", "running-out.png", "shared.png", "undated.png",
	}
	if diff := cmp.Diff(want, collectKeys(t, s, cutoff)); diff != "" {
		t.Errorf("BlobKeys (-want +got):\n%s", diff)
	}

	// A job updated to hold more keys is seen with them.
	if err := s.Jobs().Update(ctx, "no-blobs", func(r *store.JobRecord) error {
		r.InputKeys = []string{"late-in.png"}
		return nil
	}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := collectKeys(t, s, cutoff); !slices.Contains(got, "late-in.png") {
		t.Errorf("BlobKeys after Update = %v, want late-in.png among them", got)
	}

	// An error from fn stops the scan and comes back.
	errStop := errors.New("stop")
	calls := 0
	err := s.Jobs().BlobKeys(ctx, cutoff, func(string) error { calls++; return errStop })
	if !errors.Is(err, errStop) || calls != 1 {
		t.Errorf("BlobKeys with failing fn = %v after %d calls, want errStop after 1", err, calls)
	}

	// fn may use the store: the scan holds no database call open while it
	// runs (a single-connection store would otherwise deadlock; the
	// timeout turns that into a failure instead of a hang).
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = s.Jobs().BlobKeys(tctx, cutoff, func(string) error {
		_, err := s.Jobs().Get(tctx, "running", "")
		return err
	})
	if err != nil {
		t.Errorf("BlobKeys with fn reading the store: %v", err)
	}
}

// testJobBlobKeysPages checks that a scan longer than any page size an
// implementation might choose still sees every live job exactly once.
func testJobBlobKeysPages(t *testing.T, s store.Store) {
	const jobs = 1234
	cutoff := base.Add(time.Hour)
	want := make([]string, 0, jobs)
	for i := range jobs {
		id := fmt.Sprintf("job-%05d", i)
		status, finished := store.StatusRunning, time.Time{}
		if i%3 == 0 {
			status, finished = store.StatusSucceeded, cutoff.Add(time.Duration(i)*time.Second)
		}
		rec := minimalJob(id, "k", status, base)
		rec.Finished = finished
		rec.InputKeys = []string{id + ".png"}
		mustCreate(t, s, rec)
		want = append(want, id+".png")
		if i%5 == 0 {
			// Expired jobs interleaved with live ones must not end a page
			// early or be reported.
			old := minimalJob(fmt.Sprintf("old-%05d", i), "k", store.StatusSucceeded, base)
			old.Finished = base
			old.InputKeys = []string{"expired.png"}
			mustCreate(t, s, old)
		}
	}
	counts := map[string]int{}
	if err := s.Jobs().BlobKeys(t.Context(), cutoff, func(k string) error {
		counts[k]++
		return nil
	}); err != nil {
		t.Fatalf("BlobKeys: %v", err)
	}
	got := make([]string, 0, len(counts))
	for k, n := range counts {
		if n != 1 {
			t.Errorf("key %s reported %d times, want once", k, n)
		}
		got = append(got, k)
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BlobKeys over %d jobs (-want +got):\n%s", jobs, diff)
	}
}
