package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
)

// lockStripes is how many mutexes guard the refresh/DeleteStale pair; keys
// hash onto them, so unrelated keys rarely wait for each other.
const lockStripes = 64

// tempPrefix starts the name of every file writeAtomic has not yet renamed
// into place.
const tempPrefix = ".tmp-"

// fanOut matches one level of the fan-out tree.
var fanOut = regexp.MustCompile(`^[0-9a-f]{2}$`)

var (
	_ blob.Lister        = (*Bucket)(nil)
	_ blob.StaleDeleter  = (*Bucket)(nil)
	_ blob.TempCollector = (*Bucket)(nil)
)

// lock takes and returns the stripe mutex of key.
func (b *Bucket) lock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &b.locks[h.Sum32()%lockStripes]
	m.Lock()
	return m
}

// refresh reports whether name is already stored in d with size bytes,
// and if so moves its modification time to now. A Put of bytes that are
// already stored is how a new job comes to share an old object, and the
// retention cleaner spares only objects written within its grace period:
// without the new time, an old object could be swept between this Put and
// the moment the new job's record names it. The stripe lock makes the
// check and the touch one step with respect to DeleteStale, so either the
// cleaner sees the new time, or the object is already gone and the caller
// writes it afresh.
func (b *Bucket) refresh(d *os.Root, name string, size int64) bool {
	defer b.lock(name).Unlock()
	fi, err := d.Stat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false
	}
	now := time.Now()
	// If the time cannot be changed (a file owned by someone else), a fresh
	// copy renamed over it carries a new time just as well.
	return d.Chtimes(name, now, now) == nil
}

// DeleteStale removes key only if its modification time is before before,
// and reports whether it did. A missing object is (false, nil); a key this
// bucket could not have produced is ErrNotFound, as for Delete.
func (b *Bucket) DeleteStale(ctx context.Context, key string, before time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if !keyPattern.MatchString(key) {
		return false, blob.ErrNotFound
	}
	defer b.lock(key).Unlock()
	p := objectPath(key)
	fi, err := b.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading blob %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() || !fi.ModTime().Before(before) {
		return false, nil
	}
	err = b.root.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting blob %s: %w", key, err)
	}
	return true, nil
}

// Walk calls fn for every object, in key order within each fan-out
// directory. Temp files, and anything else this bucket would not have
// written (wrong name, wrong directory, not a regular file), are skipped:
// the walk reports only what Get can open. Objects written or deleted
// during the walk may or may not be seen. fn may call the bucket.
func (b *Bucket) Walk(ctx context.Context, fn func(blob.Info) error) error {
	return b.eachLeaf(ctx, func(dir string, d *os.Root, names []string) error {
		prefix := strings.ReplaceAll(dir, "/", "")
		for _, name := range names {
			if !keyPattern.MatchString(name) || name[:4] != prefix {
				continue
			}
			fi, err := d.Lstat(name)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading blob %s: %w", name, err)
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			if err := fn(blob.Info{Key: name, Size: fi.Size(), MIME: mimeOf(name), Modified: fi.ModTime()}); err != nil {
				return err
			}
		}
		return nil
	})
}

// CollectTemp removes temp files whose modification time is before
// before and returns how many it removed. A temp file is a write that
// never reached its rename; one older than any write can take belongs to
// a crashed process. It keeps going past a file it cannot remove and
// returns those errors joined.
func (b *Bucket) CollectTemp(ctx context.Context, before time.Time) (int, error) {
	removed := 0
	var errs []error
	err := b.eachLeaf(ctx, func(dir string, d *os.Root, names []string) error {
		for _, name := range names {
			if !strings.HasPrefix(name, tempPrefix) {
				continue
			}
			fi, err := d.Lstat(name)
			if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(before) {
				continue
			}
			if err := d.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing temp file %s: %w", path.Join(dir, name), err))
				continue
			}
			removed++
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// eachLeaf calls fn for every second-level fan-out directory, opened as a
// root of its own, with the sorted names of its entries. Directories that
// vanish during the walk are skipped.
func (b *Bucket) eachLeaf(ctx context.Context, fn func(dir string, d *os.Root, names []string) error) error {
	tops, err := readNames(b.root, ".")
	if err != nil {
		return fmt.Errorf("listing blob directory: %w", err)
	}
	for _, top := range tops {
		if !fanOut.MatchString(top) || !b.isDir(top) {
			continue
		}
		subs, err := readNames(b.root, top)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing blob directory %s: %w", top, err)
		}
		for _, sub := range subs {
			if err := ctx.Err(); err != nil {
				return err
			}
			dir := path.Join(top, sub)
			if !fanOut.MatchString(sub) || !b.isDir(dir) {
				continue
			}
			if err := b.visitLeaf(dir, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// isDir reports whether name is a real directory. A file or a symlink
// where a fan-out directory belongs was not made by this bucket; the walk
// skips it like any other stranger rather than failing on it for ever.
func (b *Bucket) isDir(name string) bool {
	fi, err := b.root.Lstat(name)
	return err == nil && fi.IsDir()
}

func (b *Bucket) visitLeaf(dir string, fn func(dir string, d *os.Root, names []string) error) error {
	d, err := b.root.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening blob directory %s: %w", dir, err)
	}
	defer d.Close()
	names, err := readNames(d, ".")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing blob directory %s: %w", dir, err)
	}
	return fn(dir, d, names)
}

// readNames lists the entries of dir in r, sorted. Entries that are not
// directories are returned too; callers filter by name and type.
func readNames(r *os.Root, dir string) ([]string, error) {
	f, err := r.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, nil
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}
