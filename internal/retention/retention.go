// Package retention removes what the gateway no longer has to keep: job
// records past their retention, result and input images no live record
// names, expired idempotency keys and old usage counts.
//
// Files are swept by mark and sweep rather than deleted alongside their
// records, because a result is content-addressed and may be shared by
// several jobs, and because a crash between writing a file and recording
// it leaves a file that no record will ever name. One rule covers expired
// results, inputs of deleted jobs and such orphans: a blob that no live
// job names and that has not been written for a grace period goes. The
// grace period is what keeps a file that a running job has written but not
// yet recorded; a Put of bytes that are already stored renews it.
//
// Records are always deleted before the files they name, so a crash
// between the two leaves files without records, which the next sweep
// removes, and never a record pointing at a missing file.
package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/store"
)

// Defaults for zero Options fields. Results, Records and Interval match the
// configuration's defaults (retention.results, .jobs and .interval).
const (
	// DefaultResults is how long result images outlive their job.
	DefaultResults = 7 * 24 * time.Hour
	// DefaultRecords is how long finished job records are kept.
	DefaultRecords = 30 * 24 * time.Hour
	// DefaultInterval is the time between sweeps.
	DefaultInterval = 10 * time.Minute
	// DefaultGrace is how long a blob no record names is left alone after
	// it was written: far longer than any job takes between storing a
	// file and recording it.
	DefaultGrace = time.Hour
	// DefaultBatchSize is how many job records one transaction deletes.
	DefaultBatchSize = 500
	// UsageKeep is how long usage counts are kept: twice the longest quota
	// window (images per day), so no window ever misses a count.
	UsageKeep = 48 * time.Hour
)

// maxErrors caps how many individual blob failures one Report error
// carries; the rest are only counted.
const maxErrors = 5

// Options configures a Cleaner. Jobs and Blobs are required; zero
// durations take the defaults above.
type Options struct {
	// Jobs holds the job records; expired ones are deleted and live ones
	// mark the blobs that stay.
	Jobs store.Jobs
	// Idempotency claims past their expiry are purged; nil skips them.
	Idempotency store.Idempotency
	// Usage counts older than UsageKeep are purged; nil skips them.
	Usage store.Usage
	// Blobs holds results and inputs. It must implement blob.Lister. When
	// it also implements blob.StaleDeleter, deletes are checked against
	// a concurrent re-Put of the same bytes; when it implements
	// blob.TempCollector, temp files older than Grace are removed too.
	Blobs blob.Bucket
	// Results is how long a job's result and input images are kept after
	// the job finished. The job's record may live on without them.
	Results time.Duration
	// Records is how long a finished job's record is kept.
	Records time.Duration
	// Interval is the time between sweeps in Run.
	Interval time.Duration
	// Grace is how long a blob that no live record names is kept after it
	// was last written. When Results is shorter, Results is used instead,
	// so that an operator's short retention is honoured; jobs record their
	// blobs within moments of writing them, so that is still safe.
	Grace time.Duration
	// BatchSize is how many job records one delete transaction removes, so
	// a large backlog never holds the database for long.
	BatchSize int
	// Now is the clock; nil means time.Now. Blob ages are compared with
	// it, so a test clock must stay near the wall clock that stamps files.
	Now func() time.Time
	// Logger receives one line per sweep that removed something; nil
	// discards.
	Logger *slog.Logger
}

// Report counts what one sweep did.
type Report struct {
	// Jobs is how many job records were deleted.
	Jobs int
	// Referenced is how many distinct blob keys live records name.
	Referenced int
	// Blobs and Bytes are the blobs deleted and their total size.
	Blobs int
	Bytes int64
	// Failed is how many blob deletes failed; the first few are in the
	// error Sweep returns.
	Failed int
	// Temp is how many leftover temp files were removed.
	Temp int
	// IdempotencyKeys and UsageRows are the purged claims and counts.
	IdempotencyKeys int
	UsageRows       int
}

// removed reports whether the sweep deleted anything.
func (r Report) removed() bool {
	return r.Jobs+r.Blobs+r.Temp+r.IdempotencyKeys+r.UsageRows > 0
}

// Cleaner runs retention sweeps.
type Cleaner struct {
	jobs      store.Jobs
	idem      store.Idempotency
	usage     store.Usage
	blobs     blob.Bucket
	lister    blob.Lister
	results   time.Duration
	records   time.Duration
	interval  time.Duration
	grace     time.Duration
	batchSize int
	now       func() time.Time
	log       *slog.Logger

	// mu keeps sweeps from overlapping (Run and a direct Sweep call).
	mu sync.Mutex
	// afterSweep, when set by a test, sees every sweep Run makes.
	afterSweep func(Report, error)
}

// New checks o and returns a Cleaner; every problem is reported at once.
func New(o Options) (*Cleaner, error) {
	var errs []error
	if o.Jobs == nil {
		errs = append(errs, errors.New("no job store"))
	}
	var lister blob.Lister
	if o.Blobs == nil {
		errs = append(errs, errors.New("no blob bucket"))
	} else if l, ok := o.Blobs.(blob.Lister); ok {
		lister = l
	} else {
		errs = append(errs, fmt.Errorf("blob bucket %T cannot list its objects (blob.Lister)", o.Blobs))
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"results", &o.Results, DefaultResults},
		{"records", &o.Records, DefaultRecords},
		{"interval", &o.Interval, DefaultInterval},
		{"grace", &o.Grace, DefaultGrace},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case o.BatchSize < 0:
		errs = append(errs, fmt.Errorf("batch size %d is negative", o.BatchSize))
	case o.BatchSize == 0:
		o.BatchSize = DefaultBatchSize
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring retention: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Cleaner{
		jobs: o.Jobs, idem: o.Idempotency, usage: o.Usage, blobs: o.Blobs, lister: lister,
		results: o.Results, records: o.Records, interval: o.Interval, grace: min(o.Grace, o.Results),
		batchSize: o.BatchSize, now: o.Now, log: o.Logger,
	}, nil
}

