package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print easel's version, Go version and platform",
		Args:    cobra.NoArgs,
		Example: "  easel version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "easel %s\n", o.Version)
			fmt.Fprintf(w, "go: %s\n", runtime.Version())
			fmt.Fprintf(w, "platform: %s/%s\n", runtime.GOOS, runtime.GOARCH)
			if rev, modified := vcsRevision(); rev != "" {
				if modified {
					rev += " (modified)"
				}
				fmt.Fprintf(w, "commit: %s\n", rev)
			}
			return nil
		},
	}
}

// vcsRevision reads the commit the binary was built from, when the build
// recorded it.
func vcsRevision() (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}
