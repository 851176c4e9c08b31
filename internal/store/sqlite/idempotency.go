package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/easelgw/easel/internal/store"
)

type idempotency struct{ s *Store }

func (i idempotency) Claim(ctx context.Context, keyID, idemKey, requestHash, jobID string, expires time.Time) (string, bool, error) {
	var existing string
	var conflict bool
	err := i.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		existing, conflict, err = claim(ctx, tx, i.s.now(), keyID, idemKey, requestHash, jobID, expires)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("claiming idempotency key: %w", err)
	}
	return existing, conflict, nil
}

// claim is Claim inside the caller's transaction.
func claim(ctx context.Context, tx *sql.Tx, now time.Time, keyID, idemKey, requestHash, jobID string, expires time.Time) (existing string, conflict bool, err error) {
	if idemKey == "" || jobID == "" {
		return "", false, fmt.Errorf("key and job id are required: %w", store.ErrInvalid)
	}
	var hash, job string
	var exp int64
	err = tx.QueryRowContext(ctx, `SELECT request_hash, job_id, expires_ms FROM idempotency
		WHERE key_id = ? AND idem_key = ?`, keyID, idemKey).Scan(&hash, &job, &exp)
	switch {
	case err == nil && exp > now.UnixMilli():
		return job, hash != requestHash, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return "", false, err
	}
	// No claim, or an expired one: this request takes the key.
	_, err = tx.ExecContext(ctx, `INSERT INTO idempotency (key_id, idem_key, request_hash, job_id, expires_ms)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (key_id, idem_key) DO UPDATE SET request_hash = excluded.request_hash,
			job_id = excluded.job_id, expires_ms = excluded.expires_ms`,
		keyID, idemKey, requestHash, jobID, expires.UnixMilli())
	return "", false, err
}

func (i idempotency) Purge(ctx context.Context, now time.Time) (int, error) {
	res, err := i.s.db.ExecContext(ctx, `DELETE FROM idempotency WHERE expires_ms <= ?`, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purging idempotency keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purging idempotency keys: %w", err)
	}
	return int(n), nil
}
