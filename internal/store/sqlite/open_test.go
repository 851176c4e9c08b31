package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/store"
)

func TestOpenSettings(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "nested", "data dir")
	path := filepath.Join(dir, "easel.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"busy_timeout": "5000",
		"foreign_keys": "1",
		"synchronous":  "2", // FULL
	} {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if !strings.EqualFold(got, want) {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
	if n := s.db.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("MaxOpenConnections = %d, want 1", n)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat dir: %v", err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", di.Mode().Perm())
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"empty path":          "",
		"parent is a file":    filepath.Join(notDir, "easel.db"),
		"not a sqlite file":   garbage,
		"path is a directory": t.TempDir(),
	} {
		s, err := Open(t.Context(), path)
		t.Logf("Open(%s): %v", name, err)
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded, want an error", name)
		}
	}
}

// TestReopen checks that data survives Close and that migrations run again
// harmlessly on an existing file.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "easel.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	created := time.Date(2026, 11, 22, 1, 2, 3, 4_000_000, time.UTC)
	if err := s.Jobs().Create(ctx, &store.JobRecord{ID: "j1", KeyID: "k", Status: store.StatusQueued, Created: created}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, _, err := s.Idempotency().Claim(ctx, "k", "i", "h", "j1", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.Jobs().Get(ctx, "j1", "k")
	if err != nil || !got.Created.Equal(created) || got.Status != store.StatusQueued {
		t.Fatalf("Get after reopen = %+v, %v", got, err)
	}
	existing, _, err := s.Idempotency().Claim(ctx, "k", "i", "h", "j2", time.Now().Add(time.Hour))
	if err != nil || existing != "j1" {
		t.Errorf("Claim after reopen = %q, %v; want j1", existing, err)
	}
	if err := s.Jobs().Create(ctx, &store.JobRecord{ID: "j1", Status: store.StatusQueued, Created: created}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Create(duplicate) after reopen error = %v, want ErrConflict", err)
	}
}

// TestKeySecretNotOnDisk is the storage half of the key-storage policy: after
// a key is created, neither the database nor its WAL holds the secret.
func TestKeySecretNotOnDisk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "easel.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pepper := []byte("0123456789abcdef0123456789abcdef")
	plain, rec, err := store.NewKey(store.KindUser)
	if err != nil {
		t.Fatal(err)
	}
	rec.Hash = store.Hash(pepper, plain)
	rec.Name = "canary key"
	if err := s.Keys().Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got, err := s.Keys().ByID(ctx, rec.ID)
	if err != nil || !store.Verify(got, pepper, plain) {
		t.Fatalf("stored key does not verify: %v", err)
	}
	secret := plain[strings.LastIndexByte(plain, '_')+1:]
	// Check the WAL before Close folds it into the main file, then both.
	check := func(when string) {
		files, err := filepath.Glob(filepath.Join(dir, "easel.db*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("listing database files: %v, %v", files, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("reading %s: %v", f, err)
			}
			if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(secret[:12])) {
				t.Errorf("%s: %s holds the key's secret", when, filepath.Base(f))
			}
		}
	}
	check("open")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check("closed")
}

// TestCreateJobTx checks that a job created in the caller's transaction
// exists only if that transaction commits.
func TestCreateJobTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "easel.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	created := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	for _, commit := range []bool{false, true} {
		id := map[bool]string{false: "rolled-back", true: "committed"}[commit]
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		if err := s.CreateJobTx(ctx, tx, &store.JobRecord{ID: id, Status: store.StatusQueued, Created: created}); err != nil {
			t.Fatalf("CreateJobTx: %v", err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatalf("ending transaction: %v", err)
		}
		_, err = s.Jobs().Get(ctx, id, "")
		if commit && err != nil {
			t.Errorf("Get(committed): %v", err)
		}
		if !commit && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(rolled back) error = %v, want ErrNotFound", err)
		}
	}
}

// TestConcurrentFirstOpen: several processes (here, stores) opening one
// fresh file at once all succeed and agree on one schema.
func TestConcurrentFirstOpen(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "easel.db")
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				s, err := Open(t.Context(), path)
				if err != nil {
					t.Errorf("round %d, Open %d: %v", round, i, err)
					return
				}
				defer s.Close()
				id := fmt.Sprintf("job-%d", i)
				if err := s.Jobs().Create(t.Context(), &store.JobRecord{ID: id, Status: store.StatusQueued, Created: time.Now()}); err != nil {
					t.Errorf("round %d, Create after Open %d: %v", round, i, err)
				}
			})
		}
		wg.Wait()
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		page, _, err := s.Jobs().List(t.Context(), "", "", 10)
		s.Close()
		if err != nil || len(page) != 4 {
			t.Errorf("round %d: %d jobs after concurrent opens, %v; want 4", round, len(page), err)
		}
	}
}
