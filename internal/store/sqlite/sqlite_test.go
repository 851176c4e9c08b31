package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/easelgw/easel/internal/store"
	"github.com/easelgw/easel/internal/store/sqlite"
	"github.com/easelgw/easel/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "data", "easel.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
