package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/keyward/keyward/telemetry"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestBackgroundSpans: the Redis calls a Store makes on its own, for no
// one request (renewing the slots it holds, removing the slots given
// back), are root spans with the number of slots, while a TracerProvider
// listens.
func TestBackgroundSpans(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	require.NoError(t, telemetry.Configure(telemetry.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))}))
	t.Cleanup(func() { require.NoError(t, telemetry.Configure(telemetry.Config{})) })
	opts := redisOptions(t)
	ctx := context.Background()
	s, err := redislimit.New(ctx, newClient(t, opts), redislimit.Options{Prefix: testPrefix(t, opts), SlotTTL: 300 * time.Millisecond})
	require.NoError(t, err)
	org := "org_" + ids.New("")
	res, err := s.Take(ctx, rate.Request{Org: org, Key: "key_1", PerSecond: 10, PerMinute: 600, Concurrency: 5, Now: time.Now()})
	require.NoError(t, err)
	require.NotZero(t, res.Slot)

	ended := func(name string) bool {
		for _, sp := range spans.Ended() {
			if sp.Name() != name {
				continue
			}
			require.False(t, sp.Parent().IsValid(), "%s is a root", name)
			attrs := map[string]string{}
			for _, kv := range sp.Attributes() {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if attrs["keyward.redis.slots"] == "1" && attrs["keyward.outcome"] == "ok" && len(attrs) == 2 {
				return true // (another test's Store may add spans of its own)
			}
		}
		return false
	}
	require.Eventually(t, func() bool { return ended("keyward.redis.renew") }, 2*time.Second, 10*time.Millisecond, "the held slot renewed (every SlotTTL/3)")
	s.Release(org, res.Slot)
	require.Eventually(t, func() bool { return ended("keyward.redis.release") }, 2*time.Second, 5*time.Millisecond, "the slot given back removed")
}
