// Package storetest is the one conformance suite every store implementation
// must pass. It uses only the store interfaces, so the same checks run
// against SQLite now and PostgreSQL later.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/easelgw/easel/internal/store"
)

// Run runs the suite. open must return a fresh, empty store for each call;
// Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	setup := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("closing store: %v", err)
			}
		})
		return s
	}
	t.Run("Jobs", func(t *testing.T) {
		t.Parallel()
		t.Run("CreateGetRoundTrip", func(t *testing.T) { t.Parallel(); testJobRoundTrip(t, setup(t)) })
		t.Run("CreateInvalid", func(t *testing.T) { t.Parallel(); testJobCreateInvalid(t, setup(t)) })
		t.Run("Ownership", func(t *testing.T) { t.Parallel(); testJobOwnership(t, setup(t)) })
		t.Run("Update", func(t *testing.T) { t.Parallel(); testJobUpdate(t, setup(t)) })
		t.Run("UpdateConcurrent", func(t *testing.T) { t.Parallel(); testJobUpdateConcurrent(t, setup(t)) })
		t.Run("ListPagination", func(t *testing.T) { t.Parallel(); testJobListPagination(t, setup(t)) })
		t.Run("ListLimitClamp", func(t *testing.T) { t.Parallel(); testJobListClamp(t, setup(t)) })
		t.Run("ListBadCursor", func(t *testing.T) { t.Parallel(); testJobListBadCursor(t, setup(t)) })
		t.Run("Retention", func(t *testing.T) { t.Parallel(); testJobRetention(t, setup(t)) })
		t.Run("BlobKeys", func(t *testing.T) { t.Parallel(); testJobBlobKeys(t, setup(t)) })
		t.Run("BlobKeysPages", func(t *testing.T) { t.Parallel(); testJobBlobKeysPages(t, setup(t)) })
	})
	t.Run("Keys", func(t *testing.T) {
		t.Parallel()
		t.Run("CRUD", func(t *testing.T) { t.Parallel(); testKeys(t, setup(t)) })
		t.Run("Revoke", func(t *testing.T) { t.Parallel(); testKeyRevoke(t, setup(t)) })
	})
	t.Run("Usage", func(t *testing.T) {
		t.Parallel()
		t.Run("Windows", func(t *testing.T) { t.Parallel(); testUsage(t, setup(t)) })
		t.Run("RecordWithin", func(t *testing.T) { t.Parallel(); testUsageWithin(t, setup(t)) })
		t.Run("PurgeBefore", func(t *testing.T) { t.Parallel(); testUsagePurge(t, setup(t)) })
		t.Run("Refund", func(t *testing.T) { t.Parallel(); testUsageRefund(t, setup(t)) })
	})
	t.Run("Idempotency", func(t *testing.T) {
		t.Parallel()
		t.Run("ClaimConflictExpiry", func(t *testing.T) { t.Parallel(); testIdemClaim(t, setup(t)) })
		t.Run("ConcurrentClaims", func(t *testing.T) { t.Parallel(); testIdemConcurrent(t, setup(t)) })
		t.Run("Purge", func(t *testing.T) { t.Parallel(); testIdemPurge(t, setup(t)) })
	})
}

// base is a fixed, millisecond-aligned instant so records compare exactly.
var base = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// jobOpts compares records with JSON compared by meaning and nil equal to
// empty.
var jobOpts = cmp.Options{
	cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().Type() != reflect.TypeFor[json.RawMessage]()
	}, cmpopts.EquateEmpty()),
	cmp.Comparer(func(a, b json.RawMessage) bool {
		if len(a) == 0 || len(b) == 0 {
			return len(a) == len(b)
		}
		var x, y any
		if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
			return false
		}
		return cmp.Equal(x, y)
	}),
}

func fullJob(id, keyID string, created time.Time) *store.JobRecord {
	return &store.JobRecord{
		ID:          id,
		KeyID:       keyID,
		Model:       "flux-schnell",
		Backend:     "hf-flux",
		Status:      store.StatusSucceeded,
		Progress:    json.RawMessage(`[{"step":4,"total":4}]`),
		Created:     created,
		Started:     created.Add(time.Second),
		Finished:    created.Add(9 * time.Second),
		N:           2,
		Width:       1024,
		Height:      768,
		Request:     json.RawMessage(`{"prompt":"a red fox in snow","size":"1024x768","n":2}`),
		UpstreamIDs: []string{"up-1", "up-1"},
		ResumeState: json.RawMessage(`{"event_id":"abc","session":"s1"}`),
		Images: []store.ImageRecord{
			{Key: "aa11.png", MIME: "image/png", Width: 1024, Height: 768, Bytes: 123456},
			{Key: "bb22.webp", MIME: "image/webp", Width: 1024, Height: 768, Bytes: 65432},
		},
		InputKeys:      []string{"cc33.png", "dd44.jpg"},
		Error:          &store.JobError{Kind: "rate_limited", Message: "slow down", RetryAfterMS: 1500},
		IdempotencyKey: "idem-1",
		RequestHash:    "hash-1",
		WebhookURL:     "https://hooks.example/x",
	}
}

