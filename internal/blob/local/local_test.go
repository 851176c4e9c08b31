package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/easelgw/easel/internal/blob"
)

func newBucket(t *testing.T) (*Bucket, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, dir
}

func readAll(t *testing.T, b *Bucket, key string) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data, info
}

// listFiles returns every regular file under dir, relative.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutGetDelete(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	ctx := context.Background()
	data := []byte("\x89PNG\r\n\x1a\nnot really a png but bytes")
	key, err := b.Put(ctx, data, "image/png")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:]) + ".png"
	if key != want {
		t.Fatalf("key = %s, want %s", key, want)
	}
	if _, err := os.Stat(filepath.Join(dir, key[0:2], key[2:4], key)); err != nil {
		t.Fatalf("object not in fan-out path: %v", err)
	}
	got, info := readAll(t, b, key)
	if !bytes.Equal(got, data) {
		t.Fatal("Get returned other bytes")
	}
	if info.Key != key || info.Size != int64(len(data)) || info.MIME != "image/png" || info.Modified.IsZero() {
		t.Fatalf("info = %+v", info)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestExtensions(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	for mime, ext := range map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"} {
		key, err := b.Put(context.Background(), []byte(mime), mime)
		if err != nil || !strings.HasSuffix(key, ext) {
			t.Fatalf("%s: key %q err %v", mime, key, err)
		}
		if _, info := readAll(t, b, key); info.MIME != mime {
			t.Fatalf("%s: Get MIME %q", mime, info.MIME)
		}
	}
	if _, err := b.Put(context.Background(), []byte("x"), "text/html"); err == nil {
		t.Fatal("text/html accepted")
	}
}

func TestIdempotent(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	data := []byte("same bytes")
	k1, err := b.Put(context.Background(), data, "image/webp")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := b.Put(context.Background(), data, "image/webp")
	if err != nil || k1 != k2 {
		t.Fatalf("second Put: %q %v", k2, err)
	}
	if files := listFiles(t, dir); len(files) != 1 {
		t.Fatalf("files = %v", files)
	}
}

