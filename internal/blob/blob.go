// Package blob stores result images. The gateway never serves an upstream's
// URL to its clients: it stores the bytes under a content-addressed key and
// serves them from its own signed, expiring URL.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Get and Stat for a missing key.
var ErrNotFound = errors.New("blob not found")

// Info describes a stored object.
type Info struct {
	Key      string
	Size     int64
	MIME     string
	Modified time.Time
}

// Bucket is a flat store of immutable objects.
type Bucket interface {
	// Put stores data and returns its key: the SHA-256 hex of the bytes
	// plus an extension for mime ("<hex>.png"). Writing the same bytes twice
	// is a no-op returning the same key. A Put never leaves a partial object
	// visible under its key.
	Put(ctx context.Context, data []byte, mime string) (string, error)
	// Get opens the object; the caller closes it. The io.ReadSeeker side
	// lets HTTP serving honour Range requests.
	Get(ctx context.Context, key string) (ReadSeekCloser, Info, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ReadSeekCloser is an opened object.
type ReadSeekCloser interface {
	io.ReadSeeker
	io.Closer
}

// Lister is implemented by buckets that can enumerate their objects. The
// retention cleaner needs it to find objects no job record names (results
// of expired jobs, inputs of deleted jobs, files orphaned by a crash
// between a write and its record).
type Lister interface {
	// Walk calls fn once for every stored object, in no particular order.
	// Objects written or deleted during the walk may or may not be seen;
	// Info.Modified is when the object was last written, or last Put
	// again. An error from fn stops the walk and is returned.
	Walk(ctx context.Context, fn func(Info) error) error
}

// StaleDeleter is implemented by buckets that can delete an object only if
// it has not been written since a given time, as one step. The retention
// cleaner prefers it to Delete: between its listing and its delete, a new
// job may Put the same bytes (which refreshes the object's time) and name
// the key in its record, and a plain Delete would then remove a live
// result.
type StaleDeleter interface {
	// DeleteStale removes key if its modification time is before before and
	// reports whether it did; a missing key is (false, nil).
	DeleteStale(ctx context.Context, key string, before time.Time) (bool, error)
}

// TempCollector is implemented by buckets that write through temp files
// and can find the ones a crash left behind.
type TempCollector interface {
	// CollectTemp removes temp files last modified before before and
	// returns how many it removed.
	CollectTemp(ctx context.Context, before time.Time) (int, error)
}
