// Package telemetry configures keyward's OpenTelemetry instrumentation
// and names it: the metrics and spans every keyward handler, cache, ledger
// call, limiter store, change feed and usage flush reports. keyward uses
// the OpenTelemetry API only; the SDK, and so whether anything is recorded
// at all, is the host's choice.
//
// By default keyward reports through the global providers
// (otel.GetMeterProvider, otel.GetTracerProvider), which record nothing
// until the host installs an SDK (otel.SetMeterProvider), and then forward
// to it. Configure points keyward at other providers, once, for the whole
// process. Nothing on the request path allocates while no SDK listens:
// instruments are made once and every attribute set is built ahead.
//
// The instrumentation is a layer around the request path: each handler's
// decision is observed once, after it is made, and the credit ledger is
// wrapped once; no decision depends on it.
//
// Rules: a presented key is never in an attribute, span or metric; a key
// id is on spans only; an organization id is on spans, and on metrics only
// with Config.OrgAttribute (one series per organization). keyward's spans
// (key store lookups, ledger calls, Redis calls) are made only under a
// recording span of the request (otelhttp's, say); the change feed's
// connection spans are roots. The README lists every metric.
package telemetry

import (
	"github.com/keyward/keyward/internal/hooks"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of keyward's meter and tracer:
// "github.com/keyward/keyward".
const ScopeName = hooks.ScopeName

// Attribute keys of keyward's metrics and spans.
const (
	AttrHandler   = hooks.AttrHandler   // keyward.handler: auth, permissions, rate_limit, credits
	AttrOutcome   = hooks.AttrOutcome   // keyward.outcome: ok, or the error's reason (else its code)
	AttrScope     = hooks.AttrScope     // keyward.rate_limit.scope: rps, rpm, key, concurrency, auth; on rate_limited only
	AttrOrgID     = hooks.AttrOrgID     // keyward.org.id: spans; metrics only with Config.OrgAttribute
	AttrKeyID     = hooks.AttrKeyID     // keyward.key.id: spans only
	AttrResult    = hooks.AttrResult    // keyward.result: lookups, store and ledger calls
	AttrOperation = hooks.AttrOperation // keyward.ledger.operation: reserve, adjust, extend, commit, release, grant, balance
	AttrFeed      = hooks.AttrFeed      // keyward.feed.kind: listen (PostgreSQL) or poll (SQLite)
	AttrScopeAll  = hooks.AttrScopeAll  // keyward.invalidation.all: true when the whole cache was dropped
	AttrSlots     = hooks.AttrSlots     // keyward.redis.slots: in-flight slots a background Redis call renews or removes
)

// Metric names, as the README's table lists them.
const (
	MetricRequests         = hooks.MetricRequests         // keyward.requests
	MetricLookups          = hooks.MetricLookups          // keyward.key.lookups
	MetricStoreDuration    = hooks.MetricStoreDuration    // keyward.key.store.duration
	MetricLimiterErrors    = hooks.MetricLimiterErrors    // keyward.rate_limit.store.errors
	MetricFailOpen         = hooks.MetricFailOpen         // keyward.rate_limit.fail_open
	MetricCreditsReserved  = hooks.MetricCreditsReserved  // keyward.credits.reserved
	MetricCreditsCommitted = hooks.MetricCreditsCommitted // keyward.credits.committed
	MetricCreditsReleased  = hooks.MetricCreditsReleased  // keyward.credits.released
	MetricOpenReservations = hooks.MetricOpenReservations // keyward.credits.reservations.open
	MetricLedgerDuration   = hooks.MetricLedgerDuration   // keyward.ledger.duration
	MetricFeedConnected    = hooks.MetricFeedConnected    // keyward.feed.connected
	MetricFeedReconnects   = hooks.MetricFeedReconnects   // keyward.feed.reconnects
	MetricInvalidations    = hooks.MetricInvalidations    // keyward.feed.invalidations
	MetricFeedLag          = hooks.MetricFeedLag          // keyward.feed.lag
	MetricUsageRows        = hooks.MetricUsageRows        // keyward.usage.rows
	MetricUsageFailures    = hooks.MetricUsageFailures    // keyward.usage.flush.failures
)

// Config chooses where keyward reports. Every zero value means the
// default said beside it.
type Config struct {
	// MeterProvider makes keyward's instruments. Nil: the global one
	// (otel.GetMeterProvider()).
	MeterProvider metric.MeterProvider
	// TracerProvider makes keyward's spans. Nil: the global one.
	TracerProvider trace.TracerProvider
	// OrgAttribute adds keyward.org.id to the metrics of requests, lookups
	// found and credits. Zero (false): none, since each organization then
	// costs a series of its own, and an allocation per measurement.
	OrgAttribute bool
}

// Configure makes every keyward instrument of the process report through
// cfg's providers from now on; call it at start-up, before serving. Its
// error is the meter's: an instrument it could not make.
func Configure(cfg Config) error {
	return hooks.Configure(hooks.Config(cfg))
}
