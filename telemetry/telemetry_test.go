package telemetry_test

// These tests install the OpenTelemetry SDK with an in-memory reader and
// span recorder (telemetry.Configure is process-wide: no test here runs in
// parallel with another), drive keyward's handlers through every outcome,
// and check exactly what was recorded.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/telemetry"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// rig is the SDK installed for one test, and everything logged.
type rig struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	logs   *lockedBuffer
	logger *slog.Logger
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newRig(t *testing.T, cfg telemetry.Config) *rig {
	t.Helper()
	r := &rig{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder(), logs: &lockedBuffer{}}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	cfg.TracerProvider = r.tp
	require.NoError(t, telemetry.Configure(cfg))
	t.Cleanup(func() { require.NoError(t, telemetry.Configure(telemetry.Config{})) })
	r.logger = slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	prev := slog.Default()
	slog.SetDefault(r.logger)
	t.Cleanup(func() { slog.SetDefault(prev) })
	return r
}

func (r *rig) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	return rm
}

// attrs renders a set as "k=v,k=v" (sorted by key).
func attrs(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}

// sums returns the int64 counter name's points by attributes; histogram
// returns a float64 histogram's counts.
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if p.Value != 0 {
						got[attrs(p.Attributes)] = p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[attrs(p.Attributes)] = int64(p.Count)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[attrs(p.Attributes)] = p.Value
				}
			default:
				t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	return got
}

// everyString is every attribute key and value, span name, event and
// status text recorded, for the scan for keys.
func (r *rig) everyString(t *testing.T) []string {
	var out []string
	for _, sm := range r.collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			out = append(out, fmt.Sprintf("%s %+v", m.Name, m.Data))
		}
	}
	for _, s := range r.spans.Ended() {
		out = append(out, s.Name(), s.Status().Description)
		for _, kv := range s.Attributes() {
			out = append(out, string(kv.Key)+"="+kv.Value.Emit())
		}
		for _, e := range s.Events() {
			out = append(out, e.Name)
			for _, kv := range e.Attributes {
				out = append(out, string(kv.Key)+"="+kv.Value.Emit())
			}
		}
	}
	return append(out, r.logs.String())
}

// chain is RequireAPIKey → EnforcePermissions → RateLimitByOrg →
// ChargeCredits on memory backends at a fixed time, in front of a handler
// that answers 500 when asked to (X-Fail) and 200 otherwise.
type chain struct {
	store *memstore.Store
	h     http.Handler
	fail  *keyward.KeyHash
}

func newChain(t *testing.T, logger *slog.Logger) *chain {
	t.Helper()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	c := &chain{store: store}
	ew := &keyward.ErrorWriter{Logger: logger}
	now := time.Now().Add(time.Minute) // fixed: after every key change of the test
	fs := &failing{store: store}
	cache, err := keyward.NewCache(fs, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	store.Watch(cache)
	c.fail = &fs.hash
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Errors: ew,
		Environments: []keyward.Environment{keyward.EnvLive}, Now: func() time.Time { return now }})
	require.NoError(t, err)
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}, Errors: ew})
	require.NoError(t, err)
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Errors: ew, Logger: logger, Now: func() time.Time { return now }})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Errors: ew})
	require.NoError(t, err)
	c.h = auth.Middleware(perm.Middleware(limit.Middleware(charge.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})))))
	return c
}

// failing is a KeyStore that fails the lookup of one hash.
type failing struct {
	store *memstore.Store
	hash  keyward.KeyHash
}

func (f *failing) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	if h == f.hash {
		return nil, errors.New("store down")
	}
	return f.store.LookupKey(ctx, h)
}

func (c *chain) do(t *testing.T, ctx context.Context, key string, header ...string) int {
	t.Helper()
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/transactions/enrich", nil)
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	return w.Code
}

func (c *chain) key(t *testing.T, org keyward.Organization, env keyward.Environment, perms ...string) string {
	t.Helper()
	k, err := c.store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k", Environment: env, Permissions: perms})
	require.NoError(t, err)
	return k.Key
}

