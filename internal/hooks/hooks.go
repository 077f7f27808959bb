// Package hooks is how keyward reports to OpenTelemetry: the instruments,
// made once for a pair of providers, and the calls keyward's handlers,
// cache, ledger decorator, rate-limit stores, change feed and usage flush
// make into them. Package telemetry (public) holds the configuration and
// the names; this package is not for callers.
//
// Every hook first asks whether anything listens (Metering, or tracing for
// spans: a few atomic loads) and returns at once while nothing does, so a
// program without an SDK pays those loads and no allocation. A decision is
// observed once, after it is made (Record); the credit ledger is wrapped
// once (Ledger), and counts from the calls it sees.
//
// Rules: a presented key is never in an attribute, span or metric; a key
// id is on spans only; an organization id is on spans, and on metrics only
// with Config.OrgAttribute (one series per organization). keyward's spans
// (key store lookups, ledger calls, Redis calls) are made only under a
// recording span of the request (otelhttp's, say); the change feed's
// connection spans are roots.
package hooks

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// Config chooses where keyward reports: package telemetry's Config, whose
// fields say their defaults.
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

var (
	current  atomic.Pointer[instruments]
	initOnce sync.Once

	// meters, tracers: Configure was given providers of the host's.
	meters, tracers atomic.Bool
	// defaultMeters and defaultTracers are the global providers as the
	// process started, if they were OpenTelemetry's own no-op delegates:
	// while the globals are still those and Configure was not called,
	// nothing listens, and keyward records nothing at all.
	defaultMeters  = delegate(otel.GetMeterProvider())
	defaultTracers = delegate(otel.GetTracerProvider())
)

// delegate returns p's pointer if p is the OpenTelemetry API's global
// delegating provider (no SDK installed yet), else nil.
func delegate(p any) unsafe.Pointer {
	if t := reflect.TypeOf(p); t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global" {
		return pointer(p)
	}
	return nil
}

// pointer returns the data word of p: for a pointer, the pointer itself.
// Metering compares it with the delegate's, which is a pointer: equal
// words are the same object. (Comparing the interfaces would cost a call
// to the runtime's interface equality on every check.)
func pointer(p any) unsafe.Pointer { return (*[2]unsafe.Pointer)(unsafe.Pointer(&p))[1] }

// Metering reports whether anyone may read keyward's metrics: Configure
// was given a MeterProvider, or an SDK was installed as the global one. While
// not, every hook returns at once: keyward's request path pays a few atomic
// loads per hook for its telemetry.
func Metering() bool {
	return compiled && (meters.Load() || defaultMeters == nil || pointer(otel.GetMeterProvider()) != defaultMeters)
}

// Listening reports whether anything listens now, to metrics or to spans.
func Listening() bool { return Metering() || tracing() }

// tracing is Metering for spans.
func tracing() bool {
	return compiled && (tracers.Load() || defaultTracers == nil || pointer(otel.GetTracerProvider()) != defaultTracers)
}

// Configure makes every keyward instrument of the process report through
// cfg's providers from now on; call it at start-up, before serving. Its
// error is the meter's: an instrument it could not make.
func Configure(cfg Config) error {
	in, err := newInstruments(cfg)
	if err != nil {
		return err
	}
	initOnce.Do(func() {}) // the defaults are not made after this
	current.Store(in)
	meters.Store(cfg.MeterProvider != nil)
	tracers.Store(cfg.TracerProvider != nil)
	return nil
}

// get returns the instruments in force: Configure's, else the global
// providers', made on first use.
func get() *instruments {
	if in := current.Load(); in != nil {
		return in
	}
	initOnce.Do(func() {
		in, err := newInstruments(Config{})
		if err != nil { // the global providers make no failing instruments; be safe anyway
			in, _ = newInstruments(Config{MeterProvider: noop.NewMeterProvider()})
		}
		current.CompareAndSwap(nil, in)
	})
	return current.Load()
}

// Handler names a keyward handler in keyward.requests.
type Handler uint8

// The handlers whose decisions keyward.requests counts.
const (
	Auth        Handler = iota // RequireAPIKey
	Permissions                // EnforcePermissions
	RateLimit                  // RateLimitByOrg
	Credits                    // ChargeCredits
	numHandlers
)

var handlerNames = [numHandlers]string{"auth", "permissions", "rate_limit", "credits"}

// String returns the handler's keyward.handler value.
func (h Handler) String() string {
	if h < numHandlers {
		return handlerNames[h]
	}
	return "unknown"
}

// Lookup is the result of one key lookup by RequireAPIKey or a Cache.
type Lookup uint8

// Lookup results (keyward.key.lookups' keyward.result).
const (
	FrontHit    Lookup = iota // found by the key itself among recent keys
	Hit                       // found in the cache by hash
	NegativeHit               // the cache knows no such key
	Miss                      // asked the store (or joined a lookup of it), answered
	StoreError                // asked the store, which failed
	numLookups
)

var lookupNames = [numLookups]string{"front_hit", "hit", "negative_hit", "miss", "store_error"}

// Record reports that handler h decided a request of organization org
// ("" if unknown): outcome is "ok", or the failure's reason (its code when
// it has none); scope is the refusing limit of a rate_limited outcome.
// keyward's handlers call it; adapters need not.
func Record(ctx context.Context, h Handler, org, outcome, scope string) {
	if !Metering() {
		return
	}
	in := get()
	var o *opts
	ok := false
	if outcome == "ok" && h < numHandlers { // the common case: no map lookup
		o, ok = in.ok[h], true
	} else {
		o, ok = in.decisions[decisionKey{h: h, outcome: outcome, scope: scope}]
	}
	if !ok {
		kvs := []attribute.KeyValue{AttrHandler.String(h.String()), AttrOutcome.String(outcome)}
		if scope != "" {
			kvs = append(kvs, AttrScope.String(scope))
		}
		o = newOpts(kvs...)
	}
	in.count(cellRequests, in.with(o, org), 1)
}

// Looked reports one key lookup's result.
func Looked(ctx context.Context, r Lookup) {
	if r < numLookups && Metering() {
		in := get()
		in.count(cellLookups, in.lookupOpts[r], 1)
	}
}

// LookedCached reports a key lookup the cache answered: a key found, or
// (negative) one it knows does not exist.
func LookedCached(ctx context.Context, negative bool) {
	if negative {
		Looked(ctx, NegativeHit)
	} else {
		Looked(ctx, Hit)
	}
}

// LimiterFailed reports a rate-limit store failure.
func LimiterFailed(ctx context.Context) {
	if Metering() {
		get().limiterErrors.Add(ctx, 1)
	}
}

// FailedOpen reports a request served without a rate limit because the
// store failed (RateLimitConfig.FailClosed unset).
func FailedOpen(ctx context.Context) {
	if Metering() {
		get().failOpen.Add(ctx, 1)
	}
}

// Detach returns a context for work done on behalf of ctx's request but
// outliving it (a cache fill shared by several requests): none of ctx's
// values, cancellation or deadline, only its span if that one is recording,
// so that the work's spans are its children.
func Detach(ctx context.Context) context.Context {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		return trace.ContextWithSpan(context.Background(), span)
	}
	return context.Background()
}
