package keyward_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
)

// Markers that the header fuzz target replaces with real keys, so that the
// fuzzer can build values around keys it cannot guess.
const (
	markLive    = "@LIVE@"    // a live key of the organization: accepted
	markTest    = "@TEST@"    // a test-environment key: 403 on a live-only route
	markRevoked = "@REVOKED@" // a revoked key: 401 revoked_api_key
	markDown    = "@DOWN@"    // a well-formed key whose lookup fails: 503
)

// downStore fails lookups of one hash, as a store that is down would.
type downStore struct {
	keyward.KeyStore
	down keyward.KeyHash
}

func (s downStore) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	if h == s.down {
		return nil, errors.New("dial tcp 10.0.0.1:5432: connection refused")
	}
	return s.KeyStore.LookupKey(ctx, h)
}

// take returns what was written and empties the buffer.
func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// headerFuzz is the world of FuzzAuthenticateHeader: one store, one cache,
// one authenticator, fixed meta so that every answer is byte-for-byte one
// of a small catalogue.
type headerFuzz struct {
	h                        http.Handler
	logs                     *syncBuffer
	live, test, revoked, dwn string
	liveID                   string
	replacer                 *strings.Replacer
}

func newHeaderFuzz(t testing.TB) *headerFuzz {
	t.Helper()
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	newKey := func(env keyward.Environment) manage.CreatedKey {
		k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k", Environment: env})
		require.NoError(t, err)
		return k
	}
	live, test, revoked := newKey(keyward.EnvLive), newKey(keyward.EnvTest), newKey(keyward.EnvLive)
	require.NoError(t, store.RevokeKey(ctx, revoked.Record.ID))
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	down, err := format.Generate()
	require.NoError(t, err)
	cache, err := keyward.NewCache(downStore{store, keyward.Hash(down)}, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	store.Watch(cache)
	hf := &headerFuzz{logs: &syncBuffer{}, live: live.Key, test: test.Key, revoked: revoked.Key, dwn: down, liveID: live.Record.ID}
	ew := &keyward.ErrorWriter{
		Now:       func() time.Time { return time.Date(2026, 1, 19, 10, 30, 0, 0, time.UTC) },
		RequestID: func(*http.Request) string { return "req-fuzz" },
		Logger:    slog.New(slog.NewTextHandler(hf.logs, nil)),
	}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{
		Keys: cache, Prefix: "triq_", Errors: ew, Environments: []keyward.Environment{keyward.EnvLive},
	})
	require.NoError(t, err)
	hf.h = auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyward.FromContext(r.Context())
		_, _ = io.WriteString(w, "hello "+k.ID)
	}))
	hf.replacer = strings.NewReplacer(markLive, live.Key, markTest, test.Key, markRevoked, revoked.Key, markDown, down)
	return hf
}

// values turns the fuzzer's bytes into header values: "\xff" separates
// values (at most 8), markers become keys. ok is false for "no header".
func (hf *headerFuzz) values(raw string, noHeader bool) []string {
	if noHeader {
		return nil
	}
	parts := strings.SplitN(raw, "\xff", 8)
	for i, p := range parts {
		parts[i] = hf.replacer.Replace(p)
	}
	return parts
}

// want is the oracle: the status and reason the header values must get.
func (hf *headerFuzz) want(vals []string) (int, string) {
	switch {
	case len(vals) == 0:
		return http.StatusUnauthorized, keyward.ReasonMissingAPIKey
	case len(vals) > 1:
		return http.StatusUnauthorized, keyward.ReasonInvalidAPIKey
	case len(vals[0]) > 256:
		// Far longer than any key: refused before it is trimmed or its
		// prefix read.
		return http.StatusUnauthorized, keyward.ReasonInvalidAPIKey
	}
	switch v := strings.Trim(vals[0], " \t"); {
	case v == "":
		return http.StatusUnauthorized, keyward.ReasonMissingAPIKey
	case v == hf.live:
		return http.StatusOK, ""
	case v == hf.test:
		return http.StatusForbidden, keyward.ReasonEnvironmentNotAllowed
	case v == hf.revoked:
		return http.StatusUnauthorized, keyward.ReasonRevokedAPIKey
	case v == hf.dwn:
		return http.StatusServiceUnavailable, ""
	case !strings.HasPrefix(v, "triq_"):
		return http.StatusUnauthorized, keyward.ReasonInvalidAPIKeyFormat
	default:
		return http.StatusUnauthorized, keyward.ReasonInvalidAPIKey
	}
}

