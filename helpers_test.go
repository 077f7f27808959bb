package keyward_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
)

// probeStore wraps a real store and counts, delays or fails its lookups,
// so tests can see what reaches the store.
type probeStore struct {
	inner keyward.KeyStore
	calls atomic.Int64
	fail  atomic.Bool
	// hold, when set, is called after the inner lookup and before the
	// answer is returned.
	hold atomic.Pointer[func()]
}

func (p *probeStore) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	p.calls.Add(1)
	if p.fail.Load() {
		return nil, errors.New("connection refused")
	}
	rec, err := p.inner.LookupKey(ctx, h)
	if f := p.hold.Load(); f != nil {
		(*f)()
	}
	return rec, err
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	store   *memstore.Store
	probe   *probeStore
	cache   *keyward.Cache
	auth    *keyward.Authenticator
	handler http.Handler
	logs    *syncBuffer
	errors  *keyward.ErrorWriter
	now     *keywardtest.Clock
	org     keyward.Organization
}

// fixtureStart is where a fixture's clock starts: ahead of the real clock,
// so that the process's rate-limit counters of real windows never meet a
// fixture's, and keep-alive renewals (on the real clock) never start early.
var fixtureStart = time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC)

func newFixture(t testing.TB, mutate ...func(*keyward.AuthConfig)) *fixture {
	t.Helper()
	return newFixtureWithPlans(t, nil, mutate...)
}

// newFixtureWithPlans is newFixture over a store with the plan table plans
// (nil: the defaults).
func newFixtureWithPlans(t testing.TB, plans *keyward.Plans, mutate ...func(*keyward.AuthConfig)) *fixture {
	t.Helper()
	f := &fixture{now: keywardtest.NewClock(fixtureStart), logs: &syncBuffer{}}
	var err error
	f.store, err = memstore.New(memstore.Options{Prefix: "triq_", Now: f.now.Now, Plans: plans})
	require.NoError(t, err)
	f.probe = &probeStore{inner: f.store}
	f.cache, err = keyward.NewCache(f.probe, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(f.cache.Close)
	f.store.Watch(f.cache)
	f.errors = &keyward.ErrorWriter{
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	cfg := keyward.AuthConfig{Keys: f.cache, Prefix: "triq_", Errors: f.errors, Now: f.now.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	f.auth, err = keyward.RequireAPIKey(cfg)
	require.NoError(t, err)
	f.handler = f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := keyward.FromContext(r.Context())
		if !ok {
			http.Error(w, "no key", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("hello " + k.Org.ID + " " + k.ID))
	}))
	f.org, err = f.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free"})
	require.NoError(t, err)
	return f
}

func (f *fixture) newKey(t testing.TB, mutate ...func(*manage.KeySpec)) manage.CreatedKey {
	t.Helper()
	n := manage.KeySpec{OrgID: f.org.ID, Name: "production", Permissions: []string{"transactions:enrich"}}
	for _, m := range mutate {
		m(&n)
	}
	k, err := f.store.CreateKey(context.Background(), n)
	require.NoError(t, err)
	return k
}

func (f *fixture) do(header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func withKey(k string) http.Header { return http.Header{"X-Api-Key": {k}} }

// wireEnvelope is the error envelope as a client decodes it.
type wireEnvelope struct {
	Success *bool `json:"success"`
	Error   struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	Meta struct {
		GeneratedAt string `json:"generatedAt"`
		RequestID   string `json:"requestId"`
		Version     string `json:"version"`
	} `json:"meta"`
}

// decodeEnvelope checks the parts every failure shares and returns the body.
func decodeEnvelope(t testing.TB, w *httptest.ResponseRecorder) wireEnvelope {
	t.Helper()
	var env wireEnvelope
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&env), "body: %s", w.Body.String())
	require.NotNil(t, env.Success)
	require.False(t, *env.Success)
	require.Equal(t, "application/json; charset=utf-8", w.Header().Get("Content-Type"))
	require.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	require.NotEmpty(t, env.Error.Message)
	require.NotEmpty(t, env.Meta.RequestID)
	require.Equal(t, env.Meta.RequestID, w.Header().Get("X-Request-Id"))
	require.Equal(t, keyward.DefaultVersion, env.Meta.Version)
	_, err := time.Parse(time.RFC3339, env.Meta.GeneratedAt)
	require.NoError(t, err)
	return env
}

type keyStoreFunc func(context.Context, keyward.KeyHash) (*keyward.KeyRecord, error)

func (f keyStoreFunc) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	return f(ctx, h)
}

// logLine returns the line of logs that carries requestID.
func logLine(t *testing.T, logs, requestID string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, requestID) {
			return l
		}
	}
	t.Fatalf("no log line has request id %s in:\n%s", requestID, logs)
	return ""
}

// settleGoroutines waits for the goroutine count to fall back to at most
// want, and fails with every stack if it does not.
func settleGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want ≤ %d\n%s", runtime.NumGoroutine(), want, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