// Run sweeps at once and then every Interval until ctx ends. A failed
// sweep is logged and retried at the next tick; it never stops Run.
func (c *Cleaner) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		rep, err := c.Sweep(ctx)
		c.logSweep(ctx, rep, err)
		if c.afterSweep != nil {
			c.afterSweep(rep, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Cleaner) logSweep(ctx context.Context, rep Report, err error) {
	attrs := []any{
		slog.Int("jobs", rep.Jobs), slog.Int("blobs", rep.Blobs), slog.Int64("bytes", rep.Bytes),
		slog.Int("referenced", rep.Referenced), slog.Int("temp_files", rep.Temp),
		slog.Int("idempotency_keys", rep.IdempotencyKeys), slog.Int("usage_rows", rep.UsageRows),
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down mid-sweep is not a fault; the next start resumes.
		c.log.DebugContext(ctx, "retention sweep interrupted", attrs...)
	case err != nil:
		c.log.WarnContext(ctx, "retention sweep failed", append(attrs, slog.Int("failed", rep.Failed), slog.Any("error", err))...)
	case rep.removed():
		c.log.InfoContext(ctx, "retention sweep", attrs...)
	default:
		c.log.DebugContext(ctx, "retention sweep found nothing to remove", attrs...)
	}
}

// Sweep runs one pass: purge idempotency keys and usage counts, delete
// expired job records in batches, then delete every blob that no live job
// names and that is older than the grace period, and finally leftover temp
// files. It goes on past a failing step where that is safe and returns
// every failure joined, with the counts of what it did.
func (c *Cleaner) Sweep(ctx context.Context) (Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		rep  Report
		errs []error
	)
	now := c.now()

	if c.idem != nil {
		n, err := c.idem.Purge(ctx, now)
		rep.IdempotencyKeys = n
		if err != nil {
			errs = append(errs, fmt.Errorf("purging idempotency keys: %w", err))
		}
	}
	if c.usage != nil {
		n, err := c.usage.PurgeBefore(ctx, now.Add(-UsageKeep))
		rep.UsageRows = n
		if err != nil {
			errs = append(errs, fmt.Errorf("purging usage: %w", err))
		}
	}

	n, err := c.deleteRecords(ctx, now.Add(-c.records))
	rep.Jobs = n
	if err != nil {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		return rep, errors.Join(append(errs, ctx.Err())...)
	}

	// Without a complete mark nothing may be swept: a missed key would
	// delete a live result.
	live, err := c.mark(ctx, now.Add(-c.results))
	rep.Referenced = len(live)
	if err != nil {
		return rep, errors.Join(append(errs, err)...)
	}
	if err := c.sweepBlobs(ctx, live, now.Add(-c.grace), &rep); err != nil {
		errs = append(errs, err)
	}

	if tc, ok := c.blobs.(blob.TempCollector); ok && ctx.Err() == nil {
		n, err := tc.CollectTemp(ctx, now.Add(-c.grace))
		rep.Temp = n
		if err != nil {
			errs = append(errs, fmt.Errorf("collecting temp files: %w", err))
		}
	}
	return rep, errors.Join(errs...)
}

// deleteRecords deletes finished jobs older than before, one bounded
// transaction at a time so other writers get the database in between.
func (c *Cleaner) deleteRecords(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		recs, err := c.jobs.DeleteFinishedBefore(ctx, before, c.batchSize)
		total += len(recs)
		if err != nil {
			return total, fmt.Errorf("deleting expired job records: %w", err)
		}
		if len(recs) < c.batchSize {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// mark returns every blob key a live job names.
func (c *Cleaner) mark(ctx context.Context, finishedAfter time.Time) (map[string]struct{}, error) {
	live := make(map[string]struct{})
	err := c.jobs.BlobKeys(ctx, finishedAfter, func(key string) error {
		live[key] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("marking live blobs: %w", err)
	}
	return live, nil
}

// sweepBlobs deletes every blob outside live last written before cutoff.
// A delete that fails is counted and the walk goes on; only the walk
// itself failing stops it.
func (c *Cleaner) sweepBlobs(ctx context.Context, live map[string]struct{}, cutoff time.Time, rep *Report) error {
	stale, _ := c.blobs.(blob.StaleDeleter)
	var errs []error
	err := c.lister.Walk(ctx, func(info blob.Info) error {
		if _, ok := live[info.Key]; ok || !info.Modified.Before(cutoff) {
			return nil
		}
		var (
			deleted bool
			err     error
		)
		if stale != nil {
			// Re-checked under the bucket's own lock: the object may have
			// been Put again since the walk saw it.
			deleted, err = stale.DeleteStale(ctx, info.Key, cutoff)
		} else {
			err = c.blobs.Delete(ctx, info.Key)
			deleted = err == nil
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			rep.Failed++
			if len(errs) < maxErrors {
				errs = append(errs, err)
			}
		case deleted:
			rep.Blobs++
			rep.Bytes += info.Size
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing blobs: %w", err))
	}
	if rep.Failed > maxErrors {
		errs = append(errs, fmt.Errorf("%d blob deletes failed in all", rep.Failed))
	}
	return errors.Join(errs...)
}
