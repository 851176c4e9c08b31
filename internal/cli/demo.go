package cli

import (
	"fmt"
	"log/slog"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/provider/gradio/gradiotest"
)

// demoFakeConcurrency is how many calls the demo fake runs at once: both
// demo backends share it, each with two slots of its own.
const demoFakeConcurrency = 2 * demoConcurrency

// startDemo runs the in-process fake of --demo (one Gradio app with a
// Z-Image-Turbo endpoint and an image-edit endpoint) and adds it to cfg as
// the backends of the models config.DemoModelID and config.DemoEditModelID.
// The returned function stops the fake.
func startDemo(cfg *config.Config, log *slog.Logger) (func(), error) {
	behavior := gradiotest.Behavior{Steps: demoSteps, StepDelay: demoStepDelay}
	endpoints := append(gradiotest.ZImageTurbo(behavior), gradiotest.ImageEdit(behavior)...)
	fake, err := gradiotest.Start("127.0.0.1:0", gradiotest.Options{
		Endpoints:   endpoints,
		Concurrency: demoFakeConcurrency,
		NoRecord:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the demo backend: %w", err)
	}
	cfg.WithDemo(fake.URL)
	if err := cfg.Validate(); err != nil {
		fake.Close()
		return nil, fmt.Errorf("adding the demo backend: %w", err)
	}
	log.Info("demo backend running", "url", fake.URL, "models", []string{config.DemoModelID, config.DemoEditModelID})
	return fake.Close, nil
}
