package hooks

import (
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
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
	in.prepareAttributes()
	return in, nil
}

// prepareAttributes builds, once, the attribute sets of every known
// decision, lookup result and ledger operation, so that a measurement
// never builds one.
func (in *instruments) prepareAttributes() {
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
}

// outcomes are the known outcomes of each handler, given attribute sets
// ahead; any other outcome costs a set per measurement.
var outcomes = map[Handler][]string{
	Auth: {"ok", "missing_api_key", "invalid_api_key", "invalid_api_key_format", "revoked_api_key", "expired_api_key",
		"environment_not_allowed", "rate_limited", "service_unavailable", "internal_error"},
	Permissions: {"ok", "missing_permissions", "internal_error"},
	RateLimit:   {"ok", "rate_limited", "service_unavailable", "internal_error"},
	Credits: {"ok", "insufficient_credits", "invalid_idempotency_key", "conflicting_idempotency_keys",
		"idempotency_key_in_use", "idempotency_key_reused", "idempotent_body_too_large", "unreadable_body",
		"validation_error", "service_unavailable", "internal_error"},
}

var scopes = []string{"rps", "rpm", "key", "concurrency", "auth"}

type decisionKey struct {
	h              Handler
	outcome, scope string
}

// opts are the attribute options of one series, made once, and its
// cells in the observable instruments.
type opts struct {
	set   attribute.Set
	add   []metric.AddOption
	rec   []metric.RecordOption
	cells [numCells]atomic.Pointer[cell]
}

func newOpts(kvs ...attribute.KeyValue) *opts {
	s := attribute.NewSet(kvs...)
	o := metric.WithAttributeSet(s)
	return &opts{set: s, add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// with returns o's options with org added when the host opted in: made
// once per series and organization.
func (in *instruments) with(o *opts, org string) *opts {
	if !in.org || org == "" {
		return o
	}
	k := orgKey{o, org}
	if v, ok := in.byOrg.Load(k); ok {
		return v.(*opts)
	}
	v, _ := in.byOrg.LoadOrStore(k, newOpts(append(o.set.ToSlice(), AttrOrgID.String(org))...))
	return v.(*opts)
}

type orgKey struct {
	o   *opts
	org string
}
