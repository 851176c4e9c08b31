// Package local is the blob.Bucket of the embedded single-node mode: files
// in a directory on the local disk. Objects are content-addressed, written
// atomically (temp file, fsync, rename) and read through an os.Root, so no
// key, however crafted, can reach a file outside the directory.
//
// By default every object and the rename that publishes it are made
// durable with fsync; Options.NoSync trades that for latency on disks where
// a sync is slow or pointless (tmpfs, disposable results).
//
// The retention cleaner walks the bucket, deletes objects only if they
// have not been written again since it looked (DeleteStale), and removes
// temp files left by a crash (CollectTemp, also run by New); see sweep.go.
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/easelgw/easel/internal/blob"
)

// Bucket stores objects under dir/<k[0:2]>/<k[2:4]>/<key>: the fan-out
// keeps directories small when millions of images accumulate.
type Bucket struct {
	root   *os.Root
	noSync bool
	// made remembers fan-out directories already created, so a Put does
	// not walk the tree with mkdirat on every call (a hot-path cost the
	// load benchmark showed). A directory removed behind our back only
	// costs one failed write, after which it is created again.
	made sync.Map
	// locks serialise, per key stripe, a Put that finds its object already
	// stored (and refreshes its time) against DeleteStale's check-then-
	// remove; see refresh.
	locks [lockStripes]sync.Mutex
}

var _ blob.Bucket = (*Bucket)(nil)

// keyPattern is the only key shape this bucket ever produces or opens.
var keyPattern = regexp.MustCompile(`^[0-9a-f]{64}\.(png|jpg|webp|gif)$`)

// exts maps stored MIME types to key extensions, and back.
var exts = map[string]string{
	"image/png":  "png",
	"image/jpeg": "jpg",
	"image/webp": "webp",
	"image/gif":  "gif",
}

// Options tunes a Bucket. The zero value is the durable default.
type Options struct {
	// NoSync skips fsync of files and directories; results then survive a
	// process crash but not a power loss. For tmpfs or disposable results.
	// Writes stay atomic either way: a reader sees a whole object or none.
	NoSync bool
}

// New opens (creating if needed) a bucket in dir. opts is optional so that
// callers written before Options existed keep compiling; at most one is
// read.
func New(dir string, opts ...Options) (*Bucket, error) {
	var o Options
	if len(opts) > 1 {
		return nil, errors.New("opening blob directory: more than one Options given")
	}
	if len(opts) == 1 {
		o = opts[0]
	}
	if dir == "" {
		return nil, errors.New("blob directory is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating blob directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening blob directory: %w", err)
	}
	b := &Bucket{root: root, noSync: o.NoSync}
	// Temp files that exist before this bucket wrote anything are left by
	// a crash between a write and its rename: nothing will ever rename
	// them, so they go now. A failure here only leaves harmless garbage
	// that the retention cleaner's CollectTemp retries later, so it does
	// not stop the gateway from starting.
	_, _ = b.CollectTemp(context.Background(), time.Now())
	return b, nil
}

// Close releases the directory handle.
func (b *Bucket) Close() error { return b.root.Close() }

// objectPath is the key's path inside the root; key must be valid.
func objectPath(key string) string {
	return path.Join(key[0:2], key[2:4], key)
}

// Put stores data under its content address. Writing the same bytes again
// is a no-op; concurrent writers of the same bytes are safe because each
// writes its own temp file and the rename is atomic.
func (b *Bucket) Put(ctx context.Context, data []byte, mime string) (string, error) {
	ext, ok := exts[mime]
	if !ok {
		return "", fmt.Errorf("storing blob: unsupported type %q", mime)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("storing blob: %w", err)
	}
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:]) + "." + ext
	dir := path.Dir(objectPath(key))
	err := b.putIn(dir, key, data)
	if errors.Is(err, fs.ErrNotExist) {
		// The fan-out directory vanished since we made it: forget it and
		// try once more.
		b.made.Delete(dir)
		err = b.putIn(dir, key, data)
	}
	if err != nil {
		return "", fmt.Errorf("storing blob %s: %w", key, err)
	}
	return key, nil
}

// mkdir creates a fan-out directory unless this bucket already did.
func (b *Bucket) mkdir(dir string) error {
	if _, ok := b.made.Load(dir); ok {
		return nil
	}
	if err := b.root.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	b.made.Store(dir, struct{}{})
	return nil
}

// putIn stores data as name in the fan-out directory dir, creating it if
// needed. The directory is opened once as a root of its own and every
// later call names a plain file in it: each call through the bucket's root
// would otherwise walk and check both fan-out levels again (an openat per
// level, several syscalls per step). The sub-root stays confined like its
// parent, so a symlink planted below it still cannot lead outside.
func (b *Bucket) putIn(dir, name string, data []byte) error {
	if err := b.mkdir(dir); err != nil {
		return err
	}
	d, err := b.root.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	if b.refresh(d, name, int64(len(data))) {
		return nil
	}
	return b.writeAtomic(d, name, data)
}

// writeAtomic writes data to a temp file beside final in d, syncs it
// (unless NoSync) and renames it into place, removing the temp file on any
// failure.
func (b *Bucket) writeAtomic(d *os.Root, final string, data []byte) (err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("creating temp file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = d.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if !b.noSync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("syncing: %w", err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing: %w", err)
	}
	if err = d.Rename(tmp, final); err != nil {
		return fmt.Errorf("renaming into place: %w", err)
	}
	if b.noSync {
		return nil
	}
	// Make the rename itself durable; a failure here leaves a complete
	// object, so it is not reported.
	if df, derr := d.Open("."); derr == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	return nil
}

// Get opens a stored object. Any key this bucket could not have produced
// is ErrNotFound.
func (b *Bucket) Get(ctx context.Context, key string) (blob.ReadSeekCloser, blob.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, err
	}
	if !keyPattern.MatchString(key) {
		return nil, blob.Info{}, blob.ErrNotFound
	}
	f, err := b.root.Open(objectPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("opening blob %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, blob.Info{}, fmt.Errorf("reading blob %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, blob.Info{}, blob.ErrNotFound
	}
	return f, blob.Info{Key: key, Size: fi.Size(), MIME: mimeOf(key), Modified: fi.ModTime()}, nil
}

// Delete removes an object; a missing object is not an error, but a key
// this bucket could not have produced is ErrNotFound.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !keyPattern.MatchString(key) {
		return blob.ErrNotFound
	}
	err := b.root.Remove(objectPath(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting blob %s: %w", key, err)
	}
	return nil
}

func mimeOf(key string) string {
	ext := key[strings.LastIndexByte(key, '.')+1:]
	for m, e := range exts {
		if e == ext {
			return m
		}
	}
	return ""
}
