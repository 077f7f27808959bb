package memstore_test

import (
	"testing"
	"time"

	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
)

func TestKeyBackend(t *testing.T) {
	keywardtest.TestKeyBackend(t, func(t *testing.T, now func() time.Time) keywardtest.KeyBackend {
		s, err := memstore.New(memstore.Options{Prefix: "triq_", Now: now})
		require.NoError(t, err)
		return s
	})
}

func TestNewNeedsAPrefix(t *testing.T) {
	_, err := memstore.New(memstore.Options{})
	require.Error(t, err)
}
