// Package cli holds easel's command line: the cobra command tree (serve,
// config, version, gen, probe, backends, keys, plus cobra's completion and
// help)
// and, in serve, the composition root that wires configuration, storage,
// backends, the job service and the HTTP server together by constructor
// arguments.
package cli

import (
	"io"
	"net"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// EnvConfig names the environment variable that gives the config file
// when --config is not set.
const EnvConfig = "EASEL_CONFIG"

// Options carries what the commands take from their process. Zero fields
// take the real process's: os.Getenv, os.Stdout, os.Stderr.
type Options struct {
	// Version is the release version, set at build time with
	// -ldflags "-X main.version=v1.2.3"; empty or "dev" falls back to the
	// module version recorded by `go install`, else "dev".
	Version string
	// Getenv reads the environment; tests pass a map.
	Getenv func(string) string
	// Stdout and Stderr receive command output and logs.
	Stdout, Stderr io.Writer
	// OnListen, when set, is called by serve with the bound address once
	// it accepts connections; tests use it with a port-0 listen address.
	OnListen func(net.Addr)
}

func (o *Options) fill() {
	o.Version = resolveVersion(o.Version)
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// NewRoot builds the easel command tree. Run it with ExecuteContext; a
// cancelled context (SIGINT, SIGTERM) stops serve gracefully.
func NewRoot(opts Options) *cobra.Command {
	opts.fill()
	root := &cobra.Command{
		Use:   "easel",
		Short: "An OpenAI-compatible Images API over image-generation backends",
		Long: `easel is a gateway that turns image-generation backends (Gradio Spaces such as
Z-Image-Turbo, and more) into one OpenAI-compatible Images API:
/v1/images/generations, /v1/chat/completions and /v1/models.

Run "easel serve" to start it with the built-in backends on 127.0.0.1:8080,
or "easel serve --demo" to try it without any network access. Then
"easel gen" draws images from it, "easel probe" writes the backend config
for another Gradio Space and "easel backends" checks the configured ones.`,
		Version:       opts.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(opts.Stdout)
	root.SetErr(opts.Stderr)
	root.SetVersionTemplate("easel {{.Version}}\n")
	root.AddCommand(
		newServeCommand(&opts),
		newConfigCommand(&opts),
		newVersionCommand(&opts),
		newGenCommand(&opts),
		newProbeCommand(&opts),
		newBackendsCommand(&opts),
		newKeysCommand(&opts),
	)
	// Flag mistakes exit with ExitUsage; subcommands inherit this.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	return root
}

func resolveVersion(v string) string {
	if v != "" && v != "dev" {
		return v
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// configPath is the --config flag, else $EASEL_CONFIG, else "" (built-in
// defaults).
func configPath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	return getenv(EnvConfig)
}
