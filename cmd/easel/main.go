// Command easel is an OpenAI-compatible Images API gateway over
// image-generation backends. See "easel --help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/easelgw/easel/internal/cli"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/easel
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful shutdown, restore the
		// default handling so a second Ctrl-C ends the process at once.
		<-ctx.Done()
		stop()
	}()
	code := cli.Run(ctx, version, nil)
	stop()
	os.Exit(code)
}
