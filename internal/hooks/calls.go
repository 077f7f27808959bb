package hooks

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

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