func minimalJob(id, keyID, status string, created time.Time) *store.JobRecord {
	return &store.JobRecord{ID: id, KeyID: keyID, Model: "m", Status: status, Created: created, N: 1}
}

func mustCreate(t *testing.T, s store.Store, rec *store.JobRecord) {
	t.Helper()
	if err := s.Jobs().Create(t.Context(), rec); err != nil {
		t.Fatalf("Create(%s): %v", rec.ID, err)
	}
}

func testJobRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	want := fullJob("job-1", "key-a", base)
	mustCreate(t, s, want)
	if want.Version != 1 {
		t.Errorf("Version after Create = %d, want 1", want.Version)
	}
	for _, asKey := range []string{"key-a", ""} {
		got, err := s.Jobs().Get(ctx, "job-1", asKey)
		if err != nil {
			t.Fatalf("Get as %q: %v", asKey, err)
		}
		if diff := cmp.Diff(want, got, jobOpts); diff != "" {
			t.Errorf("Get as %q (-want +got):\n%s", asKey, diff)
		}
	}
	// A minimal record comes back with its zero fields intact.
	minRec := minimalJob("job-2", "", store.StatusQueued, base.Add(time.Millisecond))
	mustCreate(t, s, minRec)
	got, err := s.Jobs().Get(ctx, "job-2", "")
	if err != nil {
		t.Fatalf("Get minimal: %v", err)
	}
	if diff := cmp.Diff(minRec, got, jobOpts); diff != "" {
		t.Errorf("minimal record (-want +got):\n%s", diff)
	}
	if !got.Started.IsZero() || !got.Finished.IsZero() || got.Error != nil {
		t.Errorf("unset fields came back set: started %v finished %v error %v", got.Started, got.Finished, got.Error)
	}
	if _, err := s.Jobs().Get(ctx, "nope", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
	dup := minimalJob("job-1", "key-b", store.StatusQueued, base)
	if err := s.Jobs().Create(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Create(duplicate id) error = %v, want ErrConflict", err)
	}
	// The failed duplicate did not overwrite the original.
	if got, err := s.Jobs().Get(ctx, "job-1", "key-a"); err != nil || got.Model != "flux-schnell" {
		t.Errorf("original after duplicate Create: %+v, %v", got, err)
	}
}

func testJobCreateInvalid(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		name string
		rec  *store.JobRecord
	}{
		{"nil", nil},
		{"no id", minimalJob("", "k", store.StatusQueued, base)},
		{"no created", minimalJob("j", "k", store.StatusQueued, time.Time{})},
		{"no status", minimalJob("j", "k", "", base)},
		{"bad progress JSON", func() *store.JobRecord {
			r := minimalJob("j", "k", store.StatusQueued, base)
			r.Progress = json.RawMessage(`{not json`)
			return r
		}()},
	}
	for _, tt := range tests {
		if err := s.Jobs().Create(ctx, tt.rec); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create(%s) error = %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, err := s.Jobs().Get(ctx, "j", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an invalid Create left a record: Get error = %v", err)
	}
}

func testJobOwnership(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, minimalJob("a1", "key-a", store.StatusQueued, base))
	mustCreate(t, s, minimalJob("b1", "key-b", store.StatusQueued, base.Add(time.Second)))
	tests := []struct {
		id, key string
		found   bool
	}{
		{"a1", "key-a", true},
		{"a1", "key-b", false},
		{"b1", "key-a", false},
		{"b1", "key-b", true},
		{"a1", "", true},
		{"b1", "", true},
		{"a1", "key-c", false},
	}
	for _, tt := range tests {
		_, err := s.Jobs().Get(ctx, tt.id, tt.key)
		if tt.found && err != nil {
			t.Errorf("Get(%s as %q): %v", tt.id, tt.key, err)
		}
		if !tt.found && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s as %q) error = %v, want ErrNotFound", tt.id, tt.key, err)
		}
	}
	for key, want := range map[string][]string{"key-a": {"a1"}, "key-b": {"b1"}, "key-c": nil, "": {"b1", "a1"}} {
		page, _, err := s.Jobs().List(ctx, key, "", 100)
		if err != nil {
			t.Fatalf("List(%q): %v", key, err)
		}
		if diff := cmp.Diff(want, ids(page), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("List(%q) ids (-want +got):\n%s", key, diff)
		}
	}
}

