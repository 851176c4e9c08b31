//go:build !unix

package cli

// lockDataDir is a no-op where flock is not available; run one easel serve
// per data directory there.
func lockDataDir(string) (func(), error) { return func() {}, nil }