func (c *chain) org(t *testing.T, spec manage.OrgSpec) keyward.Organization {
	t.Helper()
	o, err := c.store.CreateOrg(context.Background(), spec)
	require.NoError(t, err)
	return o
}

// TestEveryOutcomeCountsOnce drives the chain through each outcome of each
// handler and checks keyward.requests point by point (nothing else), the
// lookups, the store latency and the credits; no key id or organization
// id is on any metric; nothing recorded or logged holds a presented key.
func TestEveryOutcomeCountsOnce(t *testing.T) {
	rg := newRig(t, telemetry.Config{})
	c := newChain(t, rg.logger)
	ctx := context.Background()
	a := c.org(t, manage.OrgSpec{Name: "a", Plan: "free", Burst: 1}) // 1 request/s, one at a time
	b := c.org(t, manage.OrgSpec{Name: "b", Plan: "free", RatePerSecond: 1000, RatePerMinute: 60000, MonthlyCredits: 1})
	cc := c.org(t, manage.OrgSpec{Name: "c", Plan: "starter", RatePerSecond: 1000, RatePerMinute: 60000})
	keyA := c.key(t, a, keyward.EnvLive, "*")
	readOnly := c.key(t, a, keyward.EnvLive, "transactions:read")
	testKey := c.key(t, a, keyward.EnvTest, "*")
	revoked := c.key(t, a, keyward.EnvLive, "*")
	rec, err := c.store.LookupKey(ctx, keyward.Hash(revoked))
	require.NoError(t, err)
	require.NoError(t, c.store.RevokeKey(ctx, rec.ID))
	keyB := c.key(t, b, keyward.EnvLive, "*")
	keyC := c.key(t, cc, keyward.EnvLive, "*")
	unknown, err := c.store.Format().Generate()
	require.NoError(t, err)
	down, err := c.store.Format().Generate()
	require.NoError(t, err)
	*c.fail = keyward.Hash(down)
	presented := []string{keyA, readOnly, testKey, revoked, keyB, keyC, unknown, down}

	steps := []struct {
		key    string
		header []string
		want   int
	}{
		{keyA, nil, 200},          // every handler: ok
		{keyA, nil, 429},          // rate_limited, rps
		{"", nil, 401},            // missing_api_key
		{"sk_live_123", nil, 401}, // invalid_api_key_format
		{unknown, nil, 401},       // invalid_api_key
		{revoked, nil, 401},       // revoked_api_key
		{testKey, nil, 403},       // environment_not_allowed
		{readOnly, nil, 403},      // missing_permissions
		{keyB, nil, 200},          // spends b's only credit
		{keyB, nil, 402},          // insufficient_credits
		{keyB, []string{"Idempotency-Key", "bad key!"}, 400},    // invalid_idempotency_key
		{keyC, []string{"X-Fail", "1"}, 500},                    // charged nothing: released
		{down, []string{"X-Request-Id", "req-store-down"}, 503}, // the key store failed
	}
	for i, s := range steps {
		require.Equal(t, s.want, c.do(t, ctx, s.key, s.header...), "step %d", i)
	}

	rm := rg.collect(t)
	require.Equal(t, map[string]int64{
		"keyward.handler=auth,keyward.outcome=ok":                                              7,
		"keyward.handler=auth,keyward.outcome=missing_api_key":                                 1,
		"keyward.handler=auth,keyward.outcome=invalid_api_key_format":                          1,
		"keyward.handler=auth,keyward.outcome=invalid_api_key":                                 1,
		"keyward.handler=auth,keyward.outcome=revoked_api_key":                                 1,
		"keyward.handler=auth,keyward.outcome=environment_not_allowed":                         1,
		"keyward.handler=auth,keyward.outcome=service_unavailable":                             1,
		"keyward.handler=permissions,keyward.outcome=ok":                                       6,
		"keyward.handler=permissions,keyward.outcome=missing_permissions":                      1,
		"keyward.handler=rate_limit,keyward.outcome=ok":                                        5,
		"keyward.handler=rate_limit,keyward.outcome=rate_limited,keyward.rate_limit.scope=rps": 1,
		"keyward.handler=credits,keyward.outcome=ok":                                           3,
		"keyward.handler=credits,keyward.outcome=insufficient_credits":                         1,
		"keyward.handler=credits,keyward.outcome=invalid_idempotency_key":                      1,
	}, sums(t, rm, telemetry.MetricRequests))
	// keyA, unknown, revoked, testKey, readOnly, keyB, keyC went to the
	// store once each; keyA and keyB were found by the front again.
	require.Equal(t, map[string]int64{
		"keyward.result=miss":        7,
		"keyward.result=front_hit":   3,
		"keyward.result=store_error": 1,
	}, sums(t, rm, telemetry.MetricLookups))
	require.Equal(t, map[string]int64{
		"keyward.result=found":     6,
		"keyward.result=not_found": 1,
		"keyward.result=error":     1,
	}, sums(t, rm, telemetry.MetricStoreDuration))
	require.Equal(t, map[string]int64{"": 3}, sums(t, rm, telemetry.MetricCreditsReserved))
	require.Equal(t, map[string]int64{"": 2}, sums(t, rm, telemetry.MetricCreditsCommitted))
	require.Equal(t, map[string]int64{"": 1}, sums(t, rm, telemetry.MetricCreditsReleased))
	require.Empty(t, sums(t, rm, telemetry.MetricOpenReservations), "every reservation settled")
	ledger := sums(t, rm, telemetry.MetricLedgerDuration)
	require.Equal(t, int64(3), ledger["keyward.ledger.operation=reserve,keyward.result=ok"])
	require.Equal(t, int64(1), ledger["keyward.ledger.operation=reserve,keyward.result=refused"])
	require.Equal(t, int64(2), ledger["keyward.ledger.operation=commit,keyward.result=ok"])
	require.Equal(t, int64(1), ledger["keyward.ledger.operation=release,keyward.result=ok"])

	// No span was made: no request had a recording span.
	require.Empty(t, rg.spans.Ended())
	// Ids never on metrics without the opt-in; keys nowhere.
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s := fmt.Sprintf("%+v", m.Data)
			require.NotContains(t, s, string(telemetry.AttrOrgID), m.Name)
			require.NotContains(t, s, string(telemetry.AttrKeyID), m.Name)
		}
	}
	noKeys(t, rg, presented)
	require.Contains(t, rg.logs.String(), `"requestId":"req-store-down"`, "the 503 is logged with its request id")
}

