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
	idempotency_key, request_hash, webhook_url, version`

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
	return []any{
		rec.ID, rec.KeyID, rec.Model, rec.Backend, rec.Status, progress,
		toMS(rec.Created), toMS(rec.Started), toMS(rec.Finished),
		rec.N, rec.Width, rec.Height, request, upstream, resume, images, jobErr,
		rec.IdempotencyKey, rec.RequestHash, rec.WebhookURL, rec.Version,
	}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*store.JobRecord, error) {
	var (
		rec                                            store.JobRecord
		progress, request, upstream, resume, img, jerr sql.NullString
		created, started, finished                     int64
	)
	err := row.Scan(&rec.ID, &rec.KeyID, &rec.Model, &rec.Backend, &rec.Status, &progress,
		&created, &started, &finished, &rec.N, &rec.Width, &rec.Height,
		&request, &upstream, &resume, &img, &jerr,
		&rec.IdempotencyKey, &rec.RequestHash, &rec.WebhookURL, &rec.Version)
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
	return j.s.inTx(ctx, func(tx *sql.Tx) error {
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
			idempotency_key = ?, request_hash = ?, webhook_url = ?, version = ?
			WHERE id = ?`, append(args[1:], id)...)
		if err != nil {
			return fmt.Errorf("updating job %s: %w", id, err)
		}
		return nil
	})
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
