package hooks

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// The change feed's and the usage flush's hooks: they run in the
// background, for no one request, and record through the SDK's own
// instruments.

// FeedConnected reports that the change feed of kind ("listen" on
// PostgreSQL, "poll" on SQLite) is connected (again).
func FeedConnected(ctx context.Context, kind string) {
	get().feedConnected.Record(ctx, 1, metric.WithAttributes(AttrFeed.String(kind)))
}

// FeedLost reports that the change feed of kind was lost: it reconnects
// (and then drops every cache).
func FeedLost(ctx context.Context, kind string) {
	in := get()
	in.feedConnected.Record(ctx, 0, metric.WithAttributes(AttrFeed.String(kind)))
	in.feedReconnects.Add(ctx, 1, metric.WithAttributes(AttrFeed.String(kind)))
}

// Invalidated reports invalidations received from a change feed: n keys,
// or (all) the whole cache.
func Invalidated(ctx context.Context, n int, all bool) {
	if n > 0 {
		get().invalidations.Add(ctx, int64(n), metric.WithAttributes(AttrScopeAll.Bool(all)))
	}
}

// FeedLag reports how long a change took to reach this process through
// the change feed of kind (a negative lag, from clocks apart, counts as
// none).
func FeedLag(ctx context.Context, kind string, lag time.Duration) {
	get().feedLag.Record(ctx, max(lag, 0).Seconds(), metric.WithAttributes(AttrFeed.String(kind)))
}

// UsageFlushed reports a usage flush: rows written, or its failure.
func UsageFlushed(ctx context.Context, rows int, err error) {
	in := get()
	if err != nil {
		in.usageFailures.Add(ctx, 1)
		return
	}
	if rows > 0 {
		in.usageRows.Add(ctx, int64(rows))
	}
}
