package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/easelgw/easel/internal/store"
)

type jobs struct{ s *Store }

const jobColumns = `id, key_id, model, backend, status, progress, created_ms, started_ms,
	finished_ms, n, width, height, request, upstream_ids, resume_state, images, error,
	idempotency_key, request_hash, webhook_url, version, input_keys`

// jobArgs returns rec's column values in jobColumns order.
func jobArgs(rec *store.JobRecord) ([]any, error) {
	progress, err := jsonText("Progress", rec.Progress)
	if err != nil {
		return nil, err
	}
	request, err := jsonText("Request", rec.Request)
	if err != nil {
		return nil, err
	}
	resume, err := jsonText("ResumeState", rec.ResumeState)
	if err != nil {
		return nil, err
	}
	upstream, err := marshalText(rec.UpstreamIDs, len(rec.UpstreamIDs) == 0)
	if err != nil {
		return nil, fmt.Errorf("encoding upstream ids: %w", err)
	}
	images, err := marshalText(rec.Images, len(rec.Images) == 0)
	if err != nil {
		return nil, fmt.Errorf("encoding images: %w", err)
	}
	jobErr, err := marshalText(rec.Error, rec.Error == nil)
	if err != nil {
		return nil, fmt.Errorf("encoding job error: %w", err)
	}
	inputs, err := marshalText(rec.InputKeys, len(rec.InputKeys) == 0)
	if err != nil {
		return nil, fmt.Errorf("encoding input keys: %w", err)
	}
	return []any{
		rec.ID, rec.KeyID, rec.Model, rec.Backend, rec.Status, progress,
		toMS(rec.Created), toMS(rec.Started), toMS(rec.Finished),
		rec.N, rec.Width, rec.Height, request, upstream, resume, images, jobErr,
		rec.IdempotencyKey, rec.RequestHash, rec.WebhookURL, rec.Version, inputs,
	}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*store.JobRecord, error) {
	var (
		rec                                            store.JobRecord
		progress, request, upstream, resume, img, jerr sql.NullString
		inputs                                         sql.NullString
		created, started, finished                     int64
	)
	err := row.Scan(&rec.ID, &rec.KeyID, &rec.Model, &rec.Backend, &rec.Status, &progress,
		&created, &started, &finished, &rec.N, &rec.Width, &rec.Height,
		&request, &upstream, &resume, &img, &jerr,
		&rec.IdempotencyKey, &rec.RequestHash, &rec.WebhookURL, &rec.Version, &inputs)
	if err != nil {
		return nil, err
	}
	rec.Created, rec.Started, rec.Finished = fromMS(created), fromMS(started), fromMS(finished)
	rec.Progress, rec.Request, rec.ResumeState = rawText(progress), rawText(request), rawText(resume)
	if err := unmarshalText(upstream, &rec.UpstreamIDs); err != nil {
		return nil, fmt.Errorf("decoding upstream ids of job %s: %w", rec.ID, err)
	}
	if err := unmarshalText(img, &rec.Images); err != nil {
		return nil, fmt.Errorf("decoding images of job %s: %w", rec.ID, err)
	}
	if err := unmarshalText(jerr, &rec.Error); err != nil {
		return nil, fmt.Errorf("decoding error of job %s: %w", rec.ID, err)
	}
	if err := unmarshalText(inputs, &rec.InputKeys); err != nil {
		return nil, fmt.Errorf("decoding input keys of job %s: %w", rec.ID, err)
	}
	return &rec, nil
}

func (j jobs) Create(ctx context.Context, rec *store.JobRecord) error {
	return createJob(ctx, j.s.db, rec)
}

// execer is what createJob needs from a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func createJob(ctx context.Context, db execer, rec *store.JobRecord) error {
	if rec == nil || rec.ID == "" || rec.Created.IsZero() || rec.Status == "" {
		return fmt.Errorf("creating job: id, status and created are required: %w", store.ErrInvalid)
	}
	saved := rec.Version
	rec.Version = 1
	args, err := jobArgs(rec)
	if err != nil {
		rec.Version = saved
		return fmt.Errorf("creating job %s: %w", rec.ID, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES (`+placeholders(len(args))+`)`, args...)
	if err != nil {
		rec.Version = saved
		if isUniqueViolation(err) {
			return fmt.Errorf("creating job %s: %w", rec.ID, store.ErrConflict)
		}
		return fmt.Errorf("creating job %s: %w", rec.ID, err)
	}
	return nil
}

func (j jobs) Get(ctx context.Context, id, keyID string) (*store.JobRecord, error) {
	rec, err := scanJob(j.s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && keyID != "" && rec.KeyID != keyID) {
		return nil, fmt.Errorf("reading job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading job %s: %w", id, err)
	}
	return rec, nil
}

func (j jobs) Update(ctx context.Context, id string, f func(*store.JobRecord) error) error {
	return j.s.inTx(ctx, func(tx *sql.Tx) error { return updateJob(ctx, tx, id, f) })
}

// updateJob is Update inside the caller's transaction.
func updateJob(ctx context.Context, tx *sql.Tx, id string, f func(*store.JobRecord) error) error {
	rec, err := scanJob(tx.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("updating job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	keyID, version := rec.KeyID, rec.Version
	if err := f(rec); err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	if rec.ID != id || rec.KeyID != keyID {
		return fmt.Errorf("updating job %s: id and owner cannot change: %w", id, store.ErrInvalid)
	}
	if rec.Created.IsZero() || rec.Status == "" {
		return fmt.Errorf("updating job %s: status and created are required: %w", id, store.ErrInvalid)
	}
	rec.Version = version + 1
	args, err := jobArgs(rec)
	if err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	// args[0] is the id; it moves to the WHERE clause.
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET key_id = ?, model = ?, backend = ?, status = ?,
		progress = ?, created_ms = ?, started_ms = ?, finished_ms = ?, n = ?, width = ?,
		height = ?, request = ?, upstream_ids = ?, resume_state = ?, images = ?, error = ?,
		idempotency_key = ?, request_hash = ?, webhook_url = ?, version = ?, input_keys = ?
		WHERE id = ?`, append(args[1:], id)...)
	if err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	return nil
}