// noKeys fails if any presented key, or its random body, is in anything
// recorded or logged.
func noKeys(t *testing.T, rg *rig, presented []string) {
	t.Helper()
	all := strings.Join(rg.everyString(t), "\n")
	for _, k := range presented {
		require.NotContains(t, all, k)
		require.NotContains(t, all, k[len(k)-36:], "a key's body and checksum")
	}
}

// TestLookupMissSpanUnderTheRequest: under a request's recording span, a
// cache miss makes a key store lookup span, its child, with the key id
// and organization; the ledger's calls are its children too.
func TestLookupMissSpanUnderTheRequest(t *testing.T) {
	rg := newRig(t, telemetry.Config{})
	c := newChain(t, rg.logger)
	o := c.org(t, manage.OrgSpec{Name: "a", Plan: "starter"})
	key := c.key(t, o, keyward.EnvLive, "*")
	ctx, parent := rg.tp.Tracer("host").Start(context.Background(), "POST /v1/transactions/enrich")
	require.Equal(t, 200, c.do(t, ctx, key))
	parent.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rg.spans.Ended() {
		byName[s.Name()] = s
	}
	lookup, ok := byName["keyward.key_store.lookup"]
	require.True(t, ok, "spans: %v", slices.Collect(mapsKeys(byName)))
	require.Equal(t, parent.SpanContext().SpanID(), lookup.Parent().SpanID())
	require.Equal(t, parent.SpanContext().TraceID(), lookup.SpanContext().TraceID())
	got := map[attribute.Key]string{}
	for _, kv := range lookup.Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	rec, err := c.store.LookupKey(context.Background(), keyward.Hash(key))
	require.NoError(t, err)
	require.Equal(t, rec.ID, got[telemetry.AttrKeyID])
	require.Equal(t, o.ID, got[telemetry.AttrOrgID])
	require.Equal(t, "found", got[telemetry.AttrOutcome])
	for _, name := range []string{"keyward.ledger.reserve", "keyward.ledger.commit"} {
		s, ok := byName[name]
		require.True(t, ok, name)
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), name)
	}

	// A second request hits the cache: no store span.
	n := len(rg.spans.Ended())
	ctx, parent = rg.tp.Tracer("host").Start(context.Background(), "again")
	require.Equal(t, 200, c.do(t, ctx, key))
	parent.End()
	for _, s := range rg.spans.Ended()[n:] {
		require.NotEqual(t, "keyward.key_store.lookup", s.Name())
	}
	noKeys(t, rg, []string{key})
}

