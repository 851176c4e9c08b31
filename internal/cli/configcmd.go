package cli

import (
	"github.com/spf13/cobra"

	"github.com/easelgw/easel/internal/config"
)

func newConfigCommand(o *Options) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration and print it with secrets hidden",
		Long: `Load the configuration exactly as "easel serve" would (file, environment
overlay, presets, defaults), report every problem found, and print the
effective configuration as YAML. API keys, tokens and the signing key are
never printed; comments say whether each is set. The output loads back as a
config file.`,
		Example: `  # The built-in configuration
  easel config

  # Check a file before deploying it
  easel config --config /etc/easel/easel.yaml

  # Start a config file from the defaults
  easel config > easel.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath(path, o.Getenv), o.Getenv)
			if err != nil {
				return err
			}
			out, err := cfg.Redacted()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "YAML config file (env "+EnvConfig+"; default: built-in configuration)")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}
