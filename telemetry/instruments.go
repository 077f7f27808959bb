package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
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

// durationBuckets are the bucket bounds, in seconds, of keyward's call
// durations: from half a millisecond (a local SQLite or memory call) to ten
// seconds (a timeout).
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// instruments are every instrument and attribute set, made once for one
// pair of providers.
type instruments struct {
	org    bool
	tracer trace.Tracer

	requests      metric.Int64ObservableCounter
	decisions     map[decisionKey]*opts
	ok            [numHandlers]*opts // decisions[{h, "ok", ""}]
	lookups       metric.Int64ObservableCounter
	lookupOpts    [numLookups]*opts
	storeDuration metric.Float64Histogram
	storeOpts     [3]*opts // found, not_found, error
	limiterErrors metric.Int64Counter
	failOpen      metric.Int64Counter

	reserved, committed, released metric.Int64ObservableCounter
	open                          metric.Int64ObservableUpDownCounter
	none                          *opts // no attributes
	ledgerDuration                metric.Float64Histogram
	ledgerOpts                    [numOps][3]*opts // by operation and result: ok, refused, error

	feedConnected  metric.Int64Gauge
	feedReconnects metric.Int64Counter
	invalidations  metric.Int64Counter
	feedLag        metric.Float64Histogram
	usageRows      metric.Int64Counter
	usageFailures  metric.Int64Counter

	// The counters above that a request touches are observable: a
	// measurement is an atomic add to its cell, read when a reader
	// collects (cells.go).
	observable [numCells]metric.Int64Observable
	cellsMu    sync.Mutex
	cells      []*cell
	byOrg      sync.Map // orgKey → *opts
}

func newInstruments(cfg Config) (*instruments, error) {
	mp, tp := cfg.MeterProvider, cfg.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m := mp.Meter(ScopeName)
	in := &instruments{org: cfg.OrgAttribute, tracer: tp.Tracer(ScopeName), none: newOpts()}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	observable := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	in.requests = observable(MetricRequests, "{request}", "Requests decided by a keyward handler, by handler and outcome.")
	in.lookups = observable(MetricLookups, "{lookup}", "Key lookups by result: front or cache hit, negative hit, miss (store asked), store error.")
	in.storeDuration = histogram(MetricStoreDuration, "Duration of key store lookups behind the cache.")
	in.limiterErrors = counter(MetricLimiterErrors, "{error}", "Rate-limit store failures.")
	in.failOpen = counter(MetricFailOpen, "{request}", "Requests served without a rate limit because the store failed (fail open).")
	in.reserved = observable(MetricCreditsReserved, "{credit}", "Credits reserved by calls before they ran (raises by SetCost included).")
	in.committed = observable(MetricCreditsCommitted, "{credit}", "Credits charged to calls that completed with a 2xx.")
	in.released = observable(MetricCreditsReleased, "{credit}", "Credits reserved and given back: failed calls, and costs lowered.")
	open, err := m.Int64ObservableUpDownCounter(MetricOpenReservations, metric.WithUnit("{reservation}"),
		metric.WithDescription("Reservations this process holds for calls running now."))
	in.open, errs = open, append(errs, err)
	in.ledgerDuration = histogram(MetricLedgerDuration, "Duration of credit ledger calls, by operation and result.")
	gauge, err := m.Int64Gauge(MetricFeedConnected, metric.WithUnit("{connection}"),
		metric.WithDescription("1 while the store's change feed is connected, 0 while it is lost."))
	in.feedConnected, errs = gauge, append(errs, err)
	in.feedReconnects = counter(MetricFeedReconnects, "{reconnect}", "Times the change feed was lost, and reconnecting began.")
	in.invalidations = counter(MetricInvalidations, "{invalidation}", "Cache invalidations received from the change feed (all: the whole cache dropped).")
	in.feedLag = histogram(MetricFeedLag, "How long a key change took to reach this process through the change feed.")
	in.usageRows = counter(MetricUsageRows, "{row}", "Rows written by usage flushes (keys' last-used times and usage counts).")
	in.usageFailures = counter(MetricUsageFailures, "{failure}", "Usage flushes that failed (their counts are kept for the next one).")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	in.observable = [numCells]metric.Int64Observable{in.requests, in.lookups, in.reserved, in.committed, in.released, in.open}
	if _, err := m.RegisterCallback(in.observe, in.requests, in.lookups, in.reserved, in.committed, in.released, in.open); err != nil {
		return nil, err
	}

	in.decisions = map[decisionKey]*opts{}
	for h, outs := range outcomes {
		for _, o := range outs {
			if o == "rate_limited" {
				for _, s := range scopes {
					in.decisions[decisionKey{h, o, s}] = newOpts(AttrHandler.String(h.String()), AttrOutcome.String(o), AttrScope.String(s))
				}
				continue
			}
			in.decisions[decisionKey{h, o, ""}] = newOpts(AttrHandler.String(h.String()), AttrOutcome.String(o))
		}
	}
	for h := range numHandlers {
		in.ok[h] = in.decisions[decisionKey{h, "ok", ""}]
	}
	for i, name := range lookupNames {
		in.lookupOpts[i] = newOpts(AttrResult.String(name))
	}
	for i, name := range []string{"found", "not_found", "error"} {
		in.storeOpts[i] = newOpts(AttrResult.String(name))
	}
	for op, name := range opNames {
		for i, res := range []string{"ok", "refused", "error"} {
			in.ledgerOpts[op][i] = newOpts(AttrOperation.String(name), AttrResult.String(res))
		}
	}
	return in, nil
}