// TestStoreErrorRecordedOnSpan: a failed lookup is an error on its span.
func TestStoreErrorRecordedOnSpan(t *testing.T) {
	rg := newRig(t, telemetry.Config{})
	c := newChain(t, rg.logger)
	down, err := c.store.Format().Generate()
	require.NoError(t, err)
	*c.fail = keyward.Hash(down)
	ctx, parent := rg.tp.Tracer("host").Start(context.Background(), "request")
	require.Equal(t, 503, c.do(t, ctx, down))
	parent.End()
	var found bool
	for _, s := range rg.spans.Ended() {
		if s.Name() == "keyward.key_store.lookup" {
			found = true
			require.Equal(t, "Error", s.Status().Code.String())
			require.NotEmpty(t, s.Events(), "the error is recorded")
		}
	}
	require.True(t, found)
	noKeys(t, rg, []string{down})
}

// TestOrgAttributeOptIn: with OrgAttribute, request and credit metrics
// carry the organization id (never the key id).
func TestOrgAttributeOptIn(t *testing.T) {
	rg := newRig(t, telemetry.Config{OrgAttribute: true})
	c := newChain(t, rg.logger)
	o := c.org(t, manage.OrgSpec{Name: "a", Plan: "starter"})
	key := c.key(t, o, keyward.EnvLive, "*")
	require.Equal(t, 200, c.do(t, context.Background(), key))
	rm := rg.collect(t)
	require.Equal(t, map[string]int64{
		"keyward.handler=auth,keyward.org.id=" + o.ID + ",keyward.outcome=ok":        1,
		"keyward.handler=permissions,keyward.org.id=" + o.ID + ",keyward.outcome=ok": 1,
		"keyward.handler=rate_limit,keyward.org.id=" + o.ID + ",keyward.outcome=ok":  1,
		"keyward.handler=credits,keyward.org.id=" + o.ID + ",keyward.outcome=ok":     1,
	}, sums(t, rm, telemetry.MetricRequests))
	require.Equal(t, map[string]int64{"keyward.org.id=" + o.ID: 1}, sums(t, rm, telemetry.MetricCreditsCommitted))
	require.NotContains(t, fmt.Sprintf("%+v", rm), string(telemetry.AttrKeyID))
	noKeys(t, rg, []string{key})
}

