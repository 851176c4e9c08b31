package jobs

import (
	"context"
	"testing"

	"github.com/easelgw/easel/internal/gen"
)

// BenchmarkSyncRun compares a sync job run through the Manager (recorded)
// with the same job run on gen directly, on an instant fake backend:
// the difference is what recording costs the sync path.
func BenchmarkSyncRun(b *testing.B) {
	for _, recorded := range []bool{false, true} {
		name := "gen"
		if recorded {
			name = "recorded"
		}
		b.Run(name, func(b *testing.B) {
			bd := open(b, b.TempDir(), newFake(), nil, options{})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := &gen.Request{Model: "m", Prompt: "bench", N: 1, Width: 64, Height: 64, KeyID: "k"}
				var err error
				if recorded {
					_, err = bd.m.Run(ctx, req)
				} else {
					_, err = bd.gen.Run(ctx, req)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
