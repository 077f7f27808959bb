package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/keyward/keyward/telemetry"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestBackgroundFailureSpans: the Redis calls a Store makes on its own,
// for no one request (renewing the slots it holds, removing the slots
// given back), run up to hundreds of times a second: one that succeeds
// makes no span; one that fails is a root span with the number of slots
// and the error.
//
// Another test's Store may still renew slots (on a client its test has
// closed): this one runs in a process of its own.
func TestBackgroundFailureSpans(t *testing.T) {
	if !testenv.Alone(t) {
		return
	}
	spans := tracetest.NewSpanRecorder()
	require.NoError(t, telemetry.Configure(telemetry.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))}))
	t.Cleanup(func() { require.NoError(t, telemetry.Configure(telemetry.Config{})) })
	opts := redisOptions(t)
	ctx := context.Background()
	client := newClient(t, opts)
	s, err := redislimit.New(ctx, client, redislimit.Options{Prefix: testPrefix(t, opts), SlotTTL: 300 * time.Millisecond})
	require.NoError(t, err)
	org := "org_" + ids.New("")
	req := rate.Request{Org: org, Key: "key_1", PerSecond: 10, PerMinute: 600, Concurrency: 5, Now: time.Now()}
	a, err := s.Take(ctx, req)
	require.NoError(t, err)
	b, err := s.Take(ctx, req)
	require.NoError(t, err)
	s.Release(org, a.Slot)
	time.Sleep(250 * time.Millisecond) // a's removal and b's renewals ran, and succeeded
	named := func(name string) (found []sdktrace.ReadOnlySpan) {
		for _, sp := range spans.Ended() {
			if sp.Name() == name {
				found = append(found, sp)
			}
		}
		return found
	}
	require.Empty(t, named("keyward.redis.release"))
	require.Empty(t, named("keyward.redis.renew"))

	require.NoError(t, client.Close()) // every later call fails
	s.Release(org, b.Slot)
	require.Eventually(t, func() bool { return len(named("keyward.redis.release")) > 0 }, 2*time.Second, 5*time.Millisecond)
	sp := named("keyward.redis.release")[0]
	require.False(t, sp.Parent().IsValid(), "a root")
	require.Equal(t, codes.Error, sp.Status().Code)
	attrs := map[string]string{}
	for _, kv := range sp.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	require.Equal(t, map[string]string{"keyward.redis.slots": "1", "keyward.outcome": "error"}, attrs)
	require.Len(t, sp.Events(), 1, "the error, recorded")
}
