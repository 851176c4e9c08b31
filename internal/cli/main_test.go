package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// helperEnv makes the test binary act as the easel command (its arguments
// after "--"), so tests can run it under a pseudo-terminal or send it real
// signals.
const helperEnv = "EASEL_CLI_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	args := os.Args[1:]
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, "v9.9.9", args)
}
