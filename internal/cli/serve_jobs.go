package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/jobs"
	"github.com/easelgw/easel/internal/keys"
	"github.com/easelgw/easel/internal/netguard"
	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
	"github.com/easelgw/easel/internal/webhook"
)

// newJobs builds the durable job manager: River queues per backend on the
// database, webhooks through the SSRF guard.
func newJobs(ctx context.Context, cfg *config.Config, svc *gen.Service, st *sqlite.Store, blobs blob.Bucket,
	access *keys.Service, log *slog.Logger, render func(*store.JobRecord) any) (*jobs.Manager, error) {
	backends := make(map[string]int, len(cfg.Backends))
	for _, b := range cfg.Backends {
		backends[b.Name] = b.Concurrency
	}
	queues := make(map[string]string, len(cfg.Models))
	for _, m := range cfg.Models {
		if len(m.Backends) > 0 {
			queues[m.ID] = m.Backends[0]
		}
	}
	deliverer := webhook.NewDeliverer(webhook.Options{
		Client: netguard.New(netguard.Options{
			AllowPrivate: cfg.Webhooks.AllowPrivateNetworks,
			AllowedPorts: cfg.Webhooks.AllowedPorts,
			MaxRedirects: -1,
			Timeout:      cfg.Webhooks.Timeout,
			UserAgent:    webhook.DefaultUserAgent,
		}).HTTPClient(),
		Timeout: cfg.Webhooks.Timeout,
		Logger:  log,
	})
	mgr, err := jobs.New(ctx, jobs.Options{
		Gen:            svc,
		Store:          st,
		SingleProcess:  true, // the embedded SQLite file belongs to this process
		Blobs:          blobs,
		Backends:       backends,
		ModelQueue:     queues,
		AsyncTimeout:   cfg.Jobs.AsyncTimeout,
		IdempotencyTTL: cfg.Jobs.IdempotencyTTL,
		Webhooks:       deliverer,
		WebhookSecret:  access.WebhookSecret,
		WebhookData:    render,
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the job manager: %w", err)
	}
	return mgr, nil
}

func stopJobs(mgr *jobs.Manager, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownDrain)
	defer cancel()
	if err := mgr.Stop(ctx); err != nil {
		log.Warn("stopping async jobs", "err", err)
	}
}

// admitter applies the caller's key limits to each job.
type admitter struct{ access *keys.Service }

// Admit implements openaiapi.Admitter.
func (a admitter) Admit(ctx context.Context, images int) (func(int), error) {
	id, ok := keys.FromContext(ctx)
	if !ok {
		id = a.access.Anonymous()
	}
	t, err := a.access.AdmitJob(ctx, id, images)
	if err != nil {
		return nil, err
	}
	return func(produced int) { t.Done(context.WithoutCancel(ctx), produced) }, nil
}