func ids(recs []*store.JobRecord) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func testJobUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, minimalJob("j", "key-a", store.StatusQueued, base))
	started := base.Add(2 * time.Second)
	err := s.Jobs().Update(ctx, "j", func(r *store.JobRecord) error {
		r.Status = store.StatusRunning
		r.Started = started
		r.Backend = "b1"
		r.UpstreamIDs = []string{"u1"}
		r.ResumeState = json.RawMessage(`{"x":1}`)
		r.InputKeys = []string{"in-1.png"}
		r.Version = 99 // ignored: the store owns Version
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := s.Jobs().Get(ctx, "j", "key-a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := minimalJob("j", "key-a", store.StatusRunning, base)
	want.Started, want.Backend, want.UpstreamIDs, want.ResumeState, want.Version = started, "b1", []string{"u1"}, json.RawMessage(`{"x":1}`), 2
	want.InputKeys = []string{"in-1.png"}
	if diff := cmp.Diff(want, got, jobOpts); diff != "" {
		t.Errorf("after Update (-want +got):\n%s", diff)
	}

	// A failing f writes nothing and its error comes back.
	errStop := errors.New("stop")
	err = s.Jobs().Update(ctx, "j", func(r *store.JobRecord) error {
		r.Status = store.StatusFailed
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Errorf("Update with failing f error = %v, want errStop", err)
	}
	// Changing identity is refused and writes nothing.
	for name, f := range map[string]func(*store.JobRecord) error{
		"id":    func(r *store.JobRecord) error { r.ID = "other"; r.Status = store.StatusFailed; return nil },
		"owner": func(r *store.JobRecord) error { r.KeyID = "key-b"; r.Status = store.StatusFailed; return nil },
		"json": func(r *store.JobRecord) error {
			r.Request = json.RawMessage(`{`)
			r.Status = store.StatusFailed
			return nil
		},
	} {
		if err := s.Jobs().Update(ctx, "j", f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Update changing %s error = %v, want ErrInvalid", name, err)
		}
	}
	got, err = s.Jobs().Get(ctx, "j", "key-a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Status != store.StatusRunning || got.Version != 2 {
		t.Errorf("refused Updates changed the record: status %q version %d", got.Status, got.Version)
	}
	if _, err := s.Jobs().Get(ctx, "other", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused id change created a record: %v", err)
	}
	called := false
	err = s.Jobs().Update(ctx, "missing", func(*store.JobRecord) error { called = true; return nil })
	if !errors.Is(err, store.ErrNotFound) || called {
		t.Errorf("Update(missing) error = %v, f called %v; want ErrNotFound and no call", err, called)
	}
}

func testJobUpdateConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	rec := minimalJob("j", "k", store.StatusRunning, base)
	rec.Progress = json.RawMessage(`{"count":0}`)
	mustCreate(t, s, rec)
	const workers = 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			errs <- s.Jobs().Update(ctx, "j", func(r *store.JobRecord) error {
				var p struct{ Count int }
				if err := json.Unmarshal(r.Progress, &p); err != nil {
					return err
				}
				p.Count++
				b, err := json.Marshal(map[string]int{"count": p.Count})
				r.Progress = b
				return err
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Update: %v", err)
		}
	}
	got, err := s.Jobs().Get(ctx, "j", "")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	var p struct{ Count int }
	if err := json.Unmarshal(got.Progress, &p); err != nil {
		t.Fatalf("decoding progress %s: %v", got.Progress, err)
	}
	if p.Count != workers || got.Version != workers+1 {
		t.Errorf("after %d concurrent increments: count %d, version %d; want %d, %d", workers, p.Count, got.Version, workers, workers+1)
	}
}

func testJobListPagination(t *testing.T, s store.Store) {
	ctx := t.Context()
	// 25 jobs for key-a in groups of 3 sharing a creation time (ties are
	// broken by id), 6 for key-b interleaved with them.
	var wantA, wantAll []*store.JobRecord
	for i := range 25 {
		rec := minimalJob(fmt.Sprintf("a%02d", i), "key-a", store.StatusSucceeded, base.Add(time.Duration(i/3)*time.Second))
		mustCreate(t, s, rec)
		wantA = append(wantA, rec)
		wantAll = append(wantAll, rec)
	}
	for i := range 6 {
		rec := minimalJob(fmt.Sprintf("b%02d", i), "key-b", store.StatusQueued, base.Add(time.Duration(i)*time.Second))
		mustCreate(t, s, rec)
		wantAll = append(wantAll, rec)
	}
	newestFirst := func(recs []*store.JobRecord) []string {
		recs = slices.Clone(recs)
		slices.SortFunc(recs, func(a, b *store.JobRecord) int {
			if c := b.Created.Compare(a.Created); c != 0 {
				return c
			}
			return cmpString(b.ID, a.ID)
		})
		return ids(recs)
	}
	for _, tt := range []struct {
		key   string
		limit int
		want  []string
	}{
		{"key-a", 7, newestFirst(wantA)},
		{"key-a", 1, newestFirst(wantA)},
		{"key-a", 25, newestFirst(wantA)},
		{"key-a", 3, newestFirst(wantA)},
		{"", 4, newestFirst(wantAll)},
	} {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatalf("List(%q, limit %d) did not end", tt.key, tt.limit)
			}
			page, next, err := s.Jobs().List(ctx, tt.key, cursor, tt.limit)
			if err != nil {
				t.Fatalf("List(%q, limit %d, page %d): %v", tt.key, tt.limit, pages, err)
			}
			if len(page) > tt.limit || (next != "" && len(page) != tt.limit) {
				t.Fatalf("List(%q, limit %d) page %d has %d jobs with next %q", tt.key, tt.limit, pages, len(page), next)
			}
			got = append(got, ids(page)...)
			if next == "" {
				break
			}
			cursor = next
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("List(%q) with limit %d, all pages (-want +got):\n%s", tt.key, tt.limit, diff)
		}
	}
	// The first page carries full records.
	page, _, err := s.Jobs().List(ctx, "key-b", "", 1)
	if err != nil || len(page) != 1 {
		t.Fatalf("List(key-b, 1) = %d jobs, %v", len(page), err)
	}
	want := minimalJob("b05", "key-b", store.StatusQueued, base.Add(5*time.Second))
	want.Version = 1
	if diff := cmp.Diff(want, page[0], jobOpts); diff != "" {
		t.Errorf("listed record (-want +got):\n%s", diff)
	}
	// An empty listing is one empty last page.
	page, next, err := s.Jobs().List(ctx, "key-none", "", 10)
	if err != nil || len(page) != 0 || next != "" {
		t.Errorf("List(no jobs) = %d jobs, next %q, %v; want none", len(page), next, err)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testJobListClamp(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range store.MaxListLimit + 5 {
		mustCreate(t, s, minimalJob(fmt.Sprintf("j%03d", i), "k", store.StatusQueued, base.Add(time.Duration(i)*time.Millisecond)))
	}
	for _, tt := range []struct{ limit, want int }{{0, 1}, {-5, 1}, {1, 1}, {50, 50}, {100, 100}, {1000, 100}} {
		page, next, err := s.Jobs().List(ctx, "k", "", tt.limit)
		if err != nil {
			t.Fatalf("List(limit %d): %v", tt.limit, err)
		}
		if len(page) != tt.want || next == "" {
			t.Errorf("List(limit %d) = %d jobs, next %q; want %d and a next page", tt.limit, len(page), next, tt.want)
		}
	}
}

func testJobListBadCursor(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, minimalJob("j1", "k", store.StatusQueued, base))
	mustCreate(t, s, minimalJob("j2", "k", store.StatusQueued, base.Add(time.Second)))
	_, good, err := s.Jobs().List(ctx, "k", "", 1)
	if err != nil || good == "" {
		t.Fatalf("List: next %q, %v", good, err)
	}
	for _, c := range []string{
		"garbage!", "%%%", "bm90IGEgY3Vyc29y", // base64 of "not a cursor"
		good[:len(good)-3], good + "x", "YzE6MTIzOg", // "c1:123:" (no id)
		"YzE6YWJjOmlk", // "c1:abc:id"
		string(make([]byte, 5000)),
	} {
		if _, _, err := s.Jobs().List(ctx, "k", c, 10); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("List(cursor %.20q) error = %v, want ErrBadCursor", c, err)
		}
	}
	page, next, err := s.Jobs().List(ctx, "k", good, 1)
	if err != nil || len(page) != 1 || page[0].ID != "j1" || next != "" {
		t.Errorf("List(good cursor) = %v, %q, %v; want [j1], no next", ids(page), next, err)
	}
}

