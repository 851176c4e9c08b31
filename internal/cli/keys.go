package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
)

// DatabaseFile is the store's file name inside the data directory.
const DatabaseFile = "easel.db"

// keysFlags are the flags every keys subcommand shares.
type keysFlags struct {
	config  string
	dataDir string
	json    bool
}

func newKeysCommand(o *Options) *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke API keys",
		Long: `Manage the API keys kept in the database (<data_dir>/` + DatabaseFile + `). The commands open the
database directly, so they work whether or not "easel serve" is running; run them
with the same config, data directory and EASEL_SIGNING_KEY as serve (the key's
stored hash depends on the signing key).

A new key is printed once and never again: only its id and a keyed hash are
stored. Its webhook secret, which signs the webhooks of the key's jobs, is
printed with it (the key can read it back later from GET /v1/webhooks/secret).

While no key exists anywhere (none in the database, none in EASEL_API_KEYS)
easel serves without authentication on loopback only. A running server turns
authentication on within a second of the first key being created, and keeps it
on until it restarts, even if every key is revoked.

Limits: --rpm (requests per minute), --concurrent (jobs at once) and
--images-per-day (images in any 24 hours). Left out, the server's "limits"
config applies; 0 means unlimited.`,
		Example: `  # An admin key for yourself, and a limited key for an app
  easel keys create --name ops --admin
  easel keys create --name app --rpm 60 --concurrent 2 --images-per-day 500 \
    --webhook-url https://app.example/hooks/easel

  easel keys list
  easel keys revoke abcd1234`,
		Args: usageArgs(cobra.NoArgs),
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", "", "YAML config file (env "+EnvConfig+"; default: built-in configuration)")
	pf.StringVar(&f.dataDir, "data-dir", "", "data directory holding "+DatabaseFile+" (env "+config.EnvDataDir+"; default "+config.DefaultDataDir+")")
	pf.BoolVar(&f.json, "json", false, "print JSON instead of text")
	_ = cmd.MarkPersistentFlagFilename("config", "yaml", "yml")
	_ = cmd.MarkPersistentFlagDirname("data-dir")
	cmd.AddCommand(newKeysCreateCommand(o, f), newKeysListCommand(o, f), newKeysRevokeCommand(o, f))
	return cmd
}

// openKeys loads the config as serve does and opens the key service on
// the store. The caller closes the store.
func openKeys(ctx context.Context, o *Options, f *keysFlags) (*keys.Service, *sqlite.Store, error) {
	getenv := func(k string) string {
		if k == config.EnvDataDir && f.dataDir != "" {
			return f.dataDir
		}
		return o.Getenv(k)
	}
	cfg, err := config.Load(configPath(f.config, o.Getenv), getenv)
	if err != nil {
		return nil, nil, err
	}
	signingKey, err := cfg.LoadSigningKey()
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, DatabaseFile))
	if err != nil {
		return nil, nil, err
	}
	svc, err := keys.New(keys.Options{
		Keys:       st.Keys(),
		Usage:      st.Usage(),
		SigningKey: signingKey,
		Defaults:   keys.Limits(cfg.Limits),
	})
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return svc, st, nil
}

func newKeysCreateCommand(o *Options, f *keysFlags) *cobra.Command {
	var (
		spec                    keys.Spec
		rpm, concurrent, perDay int
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an API key and print it once",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if fl.Changed("rpm") {
				spec.Limits.RequestsPerMinute = &rpm
			}
			if fl.Changed("concurrent") {
				spec.Limits.ConcurrentJobs = &concurrent
			}
			if fl.Changed("images-per-day") {
				spec.Limits.ImagesPerDay = &perDay
			}
			svc, st, err := openKeys(cmd.Context(), o, f)
			if err != nil {
				return err
			}
			defer st.Close()
			created, err := svc.CreateKey(cmd.Context(), spec)
			var se *keys.SpecError
			if errors.As(err, &se) {
				return usageErrorf("--%s: %s", flagOf(se.Param), se.Message)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				if err := writeJSON(out, created); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "Created API key %s %q (scopes: %s)\n\n", created.ID, created.Name, strings.Join(created.Scopes, ", "))
				fmt.Fprintf(out, "  API key:         %s\n", created.Key)
				fmt.Fprintf(out, "  Webhook secret:  %s\n\n", created.WebhookSecret)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "Copy the key now: it cannot be shown again (only a hash of it is stored).")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Name, "name", "", "label for the key (required)")
	fl.BoolVar(&spec.Admin, "admin", false, "give the key the admin scope (the admin API) as well as user")
	fl.IntVar(&rpm, "rpm", 0, "requests per minute (0 unlimited; default: the server's limits config)")
	fl.IntVar(&concurrent, "concurrent", 0, "jobs queued or running at once (0 unlimited; default: the server's limits config)")
	fl.IntVar(&perDay, "images-per-day", 0, "images in any 24 hours (0 unlimited; default: the server's limits config)")
	fl.StringVar(&spec.WebhookURL, "webhook-url", "", "default webhook for the key's jobs (http or https URL)")
	return cmd
}

// flagOf names the flag behind a spec field.
func flagOf(param string) string {
	switch param {
	case "limits.requests_per_minute":
		return "rpm"
	case "limits.concurrent_jobs":
		return "concurrent"
	case "limits.images_per_day":
		return "images-per-day"
	case "webhook_url":
		return "webhook-url"
	}
	return param
}

func newKeysListCommand(o *Options, f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the API keys (never their secrets)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, st, err := openKeys(cmd.Context(), o, f)
			if err != nil {
				return err
			}
			defer st.Close()
			infos, err := svc.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, infos)
			}
			if len(infos) == 0 {
				fmt.Fprintln(out, "No API keys. Create one with: easel keys create --name NAME")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tKEY\tCREATED\tLAST USED\tREVOKED\tRPM\tCONCURRENT\tIMAGES/DAY\tWEBHOOK")
			for _, k := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
					k.ID, printable(k.Name), strings.Join(k.Scopes, ","), k.Prefix,
					unixTime(&k.CreatedAt), unixTime(k.LastUsedAt), unixTime(k.RevokedAt),
					limitText(k.Limits.RequestsPerMinute, k.EffectiveLimits.RequestsPerMinute),
					limitText(k.Limits.ConcurrentJobs, k.EffectiveLimits.ConcurrentJobs),
					limitText(k.Limits.ImagesPerDay, k.EffectiveLimits.ImagesPerDay),
					orDash(k.WebhookURL))
			}
			return tw.Flush()
		},
	}
}

func newKeysRevokeCommand(o *Options, f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; a running server refuses it from its next request",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := openKeys(cmd.Context(), o, f)
			if err != nil {
				return err
			}
			defer st.Close()
			info, err := svc.RevokeKey(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no API key has the id %q (see easel keys list)", args[0])
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, info)
			}
			fmt.Fprintf(out, "Revoked API key %s %q at %s\n", info.ID, printable(info.Name), unixTime(info.RevokedAt))
			return nil
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func unixTime(sec *int64) string {
	if sec == nil {
		return "-"
	}
	return time.Unix(*sec, 0).UTC().Format(time.DateTime)
}

// limitText shows a key's limit: its own, "unlimited", or the server's
// default marked as such.
func limitText(own *int, effective int) string {
	switch {
	case own != nil && *own == 0:
		return "unlimited"
	case own != nil:
		return strconv.Itoa(*own)
	case effective == 0:
		return "default (unlimited)"
	}
	return "default (" + strconv.Itoa(effective) + ")"
}

// printable keeps a name on one table cell: names cannot hold control
// characters, but tabs would still shift the columns.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