func (j jobs) List(ctx context.Context, keyID, cursor string, limit int) ([]*store.JobRecord, string, error) {
	limit = store.ClampLimit(limit)
	where, args := "1 = 1", []any{}
	if keyID != "" {
		where, args = "key_id = ?", append(args, keyID)
	}
	if cursor != "" {
		ms, id, err := store.DecodeCursor(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("listing jobs: %w", err)
		}
		where += " AND (created_ms < ? OR (created_ms = ? AND id < ?))"
		args = append(args, ms, ms, id)
	}
	// One row more than asked tells whether another page exists.
	args = append(args, limit+1)
	rows, err := j.s.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE `+where+
		` ORDER BY created_ms DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing jobs: %w", err)
	}
	defer rows.Close()
	var out []*store.JobRecord
	for rows.Next() {
		rec, err := scanJob(rows)
		if err != nil {
			return nil, "", fmt.Errorf("listing jobs: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing jobs: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = store.EncodeCursor(last.Created, last.ID)
	}
	return out, next, nil
}

func (j jobs) DeleteFinishedBefore(ctx context.Context, t time.Time, limit int) ([]*store.JobRecord, error) {
	if limit < 1 {
		return nil, fmt.Errorf("deleting finished jobs: limit %d: %w", limit, store.ErrInvalid)
	}
	var out []*store.JobRecord
	err := j.s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs
			WHERE finished_ms > 0 AND finished_ms < ? AND status IN (?, ?, ?)
			ORDER BY finished_ms, id LIMIT ?`,
			t.UnixMilli(), store.StatusSucceeded, store.StatusFailed, store.StatusCanceled, limit)
		if err != nil {
			return fmt.Errorf("selecting finished jobs: %w", err)
		}
		defer rows.Close()
		var ids []any
		for rows.Next() {
			rec, err := scanJob(rows)
			if err != nil {
				return fmt.Errorf("selecting finished jobs: %w", err)
			}
			out = append(out, rec)
			ids = append(ids, rec.ID)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("selecting finished jobs: %w", err)
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE id IN (`+placeholders(len(ids))+`)`, ids...); err != nil {
			return fmt.Errorf("deleting finished jobs: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// blobKeysPage is how many job rows BlobKeys reads per query: small enough
// that a scan over a large table never holds the single connection for
// long, so requests interleave with it.
const blobKeysPage = 500

func (j jobs) BlobKeys(ctx context.Context, finishedAfter time.Time, fn func(key string) error) error {
	after := ""
	for {
		keys, last, err := j.blobKeysPage(ctx, finishedAfter, after)
		if err != nil {
			return fmt.Errorf("listing referenced blobs: %w", err)
		}
		for _, k := range keys {
			if err := fn(k); err != nil {
				return err
			}
		}
		if last == "" {
			return nil
		}
		after = last
	}
}

// blobKeysPage reads one page of live jobs with ids after after and
// returns their blob keys and the page's last id ("" when it was the last
// page). The negated condition is DeleteFinishedBefore's, so a job is
// either live here or removable there, never neither.
func (j jobs) blobKeysPage(ctx context.Context, finishedAfter time.Time, after string) ([]string, string, error) {
	rows, err := j.s.db.QueryContext(ctx, `SELECT id, images, input_keys FROM jobs
		WHERE id > ? AND NOT (finished_ms > 0 AND finished_ms < ? AND status IN (?, ?, ?))
		ORDER BY id LIMIT ?`,
		after, finishedAfter.UnixMilli(), store.StatusSucceeded, store.StatusFailed, store.StatusCanceled, blobKeysPage)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var (
		keys []string
		last string
		n    int
	)
	for rows.Next() {
		var (
			id          string
			img, inputs sql.NullString
			images      []store.ImageRecord
			inputKeys   []string
		)
		if err := rows.Scan(&id, &img, &inputs); err != nil {
			return nil, "", err
		}
		if err := unmarshalText(img, &images); err != nil {
			return nil, "", fmt.Errorf("decoding images of job %s: %w", id, err)
		}
		if err := unmarshalText(inputs, &inputKeys); err != nil {
			return nil, "", fmt.Errorf("decoding input keys of job %s: %w", id, err)
		}
		for _, im := range images {
			if im.Key != "" {
				keys = append(keys, im.Key)
			}
		}
		for _, k := range inputKeys {
			if k != "" {
				keys = append(keys, k)
			}
		}
		last, n = id, n+1
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if n < blobKeysPage {
		last = ""
	}
	return keys, last, nil
}