func testJobRetention(t *testing.T, s store.Store) {
	ctx := t.Context()
	cutoff := base.Add(time.Hour)
	mk := func(id, status string, finished time.Time) {
		rec := minimalJob(id, "k", status, base)
		rec.Finished = finished
		rec.Images = []store.ImageRecord{{Key: id + ".png", MIME: "image/png", Width: 1, Height: 1, Bytes: 1}}
		mustCreate(t, s, rec)
	}
	mk("old-ok", store.StatusSucceeded, base.Add(10*time.Minute))
	mk("old-failed", store.StatusFailed, base.Add(20*time.Minute))
	mk("old-canceled", store.StatusCanceled, base.Add(30*time.Minute))
	mk("at-cutoff", store.StatusSucceeded, cutoff) // not before t
	mk("new-ok", store.StatusSucceeded, cutoff.Add(time.Minute))
	mk("old-running", store.StatusRunning, time.Time{})
	mk("old-queued", store.StatusQueued, time.Time{})

	if _, err := s.Jobs().DeleteFinishedBefore(ctx, cutoff, 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("DeleteFinishedBefore(limit 0) error = %v, want ErrInvalid", err)
	}
	first, err := s.Jobs().DeleteFinishedBefore(ctx, cutoff, 2)
	if err != nil {
		t.Fatalf("DeleteFinishedBefore: %v", err)
	}
	rest, err := s.Jobs().DeleteFinishedBefore(ctx, cutoff, 100)
	if err != nil {
		t.Fatalf("DeleteFinishedBefore: %v", err)
	}
	again, err := s.Jobs().DeleteFinishedBefore(ctx, cutoff, 100)
	if err != nil {
		t.Fatalf("DeleteFinishedBefore: %v", err)
	}
	if diff := cmp.Diff([][]string{{"old-ok", "old-failed"}, {"old-canceled"}, {}}, [][]string{ids(first), ids(rest), ids(again)}); diff != "" {
		t.Errorf("deleted batches (-want +got):\n%s", diff)
	}
	if len(first) > 0 && (len(first[0].Images) != 1 || first[0].Images[0].Key != "old-ok.png") {
		t.Errorf("deleted record lost its images: %+v", first[0].Images)
	}
	for _, id := range []string{"old-ok", "old-failed", "old-canceled"} {
		if _, err := s.Jobs().Get(ctx, id, ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s) after retention error = %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{"at-cutoff", "new-ok", "old-running", "old-queued"} {
		if _, err := s.Jobs().Get(ctx, id, ""); err != nil {
			t.Errorf("Get(%s) after retention: %v (it must be kept)", id, err)
		}
	}
}

func newKeyRecord(t *testing.T, id string, created time.Time) store.KeyRecord {
	t.Helper()
	return store.KeyRecord{
		ID:                id,
		Hash:              store.Hash([]byte("pepper"), "sk-user_"+id+"_secret"),
		Prefix:            "sk-user_" + id + "_…abcd",
		Name:              "key " + id,
		Scopes:            []string{store.KindUser},
		Created:           created,
		RequestsPerMinute: 60,
		ConcurrentJobs:    2,
		ImagesPerDay:      500,
		WebhookSecret:     "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
		WebhookURL:        "https://hooks.example/" + id,
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.Keys().List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("List(empty) = %v, %v", got, err)
	}
	k2 := newKeyRecord(t, "bbbb2222", base.Add(time.Second))
	k1 := newKeyRecord(t, "aaaa1111", base)
	k1.Scopes = []string{store.KindAdmin, store.KindUser}
	k1.LastUsed = base.Add(time.Minute)
	// Negative limits mean "unlimited" and must survive the round trip.
	k1.RequestsPerMinute, k1.ImagesPerDay = -1, -1
	k2.WebhookURL = ""
	for _, k := range []store.KeyRecord{k2, k1} {
		if err := s.Keys().Create(ctx, k); err != nil {
			t.Fatalf("Create(%s): %v", k.ID, err)
		}
	}
	got, err := s.Keys().ByID(ctx, "aaaa1111")
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	if diff := cmp.Diff(&k1, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ByID (-want +got):\n%s", diff)
	}
	list, err := s.Keys().List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff([]store.KeyRecord{k1, k2}, list, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("List, oldest first (-want +got):\n%s", diff)
	}
	if _, err := s.Keys().ByID(ctx, "missing0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ByID(missing) error = %v, want ErrNotFound", err)
	}
	dup := newKeyRecord(t, "aaaa1111", base)
	dup.Name = "impostor"
	if err := s.Keys().Create(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Create(duplicate) error = %v, want ErrConflict", err)
	}
	for name, bad := range map[string]store.KeyRecord{
		"no id":      func() store.KeyRecord { k := newKeyRecord(t, "", base); return k }(),
		"no hash":    func() store.KeyRecord { k := newKeyRecord(t, "cccc3333", base); k.Hash = nil; return k }(),
		"short hash": func() store.KeyRecord { k := newKeyRecord(t, "cccc3333", base); k.Hash = k.Hash[:16]; return k }(),
		"no created": func() store.KeyRecord { k := newKeyRecord(t, "cccc3333", time.Time{}); return k }(),
	} {
		if err := s.Keys().Create(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create(%s) error = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Keys().ByID(ctx, "cccc3333"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an invalid Create stored a key: %v", err)
	}

	// Touch moves LastUsed forward only.
	later := base.Add(time.Hour)
	for _, at := range []time.Time{later, base.Add(2 * time.Minute)} {
		if err := s.Keys().Touch(ctx, "aaaa1111", at); err != nil {
			t.Fatalf("Touch: %v", err)
		}
	}
	if got, err := s.Keys().ByID(ctx, "aaaa1111"); err != nil || !got.LastUsed.Equal(later) {
		t.Errorf("LastUsed after Touch = %v, %v; want %v", got.LastUsed, err, later)
	}
	if err := s.Keys().Touch(ctx, "missing0", later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Touch(missing) error = %v, want ErrNotFound", err)
	}
}

func testKeyRevoke(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"aaaa1111", "bbbb2222"} {
		if err := s.Keys().Create(ctx, newKeyRecord(t, id, base)); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	at := base.Add(time.Hour)
	if err := s.Keys().Revoke(ctx, "aaaa1111", at); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := s.Keys().Revoke(ctx, "aaaa1111", at.Add(time.Hour)); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	got, err := s.Keys().ByID(ctx, "aaaa1111")
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	if got.Revoked == nil || !got.Revoked.Equal(at) {
		t.Errorf("Revoked = %v, want %v (the first revocation)", got.Revoked, at)
	}
	other, err := s.Keys().ByID(ctx, "bbbb2222")
	if err != nil || other.Revoked != nil {
		t.Errorf("revoking one key touched another: %+v, %v", other, err)
	}
	if err := s.Keys().Revoke(ctx, "missing0", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revoke(missing) error = %v, want ErrNotFound", err)
	}
}

func testUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.Usage().ImagesSince(ctx, "key-a", base); err != nil || n != 0 {
		t.Fatalf("ImagesSince(no usage) = %d, %v; want 0", n, err)
	}
	records := []struct {
		key    string
		at     time.Duration
		images int
	}{
		{"key-a", -25 * time.Hour, 4},
		{"key-a", -23 * time.Hour, 2},
		{"key-a", -time.Hour, 1},
		{"key-a", 0, 3},
		{"key-b", -time.Hour, 10},
	}
	for _, r := range records {
		if err := s.Usage().Record(ctx, r.key, base.Add(r.at), r.images); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	for _, tt := range []struct {
		key   string
		since time.Duration
		want  int
	}{
		{"key-a", -48 * time.Hour, 10},
		{"key-a", -24 * time.Hour, 6},
		{"key-a", -23 * time.Hour, 6}, // at the boundary counts
		{"key-a", -time.Hour + time.Millisecond, 3},
		{"key-a", time.Millisecond, 0},
		{"key-b", -24 * time.Hour, 10},
		{"key-c", -48 * time.Hour, 0},
	} {
		n, err := s.Usage().ImagesSince(ctx, tt.key, base.Add(tt.since))
		if err != nil || n != tt.want {
			t.Errorf("ImagesSince(%s, %v) = %d, %v; want %d", tt.key, tt.since, n, err, tt.want)
		}
	}
	if err := s.Usage().Record(ctx, "key-a", base, -1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Record(-1 images) error = %v, want ErrInvalid", err)
	}
}

func testUsageWithin(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := base.Add(-24 * time.Hour)
	// Usage outside the window does not count against the quota.
	if err := s.Usage().Record(ctx, "key-a", day.Add(-time.Minute), 100); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if err := s.Usage().Record(ctx, "key-a", base.Add(-time.Hour), 3); err != nil {
		t.Fatalf("Record: %v", err)
	}
	const racers, quota = 30, 10
	oks := make(chan bool, racers)
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			ok, err := s.Usage().RecordWithin(ctx, "key-a", base, 1, day, quota)
			if err != nil {
				t.Errorf("RecordWithin: %v", err)
			}
			oks <- ok
		})
	}
	wg.Wait()
	close(oks)
	accepted := 0
	for ok := range oks {
		if ok {
			accepted++
		}
	}
	if accepted != quota-3 {
		t.Errorf("%d of %d concurrent requests fit a quota of %d with 3 used, want %d", accepted, racers, quota, quota-3)
	}
	if n, err := s.Usage().ImagesSince(ctx, "key-a", day); err != nil || n != quota {
		t.Errorf("ImagesSince after quota = %d, %v; want %d", n, err, quota)
	}
	// A request larger than what is left is refused whole.
	if ok, err := s.Usage().RecordWithin(ctx, "key-b", base, 4, day, 3); err != nil || ok {
		t.Errorf("RecordWithin(4 over a quota of 3) = %v, %v; want refused", ok, err)
	}
	if ok, err := s.Usage().RecordWithin(ctx, "key-b", base, 3, day, 3); err != nil || !ok {
		t.Errorf("RecordWithin(3 within a quota of 3) = %v, %v; want recorded", ok, err)
	}
	if _, err := s.Usage().RecordWithin(ctx, "key-b", base, -1, day, 3); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RecordWithin(-1) error = %v, want ErrInvalid", err)
	}
}

func testUsagePurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i, at := range []time.Duration{-72 * time.Hour, -49 * time.Hour, -48 * time.Hour, -time.Hour} {
		if err := s.Usage().Record(ctx, fmt.Sprintf("key-%d", i%2), base.Add(at), 1); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	n, err := s.Usage().PurgeBefore(ctx, base.Add(-48*time.Hour))
	if err != nil || n != 2 {
		t.Errorf("PurgeBefore = %d, %v; want 2", n, err)
	}
	total := 0
	for _, key := range []string{"key-0", "key-1"} {
		m, err := s.Usage().ImagesSince(ctx, key, base.Add(-100*time.Hour))
		if err != nil {
			t.Fatalf("ImagesSince: %v", err)
		}
		total += m
	}
	if total != 2 {
		t.Errorf("%d images left after PurgeBefore, want 2 (at and after the cut)", total)
	}
}

func testUsageRefund(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := base.Add(-24 * time.Hour)
	reserved := base.Add(-2 * time.Hour)
	if ok, err := s.Usage().RecordWithin(ctx, "key-a", reserved, 4, day, 5); err != nil || !ok {
		t.Fatalf("RecordWithin(4 of 5) = %v, %v", ok, err)
	}
	if ok, err := s.Usage().RecordWithin(ctx, "key-a", base, 2, day, 5); err != nil || ok {
		t.Fatalf("RecordWithin(2 more over 5) = %v, %v; want refused", ok, err)
	}
	// The job made 1 image of the 4 it reserved.
	if err := s.Usage().Refund(ctx, "key-a", reserved, 3); err != nil {
		t.Fatalf("Refund: %v", err)
	}
	if n, err := s.Usage().ImagesSince(ctx, "key-a", day); err != nil || n != 1 {
		t.Errorf("ImagesSince after refund = %d, %v; want 1", n, err)
	}
	if ok, err := s.Usage().RecordWithin(ctx, "key-a", base, 4, day, 5); err != nil || !ok {
		t.Errorf("RecordWithin(4 with 1 used of 5) = %v, %v; want recorded", ok, err)
	}
	// The refund sits at the reservation's instant: once the window has
	// passed both, neither counts.
	if n, err := s.Usage().ImagesSince(ctx, "key-a", reserved.Add(time.Millisecond)); err != nil || n != 4 {
		t.Errorf("ImagesSince after the reservation = %d, %v; want 4", n, err)
	}
	if err := s.Usage().Refund(ctx, "key-a", base, 0); err != nil {
		t.Errorf("Refund(0) = %v", err)
	}
	if err := s.Usage().Refund(ctx, "key-a", base, -1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Refund(-1) error = %v, want ErrInvalid", err)
	}
	if n, err := s.Usage().PurgeBefore(ctx, base); err != nil || n != 2 {
		t.Errorf("PurgeBefore = %d, %v; want 2 (the early reservation and its refund)", n, err)
	}
}