func TestConcurrentSamePut(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	data := bytes.Repeat([]byte("concurrent "), 10000)
	var wg sync.WaitGroup
	keys := make([]string, 16)
	for i := range keys {
		wg.Go(func() {
			k, err := b.Put(context.Background(), data, "image/png")
			if err != nil {
				t.Errorf("Put: %v", err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("keys differ: %v", keys)
		}
	}
	got, _ := readAll(t, b, keys[0])
	if !bytes.Equal(got, data) {
		t.Fatal("stored bytes differ")
	}
	if files := listFiles(t, dir); len(files) != 1 {
		t.Fatalf("files = %v (temp files left?)", files)
	}
}

func TestBadKeysRefused(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	// A secret beside the bucket that a traversal would reach.
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.png"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	hex64 := strings.Repeat("a", 64)
	for _, key := range []string{
		"", "../secret.png", "../../etc/passwd", "/etc/passwd", "..", ".",
		hex64 + ".exe", hex64 + ".PNG", strings.ToUpper(hex64) + ".png",
		hex64[:63] + ".png", hex64 + "a.png", hex64 + ".png/..", "aa/aa/" + hex64 + ".png",
		hex64 + ".png\x00", "..%2fsecret.png", hex64 + ".png ",
	} {
		if _, _, err := b.Get(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want ErrNotFound", key, err)
		}
		if err := b.Delete(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete(%q): err = %v, want ErrNotFound", key, err)
		}
	}
}

// TestSymlinkEscapeRefused: even a valid-looking key whose fan-out
// directory is a symlink out of the bucket cannot be read.
func TestSymlinkEscapeRefused(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	outside := t.TempDir()
	key := strings.Repeat("b", 64) + ".png"
	if err := os.MkdirAll(filepath.Join(outside, "bb"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "bb", key), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "bb")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(context.Background(), key); err == nil {
		t.Fatal("read a file outside the bucket through a symlink")
	}
}

func TestNoTempFileAfterError(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	data := []byte("will not fit")
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:]) + ".png"
	// A directory squatting on the final name makes the rename fail.
	if err := os.MkdirAll(filepath.Join(dir, key[0:2], key[2:4], key, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(context.Background(), data, "image/png"); err == nil {
		t.Fatal("Put over a directory succeeded")
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Fatalf("files left after failed Put: %v", files)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Put(ctx, []byte("x"), "image/png"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put err = %v", err)
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Fatalf("files = %v", files)
	}
}

// TestFanOutDirectoryRemoved: the bucket remembers the directories it made;
// if one is removed behind its back (an operator's cleanup), the next Put
// recreates it instead of failing.
func TestFanOutDirectoryRemoved(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	data := []byte("fan-out bytes")
	key, err := b.Put(context.Background(), data, "image/png")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, key[:2])); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(context.Background(), data, "image/png"); err != nil {
		t.Fatalf("Put after the directory was removed: %v", err)
	}
	rc, _, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(data) {
		t.Fatalf("read back %q", got)
	}
}

// TestNoSyncStaysAtomic proves that skipping fsync changes durability
// only: objects still appear whole under their final names, concurrent
// writers of the same bytes still converge, and no temp file is left
// behind, after success or failure.
func TestNoSyncStaysAtomic(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := New(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if !b.noSync {
		t.Fatal("Options.NoSync was not kept")
	}

	payloads := make([][]byte, 8)
	for i := range payloads {
		payloads[i] = bytes.Repeat([]byte{byte('a' + i)}, 50000+i)
	}
	var wg sync.WaitGroup
	keys := make([]string, len(payloads)*4)
	for i := range keys {
		wg.Go(func() {
			k, err := b.Put(context.Background(), payloads[i%len(payloads)], "image/png")
			if err != nil {
				t.Errorf("Put: %v", err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		got, _ := readAll(t, b, k)
		if !bytes.Equal(got, payloads[i%len(payloads)]) {
			t.Fatalf("object %s holds other bytes", k)
		}
	}

	// A failed rename must still clean up its temp file.
	data := []byte("blocked")
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:]) + ".png"
	if err := os.MkdirAll(filepath.Join(dir, key[0:2], key[2:4], key, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(context.Background(), data, "image/png"); err == nil {
		t.Fatal("Put over a directory succeeded")
	}

	files := listFiles(t, dir)
	if len(files) != len(payloads) {
		t.Errorf("files = %v, want %d objects", files, len(payloads))
	}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".tmp-") {
			t.Errorf("temp file left: %s", f)
		}
	}
}

func TestNewRefusesTwoOptions(t *testing.T) {
	t.Parallel()
	if _, err := New(t.TempDir(), Options{}, Options{NoSync: true}); err == nil {
		t.Fatal("New accepted two Options values")
	}
}

// TestPutSymlinkEscapeRefused: a fan-out directory replaced by a symlink
// out of the bucket cannot be written through either, and nothing lands
// outside.
func TestPutSymlinkEscapeRefused(t *testing.T) {
	t.Parallel()
	b, dir := newBucket(t)
	data := []byte("must stay inside")
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:]) + ".png"
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, key[2:4]), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, key[0:2])); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(context.Background(), data, "image/png"); err == nil {
		t.Fatal("Put wrote through a symlink out of the bucket")
	}
	if files := listFiles(t, outside); len(files) != 0 {
		t.Fatalf("files written outside the bucket: %v", files)
	}
}

// BenchmarkPut stores distinct 64 KiB objects, durable and not. Run it
// with TMPDIR on tmpfs to see the syscall cost rather than the disk's.
func BenchmarkPut(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			bk, err := New(filepath.Join(b.TempDir(), "blobs"), Options{NoSync: mode.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer bk.Close()
			data := bytes.Repeat([]byte{0x5a}, 64<<10)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			n := uint64(0)
			for b.Loop() {
				n++
				for i := range 8 {
					data[i] = byte(n >> (8 * i))
				}
				if _, err := bk.Put(context.Background(), data, "image/png"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
