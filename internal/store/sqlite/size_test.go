package sqlite

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/store"
)

// TestDBSizePer10k measures the database file size for 10,000 realistic
// finished jobs with one image each, the number the retention and disk
// sizing docs quote. It asserts the count and a generous size ceiling so a
// schema change that bloats records shows up here.
func TestDBSizePer10k(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "easel.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	const jobs = 10_000
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	// One transaction per 500 jobs keeps the run short; the rows are the
	// same as Create writes (it shares jobArgs).
	for batch := 0; batch < jobs; batch += 500 {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		for i := batch; i < batch+500; i++ {
			rec := realisticJob(i, base.Add(time.Duration(i)*time.Second))
			rec.Version = 1
			args, err := jobArgs(rec)
			if err != nil {
				t.Fatalf("jobArgs: %v", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
				t.Fatalf("insert: %v", err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	// One record through the public path too, so the measured rows are
	// known to read back.
	if got, err := s.Jobs().Get(ctx, "job_00004242", ""); err != nil || len(got.Images) != 1 || got.Status != store.StatusSucceeded {
		t.Fatalf("Get(sample) = %+v, %v", got, err)
	}
	var count int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM jobs WHERE status = 'succeeded' AND images IS NOT NULL`).Scan(&count); err != nil {
		t.Fatalf("count: %v", err)
	}
	if count != jobs {
		t.Fatalf("stored %d finished jobs, want %d", count, jobs)
	}
	if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	perJob := float64(fi.Size()) / jobs
	t.Logf("%d finished jobs with 1 image each: %.2f MiB (%.0f bytes/job) after checkpoint; inserted in %v",
		jobs, float64(fi.Size())/(1<<20), perJob, time.Since(start).Round(time.Millisecond))
	if perJob > 4096 {
		t.Errorf("%.0f bytes per job, more than the 4 KiB budget", perJob)
	}
}

func realisticJob(i int, created time.Time) *store.JobRecord {
	req, _ := json.Marshal(map[string]any{
		"prompt":          fmt.Sprintf("a watercolor painting of a lighthouse on a cliff at dusk, seagulls, soft light, variation %d", i),
		"size":            "1024x1024",
		"n":               1,
		"output_format":   "png",
		"response_format": "url",
	})
	return &store.JobRecord{
		ID:          fmt.Sprintf("job_%08d", i),
		KeyID:       fmt.Sprintf("key%05d", i%20),
		Model:       "flux-schnell",
		Backend:     "hf-flux-schnell",
		Status:      store.StatusSucceeded,
		Progress:    json.RawMessage(`[{"type":"progress","index":0,"step":4,"total":4}]`),
		Created:     created,
		Started:     created.Add(300 * time.Millisecond),
		Finished:    created.Add(7 * time.Second),
		N:           1,
		Width:       1024,
		Height:      1024,
		Request:     req,
		UpstreamIDs: []string{fmt.Sprintf("evt_%016x", i*7919)},
		Images: []store.ImageRecord{{
			Key:    fmt.Sprintf("%064x.png", i*104729),
			MIME:   "image/png",
			Width:  1024,
			Height: 1024,
			Bytes:  1_400_000,
		}},
		IdempotencyKey: fmt.Sprintf("idem-%d", i),
		RequestHash:    fmt.Sprintf("%064x", i*31),
	}
}
