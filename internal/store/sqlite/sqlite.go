// Package sqlite is the embedded store: one SQLite file (pure Go driver, no
// cgo) in the data directory, in WAL mode with synchronous=FULL so a
// committed job survives power loss as well as a crash. Migrations are
// embedded and applied at Open.
//
// The pool holds a single connection. SQLite allows one writer at a time
// anyway, and one connection turns what would be SQLITE_BUSY retries
// between our own goroutines into an orderly wait in database/sql; reads are
// short, indexed lookups, so a separate read pool is not worth its extra
// locking cases yet. busy_timeout still covers another process (the CLI)
// writing to the same file, and transactions begin IMMEDIATE so a
// read-then-write transaction never fails half-way on a lock upgrade.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/easelgw/easel/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store on one SQLite file.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path, creating its
// directory with owner-only permissions, and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("opening store: empty path: %w", store.ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath() + "?" + q.Encode()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := connect(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	// The database holds key hashes and webhook secrets: keep it private
	// even when the process umask is loose.
	if err := os.Chmod(abs, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("restricting store file permissions: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// connect opens the first connection, which applies the pragmas. Turning
// a fresh file to WAL needs the file to itself, and SQLite answers BUSY
// at once (without waiting out busy_timeout) while another process is
// doing the same; so a busy first connect is retried for a few seconds.
func connect(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(10+rand.IntN(40)) * time.Millisecond):
		}
	}
}

// isBusy reports SQLITE_BUSY (5) or SQLITE_LOCKED (6), primary or
// extended.
func isBusy(err error) bool {
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		c := ce.Code() & 0xff
		return c == 5 || c == 6
	}
	return false
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("reading embedded migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		return fmt.Errorf("preparing migrations: %w", err)
	}
	// Two processes opening a fresh file at once (the server and a CLI
	// command) can both read "version 0" before either commits, and the
	// second then fails on tables the first just made. Each migration runs
	// in its own IMMEDIATE transaction, so the loser's work was rolled back
	// whole; running Up again finds the winner's version and has nothing
	// left to do. A real defect fails every attempt and is returned.
	const attempts = 5
	for i := 1; ; i++ {
		_, err := p.Up(ctx)
		if err == nil {
			return nil
		}
		if i == attempts || ctx.Err() != nil {
			return fmt.Errorf("applying migrations: %w", err)
		}
	}
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// DB returns the underlying pool (one connection) so a queue that keeps
// its own tables in the same file (River's SQLite driver) shares it instead
// of opening a second writer.
func (s *Store) DB() *sql.DB { return s.db }

// CreateJobTx inserts a job record inside the caller's transaction, so the
// record and a queue entry for it commit together or not at all. It
// behaves like Jobs().Create otherwise.
func (s *Store) CreateJobTx(ctx context.Context, tx *sql.Tx, rec *store.JobRecord) error {
	return createJob(ctx, tx, rec)
}

// UpdateJobTx is Jobs().Update inside the caller's transaction, so a job's
// new state and the queue entries it causes (a webhook delivery) commit
// together.
func (s *Store) UpdateJobTx(ctx context.Context, tx *sql.Tx, id string, f func(*store.JobRecord) error) error {
	return updateJob(ctx, tx, id, f)
}

// ClaimTx is Idempotency().Claim inside the caller's transaction, so a
// claimed key, its job record and the job's queue entry commit together:
// a crash can never leave a key pointing at a job that does not exist.
func (s *Store) ClaimTx(ctx context.Context, tx *sql.Tx, keyID, idemKey, requestHash, jobID string, expires time.Time) (existingJobID string, conflict bool, err error) {
	existingJobID, conflict, err = claim(ctx, tx, s.now(), keyID, idemKey, requestHash, jobID, expires)
	if err != nil {
		return "", false, fmt.Errorf("claiming idempotency key: %w", err)
	}
	return existingJobID, conflict, nil
}

// InTx runs f in one transaction on the store's connection, committing
// when f returns nil; callers pair it with the *Tx methods and River's
// InsertTx.
func (s *Store) InTx(ctx context.Context, f func(*sql.Tx) error) error { return s.inTx(ctx, f) }

// Jobs implements store.Store.
func (s *Store) Jobs() store.Jobs { return jobs{s} }

// Keys implements store.Store.
func (s *Store) Keys() store.Keys { return keys{s} }

// Usage implements store.Store.
func (s *Store) Usage() store.Usage { return usage{s} }

// Idempotency implements store.Store.
func (s *Store) Idempotency() store.Idempotency { return idempotency{s} }

// inTx runs f in one transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, f func(*sql.Tx) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			// The rollback error adds nothing to f's error.
			_ = tx.Rollback()
		}
	}()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

// isUniqueViolation reports a primary key or unique constraint failure.
// The driver's error type exposes only the numeric code, so the extended
// result codes are compared (SQLITE_CONSTRAINT_PRIMARYKEY 1555,
// SQLITE_CONSTRAINT_UNIQUE 2067).
func isUniqueViolation(err error) bool {
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		return ce.Code() == 1555 || ce.Code() == 2067
	}
	return false
}

func toMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// jsonText turns a caller's JSON into a column value: NULL when empty,
// ErrInvalid when not JSON.
func jsonText(field string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("field %s is not valid JSON: %w", field, store.ErrInvalid)
	}
	return string(raw), nil
}

// marshalText encodes v as a JSON column; empty values become NULL.
func marshalText(v any, empty bool) (any, error) {
	if empty {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func unmarshalText(s sql.NullString, v any) error {
	if !s.Valid || s.String == "" {
		return nil
	}
	return json.Unmarshal([]byte(s.String), v)
}

func rawText(s sql.NullString) json.RawMessage {
	if !s.Valid || s.String == "" {
		return nil
	}
	return json.RawMessage(s.String)
}

// placeholders returns "?,?,...,?" with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