// TestFailedAuthThrottleCounted: a client over its failed-authentication
// budget is counted as rate_limited with scope auth.
func TestFailedAuthThrottleCounted(t *testing.T) {
	rg := newRig(t, telemetry.Config{})
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_",
		FailedAuth: &rate.FailedAuth{PerMinute: 1, Burst: 1}, Errors: &keyward.ErrorWriter{Logger: rg.logger}})
	require.NoError(t, err)
	h := auth.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	codes := []int{}
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", "sk_live_nope")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		codes = append(codes, w.Code)
	}
	require.Equal(t, []int{401, 429, 429}, codes)
	require.Equal(t, map[string]int64{
		"keyward.handler=auth,keyward.outcome=invalid_api_key_format":                     1,
		"keyward.handler=auth,keyward.outcome=rate_limited,keyward.rate_limit.scope=auth": 2,
	}, sums(t, rg.collect(t), telemetry.MetricRequests))
}

// TestLimiterFailures: a failing rate-limit store is counted, and a
// request served without a limit counts as fail-open.
func TestLimiterFailures(t *testing.T) {
	rg := newRig(t, telemetry.Config{})
	for _, failClosed := range []bool{false, true} {
		store, err := memstore.New(memstore.Options{Prefix: "triq_"})
		require.NoError(t, err)
		o, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "starter"})
		require.NoError(t, err)
		k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: o.ID, Name: "k", Permissions: []string{"*"}})
		require.NoError(t, err)
		auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
		require.NoError(t, err)
		limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: brokenLimits{}, FailClosed: failClosed,
			Logger: rg.logger, Errors: &keyward.ErrorWriter{Logger: rg.logger}})
		require.NoError(t, err)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", k.Key)
		r.Header.Set("X-Request-Id", "req-limiter")
		w := httptest.NewRecorder()
		auth.Middleware(limit.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))).ServeHTTP(w, r)
		want := map[bool]int{false: 200, true: 503}[failClosed]
		require.Equal(t, want, w.Code)
	}
	rm := rg.collect(t)
	require.Equal(t, map[string]int64{"": 2}, sums(t, rm, telemetry.MetricLimiterErrors))
	require.Equal(t, map[string]int64{"": 1}, sums(t, rm, telemetry.MetricFailOpen))
	got := sums(t, rm, telemetry.MetricRequests)
	require.Equal(t, int64(1), got["keyward.handler=rate_limit,keyward.outcome=ok"], "served open")
	require.Equal(t, int64(1), got["keyward.handler=rate_limit,keyward.outcome=service_unavailable"], "fail closed")
	require.Contains(t, rg.logs.String(), `"requestId":"req-limiter"`, "the fail-open log line carries the request id")
}

type brokenLimits struct{}

func (brokenLimits) Take(context.Context, rate.Request) (rate.Result, error) {
	return rate.Result{}, errors.New("limits down")
}
func (brokenLimits) Release(string, uint64) {}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		ks := make([]string, 0, len(m))
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			if !yield(k) {
				return
			}
		}
	}
}

// TestGlobalSDKPickedUp: with no Configure, keyward records nothing until
// the host installs an SDK as the global MeterProvider, and then records
// through it.
//
// Installing a global SDK cannot be undone (the API delegates to the first
// one for good), and other tests need a process where nothing listens: so
// this one runs in a process of its own.
func TestGlobalSDKPickedUp(t *testing.T) {
	if !testenv.Alone(t) {
		return
	}
	require.NoError(t, telemetry.Configure(telemetry.Config{}))
	if hooks.Metering() {
		t.Skip("a global SDK was installed before this test")
	}
	before := otel.GetMeterProvider()
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(noop.NewMeterProvider()) })
	require.NotEqual(t, before, otel.GetMeterProvider())
	require.True(t, hooks.Metering())
	hooks.Record(context.Background(), hooks.Auth, "", "ok", "")
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Equal(t, map[string]int64{"keyward.handler=auth,keyward.outcome=ok": 1}, sums(t, rm, telemetry.MetricRequests))
}

