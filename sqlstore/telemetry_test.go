package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/telemetry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// feedPoints returns, for the feed of kind, the connected gauge (-1 if
// none), the reconnects, and the lag histogram's count and sum.
func feedPoints(t *testing.T, reader *sdkmetric.ManualReader, kind string) (connected, reconnects int64, lags uint64, lagSum float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	connected = -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if v, ok := p.Attributes.Value(telemetry.AttrFeed); ok && v.AsString() == kind && m.Name == telemetry.MetricFeedConnected {
						connected = p.Value
					}
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if v, ok := p.Attributes.Value(telemetry.AttrFeed); ok && v.AsString() == kind && m.Name == telemetry.MetricFeedReconnects {
						reconnects = p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if v, ok := p.Attributes.Value(telemetry.AttrFeed); ok && v.AsString() == kind && m.Name == telemetry.MetricFeedLag {
						lags, lagSum = p.Count, p.Sum
					}
				}
			}
		}
	}
	return connected, reconnects, lags, lagSum
}

// TestFeedTelemetry: the change feed reports itself connected, how long a
// change took to arrive (keyward.feed.lag: on SQLite each change polled,
// on PostgreSQL the feed's heartbeat to itself, sent as it connects and
// every ten seconds), and on PostgreSQL a lost connection: the gauge at 0,
// a reconnect counted, then connected again.
func TestFeedTelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	require.NoError(t, telemetry.Configure(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}))
	t.Cleanup(func() { require.NoError(t, telemetry.Configure(telemetry.Config{})) })
	ctx := context.Background()

	t.Run("sqlite", func(t *testing.T) {
		dsn := newDSN(t, "sqlite")
		watched, other := open(t, dsn, sqlstore.Options{Logger: quiet}), open(t, dsn, sqlstore.Options{Logger: quiet})
		watched.Watch(&counter{})
		require.Eventually(t, func() bool { c, _, _, _ := feedPoints(t, reader, "poll"); return c == 1 }, 5*time.Second, 10*time.Millisecond)
		_, _, before, _ := feedPoints(t, reader, "poll")
		org, err := other.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
		require.NoError(t, err)
		_, err = other.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
		require.Eventually(t, func() bool { _, _, n, _ := feedPoints(t, reader, "poll"); return n > before }, 5*time.Second, 10*time.Millisecond,
			"the change polled, its lag recorded")
		_, _, n, sum := feedPoints(t, reader, "poll")
		assert.Less(t, sum/float64(n), 2.0, "a lag of about the poll interval (50 ms here), not seconds")
	})

	t.Run("postgres", func(t *testing.T) {
		proxy, dsn := proxied(t, newDSN(t, "postgres"))
		_, reconnects, lags, _ := feedPoints(t, reader, "listen")
		s := open(t, dsn, sqlstore.Options{Logger: quiet})
		s.Watch(&counter{})
		require.Eventually(t, func() bool {
			c, _, n, _ := feedPoints(t, reader, "listen")
			return c == 1 && n > lags
		}, 5*time.Second, 10*time.Millisecond, "connected, and the first heartbeat's round trip recorded")
		_, _, n, sum := feedPoints(t, reader, "listen")
		assert.Less(t, sum/float64(n), 1.0, "a round trip on this machine")

		proxy.Cut()
		require.Eventually(t, func() bool { c, r, _, _ := feedPoints(t, reader, "listen"); return c == 0 && r > reconnects },
			3*time.Second, 20*time.Millisecond, "the feed is lost at once (not at the next heartbeat): the gauge at 0, a reconnect counted")
		proxy.Restore()
		require.Eventually(t, func() bool { c, _, _, _ := feedPoints(t, reader, "listen"); return c == 1 }, 20*time.Second, 20*time.Millisecond)
	})
}
