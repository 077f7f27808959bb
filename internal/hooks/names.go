package hooks

import "go.opentelemetry.io/otel/attribute"

// ScopeName is the instrumentation scope of keyward's meter and tracer.
const ScopeName = "github.com/keyward/keyward"

// Attribute keys of keyward's metrics and spans.
const (
	AttrHandler   = attribute.Key("keyward.handler")          // auth, permissions, rate_limit, credits
	AttrOutcome   = attribute.Key("keyward.outcome")          // ok, or the error's reason (else its code)
	AttrScope     = attribute.Key("keyward.rate_limit.scope") // rps, rpm, key, concurrency, auth: on rate_limited only
	AttrOrgID     = attribute.Key("keyward.org.id")           // spans; metrics only with Config.OrgAttribute
	AttrKeyID     = attribute.Key("keyward.key.id")           // spans only
	AttrResult    = attribute.Key("keyward.result")           // lookups, store and ledger calls
	AttrOperation = attribute.Key("keyward.ledger.operation") // reserve, adjust, extend, commit, release, grant, balance
	AttrFeed      = attribute.Key("keyward.feed.kind")        // listen (PostgreSQL) or poll (SQLite)
	AttrScopeAll  = attribute.Key("keyward.invalidation.all") // true: the whole cache dropped
	AttrSlots     = attribute.Key("keyward.redis.slots")      // in-flight slots a background Redis call renews or removes
)

// Metric names, as the README's table lists them.
const (
	MetricRequests         = "keyward.requests"
	MetricLookups          = "keyward.key.lookups"
	MetricStoreDuration    = "keyward.key.store.duration"
	MetricLimiterErrors    = "keyward.rate_limit.store.errors"
	MetricFailOpen         = "keyward.rate_limit.fail_open"
	MetricCreditsReserved  = "keyward.credits.reserved"
	MetricCreditsCommitted = "keyward.credits.committed"
	MetricCreditsReleased  = "keyward.credits.released"
	MetricOpenReservations = "keyward.credits.reservations.open"
	MetricLedgerDuration   = "keyward.ledger.duration"
	MetricFeedConnected    = "keyward.feed.connected"
	MetricFeedReconnects   = "keyward.feed.reconnects"
	MetricInvalidations    = "keyward.feed.invalidations"
	MetricFeedLag          = "keyward.feed.lag"
	MetricUsageRows        = "keyward.usage.rows"
	MetricUsageFailures    = "keyward.usage.flush.failures"
)
