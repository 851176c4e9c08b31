package openaiapi

import (
	"context"

	"github.com/easelgw/easel/internal/blob"
	"github.com/easelgw/easel/internal/gen"
)

// nopService satisfies Service for option tests that never start jobs.
type nopService struct{}

func (nopService) Models() []gen.ModelInfo            { return nil }
func (nopService) Model(string) (gen.ModelInfo, bool) { return gen.ModelInfo{}, false }
func (nopService) Start(context.Context, *gen.Request) (*gen.Job, error) {
	return nil, &gen.NotFoundError{}
}
func (nopService) Run(context.Context, *gen.Request) (*gen.Job, error) {
	return nil, &gen.NotFoundError{}
}
func (nopService) Blobs() blob.Bucket { return nil }
