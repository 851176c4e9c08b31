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