// TestReservationBegunUnwatched: a host that installs an SDK while a
// request runs its handler sees nothing of that request's decisions, all
// made before: its reservation, opened while nothing listened and so never
// counted open, is not counted closed either (the open count never goes
// below zero); the next request is counted whole.
func TestReservationBegunUnwatched(t *testing.T) {
	require.NoError(t, telemetry.Configure(telemetry.Config{}))
	if hooks.Listening() {
		t.Skip("a global SDK was installed earlier in this process (go test -count > 1)")
	}
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})
	require.NoError(t, err)
	var rg *rig
	h := auth.Middleware(charge.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		if rg == nil {
			rg = newRig(t, telemetry.Config{}) // the SDK arrives while the first request runs
		}
	})))
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "o", Plan: "free"})
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"*"}})
	require.NoError(t, err)
	serve := func() {
		r := httptest.NewRequest(http.MethodPost, "/v1/transactions/enrich", nil)
		r.Header.Set("X-API-Key", k.Key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code)
	}
	serve()
	rm := rg.collect(t)
	require.Empty(t, sums(t, rm, telemetry.MetricOpenReservations), "closed without having been counted open")
	require.Empty(t, sums(t, rm, telemetry.MetricCreditsCommitted))
	serve()
	rm = rg.collect(t)
	require.Empty(t, sums(t, rm, telemetry.MetricOpenReservations), "opened and closed")
	require.Equal(t, map[string]int64{"": 1}, sums(t, rm, telemetry.MetricCreditsCommitted))
	require.Equal(t, map[string]int64{"keyward.handler=auth,keyward.outcome=ok": 1, "keyward.handler=credits,keyward.outcome=ok": 1},
		sums(t, rm, telemetry.MetricRequests), "the second request only")
}

// TestSDKInstalledBetweenDecisions: each decision is observed as it is
// made, whatever listened when the request began: an SDK installed after
// RequireAPIKey authenticated a request, before ChargeCredits, counts the
// charge's decision and its reservation, opened and then settled.
func TestSDKInstalledBetweenDecisions(t *testing.T) {
	require.NoError(t, telemetry.Configure(telemetry.Config{}))
	if hooks.Listening() {
		t.Skip("a global SDK was installed earlier in this process (go test -count > 1)")
	}
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 3})
	require.NoError(t, err)
	var rg *rig
	install := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rg = newRig(t, telemetry.Config{}) // the SDK arrives between the two handlers
			next.ServeHTTP(w, r)
		})
	}
	h := auth.Middleware(install(charge.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))))
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "o", Plan: "free"})
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"*"}})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodPost, "/v1/transactions/enrich", nil)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	rm := rg.collect(t)
	require.Equal(t, map[string]int64{"keyward.handler=credits,keyward.outcome=ok": 1}, sums(t, rm, telemetry.MetricRequests),
		"the charge's decision, made after the SDK came")
	require.Equal(t, map[string]int64{"": 3}, sums(t, rm, telemetry.MetricCreditsReserved))
	require.Equal(t, map[string]int64{"": 3}, sums(t, rm, telemetry.MetricCreditsCommitted))
	require.Empty(t, sums(t, rm, telemetry.MetricOpenReservations), "opened and closed")
}

// TestSharedStateAsksEachTime: a WithKey context (a job's, say) may be
// made before the host installs an SDK and used after: its decisions are
// counted then.
func TestSharedStateAsksEachTime(t *testing.T) {
	require.NoError(t, telemetry.Configure(telemetry.Config{}))
	if hooks.Listening() {
		t.Skip("a global SDK was installed earlier in this process (go test -count > 1)")
	}
	ctx := keyward.WithKey(context.Background(), &keyward.KeyRecord{ID: "key_1", Org: keyward.Organization{ID: "org_1"},
		Permissions: []string{"*"}})
	rg := newRig(t, telemetry.Config{})
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	require.NoError(t, err)
	require.NoError(t, perm.Check(httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/transactions/enrich", nil)))
	require.Equal(t, map[string]int64{"keyward.handler=permissions,keyward.outcome=ok": 1}, sums(t, rg.collect(t), telemetry.MetricRequests))
}
