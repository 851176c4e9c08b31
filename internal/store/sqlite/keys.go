package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/easelgw/easel/internal/store"
)

type keys struct{ s *Store }

const keyColumns = `id, hash, prefix, name, scopes, created_ms, revoked_ms, last_used_ms,
	requests_per_minute, concurrent_jobs, images_per_day, webhook_secret, webhook_url`

func scanKey(row scanner) (*store.KeyRecord, error) {
	var (
		rec               store.KeyRecord
		scopes            string
		created, lastUsed int64
		revoked           sql.NullInt64
	)
	err := row.Scan(&rec.ID, &rec.Hash, &rec.Prefix, &rec.Name, &scopes, &created, &revoked, &lastUsed,
		&rec.RequestsPerMinute, &rec.ConcurrentJobs, &rec.ImagesPerDay, &rec.WebhookSecret, &rec.WebhookURL)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &rec.Scopes); err != nil {
		return nil, fmt.Errorf("decoding scopes of key %s: %w", rec.ID, err)
	}
	rec.Created, rec.LastUsed = fromMS(created), fromMS(lastUsed)
	if revoked.Valid {
		at := fromMS(revoked.Int64)
		rec.Revoked = &at
	}
	return &rec, nil
}

func (k keys) Create(ctx context.Context, rec store.KeyRecord) error {
	if rec.ID == "" || len(rec.Hash) != sha256.Size || rec.Created.IsZero() {
		return fmt.Errorf("creating key: id, a 32-byte hash and created are required: %w", store.ErrInvalid)
	}
	scopes, err := json.Marshal(rec.Scopes)
	if err != nil {
		return fmt.Errorf("encoding scopes of key %s: %w", rec.ID, err)
	}
	if rec.Scopes == nil {
		scopes = []byte("[]")
	}
	var revoked any
	if rec.Revoked != nil {
		revoked = rec.Revoked.UnixMilli()
	}
	_, err = k.s.db.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES (`+placeholders(13)+`)`,
		rec.ID, rec.Hash, rec.Prefix, rec.Name, string(scopes), toMS(rec.Created), revoked, toMS(rec.LastUsed),
		rec.RequestsPerMinute, rec.ConcurrentJobs, rec.ImagesPerDay, rec.WebhookSecret, rec.WebhookURL)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("creating key %s: %w", rec.ID, store.ErrConflict)
		}
		return fmt.Errorf("creating key %s: %w", rec.ID, err)
	}
	return nil
}

func (k keys) ByID(ctx context.Context, id string) (*store.KeyRecord, error) {
	rec, err := scanKey(k.s.db.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("reading key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return rec, nil
}

func (k keys) List(ctx context.Context) ([]store.KeyRecord, error) {
	rows, err := k.s.db.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_ms, id`)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []store.KeyRecord
	for rows.Next() {
		rec, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		out = append(out, *rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

// exists turns "no row changed" into ErrNotFound or nil, since an UPDATE
// that matches a row but changes nothing (a second Revoke) is no error.
func (k keys) exists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

func (k keys) Revoke(ctx context.Context, id string, at time.Time) error {
	return k.s.inTx(ctx, func(tx *sql.Tx) error {
		if err := k.exists(ctx, tx, id); err != nil {
			return fmt.Errorf("revoking key %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL`,
			at.UnixMilli(), id); err != nil {
			return fmt.Errorf("revoking key %s: %w", id, err)
		}
		return nil
	})
}

func (k keys) Touch(ctx context.Context, id string, at time.Time) error {
	return k.s.inTx(ctx, func(tx *sql.Tx) error {
		if err := k.exists(ctx, tx, id); err != nil {
			return fmt.Errorf("touching key %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_ms = max(last_used_ms, ?) WHERE id = ?`,
			at.UnixMilli(), id); err != nil {
			return fmt.Errorf("touching key %s: %w", id, err)
		}
		return nil
	})
}
