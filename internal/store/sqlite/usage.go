package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/easelgw/easel/internal/store"
)

type usage struct{ s *Store }

func (u usage) Record(ctx context.Context, keyID string, at time.Time, images int) error {
	if images < 0 {
		return fmt.Errorf("recording usage of key %s: negative image count %d: %w", keyID, images, store.ErrInvalid)
	}
	if err := insertUsage(ctx, u.s.db, keyID, at, images); err != nil {
		return fmt.Errorf("recording usage of key %s: %w", keyID, err)
	}
	return nil
}

func insertUsage(ctx context.Context, db execer, keyID string, at time.Time, images int) error {
	_, err := db.ExecContext(ctx, `INSERT INTO usage (key_id, at_ms, images) VALUES (?, ?, ?)`,
		keyID, at.UnixMilli(), images)
	return err
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func sumUsage(ctx context.Context, db queryRower, keyID string, since time.Time) (int, error) {
	var n sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT sum(images) FROM usage WHERE key_id = ? AND at_ms >= ?`,
		keyID, since.UnixMilli()).Scan(&n)
	return int(n.Int64), err
}

func (u usage) ImagesSince(ctx context.Context, keyID string, since time.Time) (int, error) {
	n, err := sumUsage(ctx, u.s.db, keyID, since)
	if err != nil {
		return 0, fmt.Errorf("summing usage of key %s: %w", keyID, err)
	}
	return n, nil
}

func (u usage) RecordWithin(ctx context.Context, keyID string, at time.Time, images int, since time.Time, quota int) (bool, error) {
	if images < 0 {
		return false, fmt.Errorf("recording usage of key %s: negative image count %d: %w", keyID, images, store.ErrInvalid)
	}
	recorded := false
	err := u.s.inTx(ctx, func(tx *sql.Tx) error {
		used, err := sumUsage(ctx, tx, keyID, since)
		if err != nil {
			return err
		}
		if used+images > quota {
			return nil
		}
		recorded = true
		return insertUsage(ctx, tx, keyID, at, images)
	})
	if err != nil {
		return false, fmt.Errorf("recording usage of key %s within quota: %w", keyID, err)
	}
	return recorded, nil
}

func (u usage) Refund(ctx context.Context, keyID string, at time.Time, images int) error {
	if images < 0 {
		return fmt.Errorf("refunding usage of key %s: negative image count %d: %w", keyID, images, store.ErrInvalid)
	}
	if images == 0 {
		return nil
	}
	if err := insertUsage(ctx, u.s.db, keyID, at, -images); err != nil {
		return fmt.Errorf("refunding usage of key %s: %w", keyID, err)
	}
	return nil
}

func (u usage) PurgeBefore(ctx context.Context, t time.Time) (int, error) {
	res, err := u.s.db.ExecContext(ctx, `DELETE FROM usage WHERE at_ms < ?`, t.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purging usage: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purging usage: %w", err)
	}
	return int(n), nil
}