func (hf *headerFuzz) serve(vals []string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
	if vals != nil {
		r.Header["X-Api-Key"] = vals
	}
	w := httptest.NewRecorder()
	hf.h.ServeHTTP(w, r)
	return w
}

// headerSeeds are the fuzz target's seed corpus: the hostile values of the
// table test, written with markers.
var headerSeeds = []struct {
	raw      string
	noHeader bool
}{
	{"", true},
	{"", false},
	{markLive, false},
	{" \t" + markLive + "\t ", false},
	{markTest, false},
	{markRevoked, false},
	{markDown, false},
	{markLive + "\xff" + markLive, false},
	{markLive + ", " + markLive, false},
	{"Bearer " + markLive, false},
	{markLive + "\r\nSet-Cookie: a=b", false},
	{"\n" + markLive, false},
	{markLive + "A", false},
	{"triq_" + strings.Repeat("A", 36), false},
	{"TRIQ_" + strings.Repeat("A", 36), false},
	{"triq_\xff\xfe", false},
	{"triq_' OR 1=1 --", false},
	{`triq_"},"success":true,"x":{"`, false},
	{"triq_x\nlevel=ERROR msg=forged", false},
	{"\x00", false},
	{"\xff", false},
}

// FuzzAuthenticateHeader feeds RequireAPIKey X-API-Key headers from the
// fuzzer (several values, any bytes, built around real keys) and checks
// that it never panics, answers exactly what the oracle says (success only
// for the one live key, alone), writes one of a fixed set of bodies, and
// never writes a key to the response or the log.
func FuzzAuthenticateHeader(f *testing.F) {
	hf := newHeaderFuzz(f)
	for _, s := range headerSeeds {
		f.Add(s.raw, s.noHeader)
	}
	// The catalogue: every body the authenticator can write, with meta
	// pinned. Nothing in a body depends on the presented value.
	catalogue := map[string]bool{}
	for _, s := range headerSeeds {
		catalogue[hf.serve(hf.values(s.raw, s.noHeader)).Body.String()] = true
	}
	require.Len(f, catalogue, 8, "missing, multiple, format, invalid, revoked, environment, 503, success")
	secrets := []string{hf.live, hf.test, hf.revoked, hf.dwn}
	f.Fuzz(func(t *testing.T, raw string, noHeader bool) {
		vals := hf.values(raw, noHeader)
		w := hf.serve(vals)
		status, reason := hf.want(vals)
		if w.Code != status {
			t.Fatalf("values %q: status %d, want %d; body %s", vals, w.Code, status, w.Body)
		}
		body := w.Body.String()
		if !catalogue[body] {
			t.Fatalf("values %q: a body outside the catalogue: %s", vals, body)
		}
		if reason != "" && !strings.Contains(body, `"reason":"`+reason+`"`) {
			t.Fatalf("values %q: want reason %s; body %s", vals, reason, body)
		}
		if status == http.StatusOK && body != "hello "+hf.liveID {
			t.Fatalf("values %q: served as %s", vals, body)
		}
		var hdr bytes.Buffer
		_ = w.Header().Write(&hdr)
		logs := hf.logs.take()
		for _, s := range secrets {
			for _, where := range []string{body, hdr.String(), logs} {
				// Half a key is already too much to echo.
				if strings.Contains(where, s[5:25]) || strings.Contains(where, s[20:]) {
					t.Fatalf("values %q: a key was echoed: %s", vals, where)
				}
			}
		}
	})
}
