package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Exit codes of easel commands. They let scripts tell a mistake in the
// command line from a refusal by the server and from a failing backend.
const (
	// ExitOK means success.
	ExitOK = 0
	// ExitFailure is any other failure (network, file system, a backend
	// down in "easel backends").
	ExitFailure = 1
	// ExitUsage is a bad command line: unknown flag, wrong arguments, an
	// invalid flag value.
	ExitUsage = 2
	// ExitAuth is a refused API key (HTTP 401 or 403).
	ExitAuth = 3
	// ExitRateLimited is HTTP 429: try again later.
	ExitRateLimited = 4
	// ExitUpstream is a failing or unavailable backend (HTTP 502, 503,
	// 504, or the same failure reported inside a stream).
	ExitUpstream = 5
	// ExitBadRequest is a request the server refused (HTTP 400, 404, 413):
	// unknown model, bad size, prompt too long.
	ExitBadRequest = 6
	// ExitInterrupted is Ctrl-C (SIGINT) or SIGTERM; the job was cancelled
	// on the server. 128+SIGINT, as shells report it.
	ExitInterrupted = 130
)

// exitCodesHelp documents the codes in the help of the commands that use
// them.
const exitCodesHelp = `Exit codes:
  0    success
  1    other failure (network, files, unexpected answer)
  2    usage error (bad flag, argument or flag value)
  3    authentication refused (HTTP 401/403)
  4    rate limited (HTTP 429)
  5    upstream failure (HTTP 502/503/504, backend failed or unavailable)
  6    bad request (HTTP 400/404/413: unknown model, bad size, ...)
  130  interrupted (Ctrl-C); the job is cancelled on the server`

// ExitError carries the process exit code of a failed command.
type ExitError struct {
	// Code is the process exit code (one of the Exit constants).
	Code int
	// Err is the failure shown to the user.
	Err error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit code for an error returned by the command
// tree: 0 for nil, the code of an *ExitError, else ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailure
}

// usageError marks err as a command-line mistake (exit code 2).
func usageError(err error) error {
	return &ExitError{Code: ExitUsage, Err: err}
}

// usageErrorf formats a command-line mistake (exit code 2).
func usageErrorf(format string, args ...any) error {
	return usageError(fmt.Errorf(format, args...))
}

// Run runs the easel command tree with args (nil: the process's own
// arguments) until ctx ends, prints a failure on stderr and returns the
// process exit code. cmd/easel and the tests that re-run their own binary
// as easel share it.
func Run(ctx context.Context, version string, args []string) int {
	root := NewRoot(Options{Version: version})
	if args != nil {
		root.SetArgs(args)
	}
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "easel:", err)
	}
	return ExitCode(err)
}