// Call is one call keyward makes to a store, a ledger or Redis: its span,
// if one was made, and its start, for the duration metrics.
type Call struct {
	span  trace.Span    // nil: no span (no recording span above it)
	start time.Duration // since epoch; 0: not timed
}

// epoch is the start of the calls' clock: time.Since(epoch) reads the
// monotonic clock alone, at about half the cost of time.Now, which reads
// the wall clock too.
var epoch = time.Now()

// began marks c's start, for a duration metric.
func (c *Call) began() { c.start = time.Since(epoch) }

// record records c's duration, from its start (if marked) to now, in h
// with opts. The context given to the SDK is ctx only if c's span is
// sampled: exemplars link sampled traces alone, and a context the SDK
// would search for a span in costs it a walk up the request's contexts.
func (c Call) record(ctx context.Context, h metric.Float64Histogram, opts []metric.RecordOption) {
	if c.start == 0 {
		return
	}
	if c.span == nil || !c.span.SpanContext().IsSampled() {
		ctx = context.Background()
	}
	h.Record(ctx, (time.Since(epoch) - c.start).Seconds(), opts...)
}

// Start begins a call named name (a span under ctx's span, only if that
// one is recording) for organization org and key id key, either "" if
// unknown. End it with End.
func Start(ctx context.Context, name, org, key string) (context.Context, Call) {
	if !tracing() || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, Call{}
	}
	return startSpan(ctx, name, org, key)
}

func startSpan(ctx context.Context, name, org, key string) (context.Context, Call) {
	attrs := make([]attribute.KeyValue, 0, 2)
	if org != "" {
		attrs = append(attrs, AttrOrgID.String(org))
	}
	if key != "" {
		attrs = append(attrs, AttrKeyID.String(key))
	}
	ctx, span := get().tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, Call{span: span}
}

// Key adds the key id and organization a call found to its span.
func (c Call) Key(keyID, org string) {
	if c.span != nil {
		c.span.SetAttributes(AttrKeyID.String(keyID), AttrOrgID.String(org))
	}
}

// End ends the call's span with outcome; a non-nil err is recorded on it
// and sets its status to Error.
func (c Call) End(outcome string, err error) {
	if c.span == nil {
		return
	}
	c.span.SetAttributes(AttrOutcome.String(outcome))
	if err != nil {
		c.span.RecordError(err)
		c.span.SetStatus(codes.Error, outcome)
	}
	c.span.End()
}

// StartLookup begins a key store lookup: Start's span
// ("keyward.key_store.lookup") and the timer of keyward.key.store.duration.
func StartLookup(ctx context.Context) (context.Context, Call) {
	ctx, c := Start(ctx, "keyward.key_store.lookup", "", "")
	if Metering() && get().storeDuration.Enabled(ctx) {
		c.began()
	}
	return ctx, c
}

// EndLookup ends a key store lookup: found, notFound (the store knows no
// such key), or failed with err.
func (c Call) EndLookup(ctx context.Context, notFound bool, err error) {
	i, outcome := 0, "found"
	switch {
	case notFound:
		i, outcome, err = 1, "not_found", nil
	case err != nil:
		i, outcome = 2, "error"
	}
	in := get()
	c.record(ctx, in.storeDuration, in.storeOpts[i].rec)
	c.End(outcome, err)
}

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

// StartFeedConnect begins a change feed's connection attempt: a span of
// its own ("keyward.feed.connect"), a root unless ctx has one. End it with
// End.
func StartFeedConnect(ctx context.Context, kind string) (context.Context, Call) {
	ctx, c := startSpan(ctx, "keyward.feed.connect", "", "")
	c.span.SetAttributes(AttrFeed.String(kind))
	return ctx, c
}

// BackgroundFailed reports a call keyward made on its own, for no one
// request, that failed (redislimit's renewal of the in-flight slots it
// holds, or its removal of slots given back, each a pipeline for n slots,
// begun at start): a root span named name, with the error. Such calls run
// up to hundreds of times a second, so one that succeeds makes no span.
func BackgroundFailed(ctx context.Context, name string, n int, start time.Time, err error) {
	if !tracing() {
		return
	}
	_, span := get().tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
		trace.WithAttributes(AttrSlots.Int(n)))
	Call{span: span}.End("error", err)
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
