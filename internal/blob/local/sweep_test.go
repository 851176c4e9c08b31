package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/easelgw/easel/internal/blob"
)

// age sets a file's modification time to d ago.
func age(t *testing.T, p string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, b *Bucket, data, mime string) string {
	t.Helper()
	key, err := b.Put(context.Background(), []byte(data), mime)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func keyPath(dir, key string) string {
	return filepath.Join(dir, key[0:2], key[2:4], key)
}

func walkAll(t *testing.T, b *Bucket) []blob.Info {
	t.Helper()
	var out []blob.Info
	if err := b.Walk(context.Background(), func(i blob.Info) error {
		out = append(out, i)
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return out
}

func TestWalkListsOnlyObjects(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	k1 := put(t, b, "one", "image/png")
	k2 := put(t, b, "two", "image/webp")
	// Strangers the walk must not report: a temp file, a file with a valid
	// key name in the wrong directory, a directory with a key's name, a
	// symlink with a key's name, and unrelated names at every level.
	leaf := filepath.Dir(keyPath(dir, k1))
	mustWrite := func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(filepath.Join(leaf, ".tmp-0011223344556677"))
	misplaced := strings.Repeat("ab", 32) + ".png"
	mustWrite(filepath.Join(dir, "cd", "ef", misplaced))
	mustWrite(filepath.Join(dir, "README"))
	mustWrite(filepath.Join(dir, "zz", "yy", strings.Repeat("0", 64)+".png"))
	dirKey := strings.Repeat("1", 64) + ".png"
	if err := os.MkdirAll(filepath.Join(dir, "11", "11", dirKey), 0o750); err != nil {
		t.Fatal(err)
	}
	linkKey := strings.Repeat("2", 64) + ".png"
	if err := os.MkdirAll(filepath.Join(dir, "22", "22"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keyPath(dir, k1), filepath.Join(dir, "22", "22", linkKey)); err != nil {
		t.Fatal(err)
	}

	// Fan-out names that are symlinks, at either level, one leading out of
	// the bucket, or a plain file.
	outside := t.TempDir()
	mustWrite(filepath.Join(outside, "44", strings.Repeat("3", 64)+".png"))
	if err := os.Symlink(outside, filepath.Join(dir, "33")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(leaf), filepath.Join(filepath.Dir(leaf), "ff")); err != nil {
		t.Fatal(err)
	}
	mustWrite(filepath.Join(dir, "55"))

	got := walkAll(t, b)
	want := []blob.Info{
		{Key: k1, Size: 3, MIME: "image/png"},
		{Key: k2, Size: 3, MIME: "image/webp"},
	}
	sortInfo := cmpopts.SortSlices(func(a, b blob.Info) bool { return a.Key < b.Key })
	if diff := cmp.Diff(want, got, sortInfo, cmpopts.IgnoreFields(blob.Info{}, "Modified")); diff != "" {
		t.Errorf("Walk (-want +got):\n%s", diff)
	}
	for _, i := range got {
		if time.Since(i.Modified) > time.Minute || i.Modified.IsZero() {
			t.Errorf("%s: Modified = %v", i.Key, i.Modified)
		}
	}
}

func TestWalkStopsOnError(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	for _, s := range []string{"a", "b", "c"} {
		put(t, b, s, "image/png")
	}
	stop := errors.New("stop")
	calls := 0
	err := b.Walk(context.Background(), func(blob.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Walk = %v after %d calls, want stop after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Walk(ctx, func(blob.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Walk with canceled context = %v", err)
	}
}

func TestWalkEmptyBucket(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	if got := walkAll(t, b); len(got) != 0 {
		t.Fatalf("Walk of empty bucket = %v", got)
	}
}

// TestTempCollectedAtOpen checks D3's promise: a temp file left by a crash
// between the write and the rename is gone once the bucket is opened again,
// and the objects beside it are untouched.
func TestTempCollectedAtOpen(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	key := put(t, b, "kept", "image/png")
	leaf := filepath.Dir(keyPath(dir, key))
	temps := []string{filepath.Join(leaf, ".tmp-aaaaaaaaaaaaaaaa"), filepath.Join(dir, "00", "00", ".tmp-bbbbbbbbbbbbbbbb")}
	for _, p := range temps {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half an ima"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	for _, p := range temps {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp file %s after reopen: %v", p, err)
		}
	}
	if got, _ := readAll(t, b2, key); string(got) != "kept" {
		t.Errorf("object after reopen = %q", got)
	}
}

func TestCollectTempHonoursAge(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	key := put(t, b, "obj", "image/png")
	leaf := filepath.Dir(keyPath(dir, key))
	oldTemp := filepath.Join(leaf, ".tmp-1111111111111111")
	youngTemp := filepath.Join(leaf, ".tmp-2222222222222222")
	for _, p := range []string{oldTemp, youngTemp} {
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	age(t, oldTemp, 2*time.Hour)
	age(t, keyPath(dir, key), 2*time.Hour)
	n, err := b.CollectTemp(context.Background(), time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("CollectTemp = %d, %v; want 1, nil", n, err)
	}
	if _, err := os.Lstat(oldTemp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old temp file: %v", err)
	}
	if _, err := os.Lstat(youngTemp); err != nil {
		t.Errorf("young temp file removed: %v", err)
	}
	if _, err := os.Lstat(keyPath(dir, key)); err != nil {
		t.Errorf("object removed by CollectTemp: %v", err)
	}
}

func TestDeleteStale(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	ctx := context.Background()
	oldKey := put(t, b, "old", "image/png")
	youngKey := put(t, b, "young", "image/png")
	age(t, keyPath(dir, oldKey), 2*time.Hour)
	cutoff := time.Now().Add(-time.Hour)

	tests := []struct {
		name    string
		key     string
		want    bool
		wantErr error
		exists  bool
	}{
		{"young kept", youngKey, false, nil, true},
		{"old removed", oldKey, true, nil, false},
		{"missing", oldKey, false, nil, false},
		{"bad key", "../../etc/passwd", false, blob.ErrNotFound, false},
	}
	for _, tt := range tests {
		// Sequential on purpose: "missing" relies on "old removed".
		got, err := b.DeleteStale(ctx, tt.key, cutoff)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: DeleteStale = %v, %v; want %v, %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if tt.wantErr != nil {
			continue
		}
		_, statErr := os.Lstat(keyPath(dir, tt.key))
		if exists := statErr == nil; exists != tt.exists {
			t.Errorf("%s: exists = %v, want %v", tt.name, exists, tt.exists)
		}
	}
}

// TestPutRefreshesTime checks that storing bytes that are already stored
// makes the object young again, so the cleaner's grace period covers a new
// job that shares an old object.
func TestPutRefreshesTime(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	key := put(t, b, "shared", "image/png")
	age(t, keyPath(dir, key), 48*time.Hour)
	if again := put(t, b, "shared", "image/png"); again != key {
		t.Fatalf("second Put key = %s, want %s", again, key)
	}
	_, info := readAll(t, b, key)
	if time.Since(info.Modified) > time.Minute {
		t.Fatalf("Modified after re-Put = %v, want about now", info.Modified)
	}
	if removed, err := b.DeleteStale(context.Background(), key, time.Now().Add(-time.Hour)); removed || err != nil {
		t.Fatalf("DeleteStale after re-Put = %v, %v; want kept", removed, err)
	}
}

// TestPutRacesDeleteStale runs a re-Put of an old object against a
// DeleteStale of it many times: whichever wins, a Put that returned nil
// leaves the object readable.
func TestPutRacesDeleteStale(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	ctx := context.Background()
	for i := range 200 {
		data := "race " + strings.Repeat("x", i)
		key := put(t, b, data, "image/png")
		age(t, keyPath(dir, key), 2*time.Hour)
		cutoff := time.Now().Add(-time.Hour)
		var wg sync.WaitGroup
		var putErr, delErr error
		wg.Go(func() { _, putErr = b.Put(ctx, []byte(data), "image/png") })
		wg.Go(func() { _, delErr = b.DeleteStale(ctx, key, cutoff) })
		wg.Wait()
		if putErr != nil || delErr != nil {
			t.Fatalf("round %d: Put %v, DeleteStale %v", i, putErr, delErr)
		}
		if got, _ := readAll(t, b, key); string(got) != data {
			t.Fatalf("round %d: object = %q", i, got)
		}
	}
	// Every object survived, and no temp file was left behind.
	files := listFiles(t, dir)
	if slices.ContainsFunc(files, func(f string) bool { return strings.Contains(f, tempPrefix) }) {
		t.Fatalf("temp files left: %v", files)
	}
	if len(files) != 200 {
		t.Fatalf("%d files, want 200", len(files))
	}
}