func testIdemClaim(t *testing.T, s store.Store) {
	ctx := t.Context()
	idem := s.Idempotency()
	future := time.Now().Add(24 * time.Hour)
	type result struct {
		existing string
		conflict bool
	}
	claim := func(key, idemKey, hash, job string, exp time.Time) result {
		t.Helper()
		existing, conflict, err := idem.Claim(ctx, key, idemKey, hash, job, exp)
		if err != nil {
			t.Fatalf("Claim(%s, %s): %v", key, idemKey, err)
		}
		return result{existing, conflict}
	}
	steps := []struct {
		name            string
		key, idem, hash string
		job             string
		exp             time.Time
		want            result
	}{
		{"first claim owns the key", "key-a", "i1", "h1", "job-1", future, result{}},
		{"same request replays", "key-a", "i1", "h1", "job-2", future, result{"job-1", false}},
		{"other body conflicts", "key-a", "i1", "h2", "job-3", future, result{"job-1", true}},
		{"other API key is independent", "key-b", "i1", "h1", "job-4", future, result{}},
		{"other idempotency key is independent", "key-a", "i2", "h1", "job-5", future, result{}},
		{"expired claim", "key-a", "i3", "h1", "job-6", time.Now().Add(-time.Second), result{}},
		{"after expiry a new claim owns it", "key-a", "i3", "h9", "job-7", future, result{}},
		{"and replays to the new job", "key-a", "i3", "h9", "job-8", future, result{"job-7", false}},
	}
	for _, st := range steps {
		if got := claim(st.key, st.idem, st.hash, st.job, st.exp); got != st.want {
			t.Errorf("%s: Claim = %+v, want %+v", st.name, got, st.want)
		}
	}
	for name, args := range map[string][2]string{"no idempotency key": {"", "job"}, "no job id": {"i9", ""}} {
		if _, _, err := idem.Claim(ctx, "key-a", args[0], "h", args[1], future); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Claim(%s) error = %v, want ErrInvalid", name, err)
		}
	}
}

func testIdemConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const racers = 10
	type result struct {
		job, existing string
		err           error
	}
	results := make(chan result, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			job := fmt.Sprintf("job-%d", i)
			existing, _, err := s.Idempotency().Claim(ctx, "key-a", "same", "h", job, time.Now().Add(time.Hour))
			results <- result{job, existing, err}
		})
	}
	wg.Wait()
	close(results)
	var winners []string
	var seen []string
	for r := range results {
		if r.err != nil {
			t.Fatalf("Claim: %v", r.err)
		}
		if r.existing == "" {
			winners = append(winners, r.job)
		} else {
			seen = append(seen, r.existing)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d claims won, want exactly 1: %v", len(winners), winners)
	}
	for _, e := range seen {
		if e != winners[0] {
			t.Errorf("a losing claim saw job %s, want the winner %s", e, winners[0])
		}
	}
}

func testIdemPurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	for i, exp := range []time.Time{now.Add(-time.Hour), now.Add(-time.Minute), now, now.Add(time.Hour)} {
		if _, _, err := s.Idempotency().Claim(ctx, "key-a", fmt.Sprintf("i%d", i), "h", fmt.Sprintf("job-%d", i), exp); err != nil {
			t.Fatalf("Claim: %v", err)
		}
	}
	n, err := s.Idempotency().Purge(ctx, now)
	if err != nil || n != 3 {
		t.Errorf("Purge = %d, %v; want 3 (expiry at or before now)", n, err)
	}
	n, err = s.Idempotency().Purge(ctx, now)
	if err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0", n, err)
	}
	// The live claim survived.
	existing, _, err := s.Idempotency().Claim(ctx, "key-a", "i3", "h", "job-new", now.Add(time.Hour))
	if err != nil || existing != "job-3" {
		t.Errorf("live claim after Purge: existing %q, %v; want job-3", existing, err)
	}
	// A purged key can be claimed afresh.
	existing, _, err = s.Idempotency().Claim(ctx, "key-a", "i0", "h2", "job-new", now.Add(time.Hour))
	if err != nil || existing != "" {
		t.Errorf("claim of purged key: existing %q, %v; want a fresh claim", existing, err)
	}
}
