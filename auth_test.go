package keyward_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequireAPIKeyAcceptsAValidKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	w := f.do(withKey(k.Key))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "hello "+f.org.ID+" "+k.Record.ID, w.Body.String())
	// Surrounding spaces and tabs are trimmed.
	w = f.do(withKey(" \t" + k.Key + "  "))
	assert.Equal(t, http.StatusOK, w.Code)
}

func TestRequireAPIKeyRejections(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	valid := f.newKey(t)
	revoked := f.newKey(t)
	require.NoError(t, f.store.RevokeKey(context.Background(), revoked.Record.ID))
	expired := f.newKey(t, func(n *manage.KeySpec) { n.ExpiresIn = time.Minute })
	unknown, _ := f.store.Format().Generate()
	f.now.Advance(time.Minute) // expired is now past its end; valid is unaffected
	require.Equal(t, http.StatusOK, f.do(withKey(valid.Key)).Code)

	for _, tc := range []struct {
		name    string
		header  http.Header
		reason  string
		message string
	}{
		{"missing", nil, "missing_api_key", "X-API-Key header"},
		{"empty", withKey(""), "missing_api_key", "X-API-Key header"},
		{"spaces only", withKey("   "), "missing_api_key", "X-API-Key header"},
		{"wrong prefix", withKey("sk_live_" + valid.Key[5:]), "invalid_api_key_format", "starts with triq_"},
		{"bad checksum", withKey(valid.Key[:len(valid.Key)-1] + flipChar(valid.Key[len(valid.Key)-1])), "invalid_api_key", "whole key"},
		{"unknown", withKey(unknown), "invalid_api_key", "whole key"},
		{"two headers", http.Header{"X-Api-Key": {valid.Key, valid.Key}}, "invalid_api_key", "exactly one"},
		{"revoked", withKey(revoked.Key), "revoked_api_key", "revoked"},
		{"expired", withKey(expired.Key), "expired_api_key", "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(tc.header)
			require.Equal(t, http.StatusUnauthorized, w.Code)
			env := decodeEnvelope(t, w)
			assert.Equal(t, "authentication_error", env.Error.Code)
			assert.Equal(t, tc.reason, env.Error.Details["reason"])
			assert.Contains(t, env.Error.Message, tc.message)
			assert.Equal(t, `APIKey header="X-API-Key"`, w.Header().Get("WWW-Authenticate"))
			assert.Empty(t, w.Header().Get("Retry-After"))
		})
	}
}

func flipChar(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestRequireAPIKeyEnvironment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.Environments = []keyward.Environment{keyward.EnvLive} })
	live := f.newKey(t)
	test := f.newKey(t, func(n *manage.KeySpec) { n.Environment = keyward.EnvTest })
	assert.Equal(t, http.StatusOK, f.do(withKey(live.Key)).Code)
	w := f.do(withKey(test.Key))
	require.Equal(t, http.StatusForbidden, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "authorization_error", env.Error.Code)
	assert.Equal(t, "environment_not_allowed", env.Error.Details["reason"])
	assert.Equal(t, "test", env.Error.Details["environment"])
}

// hostileValues are header values a client or attacker may send; none may
// get further than a 401, echo itself or reach the store.
func hostileValues(valid string) map[string]struct {
	values []string
	reason string
} {
	type v = struct {
		values []string
		reason string
	}
	body := valid[5:]
	return map[string]v{
		"empty":                   {[]string{""}, "missing_api_key"},
		"spaces only":             {[]string{"     "}, "missing_api_key"},
		"tabs only":               {[]string{"\t\t"}, "missing_api_key"},
		"two headers":             {[]string{valid, valid}, "invalid_api_key"},
		"two empty headers":       {[]string{"", ""}, "invalid_api_key"},
		"comma joined":            {[]string{valid + ", " + valid}, "invalid_api_key"},
		"16 KB":                   {[]string{"triq_" + strings.Repeat("A", 16<<10)}, "invalid_api_key"},
		"16 KB no prefix":         {[]string{strings.Repeat("Z", 16<<10)}, "invalid_api_key"}, // over-long: refused before its prefix is read
		"NUL":                     {[]string{valid[:20] + "\x00" + valid[21:]}, "invalid_api_key"},
		"NUL only":                {[]string{"\x00"}, "invalid_api_key_format"},
		"control bytes":           {[]string{"triq_\x01\x02\x03\x1b[31m" + body[10:]}, "invalid_api_key"},
		"DEL":                     {[]string{valid[:20] + "\x7f" + valid[21:]}, "invalid_api_key"},
		"invalid UTF-8":           {[]string{"triq_\xff\xfe" + body[2:]}, "invalid_api_key"},
		"invalid UTF-8 prefix":    {[]string{"\xfftriq_" + body}, "invalid_api_key_format"},
		"upper-case prefix":       {[]string{"TRIQ_" + body}, "invalid_api_key_format"},
		"mixed-case prefix":       {[]string{"Triq_" + body}, "invalid_api_key_format"},
		"prefix only":             {[]string{"triq_"}, "invalid_api_key"},
		"prefix without _":        {[]string{"triq" + body}, "invalid_api_key_format"},
		"wrong checksum":          {[]string{valid[:len(valid)-1] + flipChar(valid[len(valid)-1])}, "invalid_api_key"},
		"swapped body chars":      {[]string{swapDistinct(valid)}, "invalid_api_key"},
		"trailing newline":        {[]string{valid + "\n"}, "invalid_api_key"},
		"CRLF injection":          {[]string{valid + "\r\nSet-Cookie: a=b"}, "invalid_api_key"},
		"leading newline":         {[]string{"\n" + valid}, "invalid_api_key_format"},
		"Bearer scheme":           {[]string{"Bearer " + valid}, "invalid_api_key_format"},
		"quoted":                  {[]string{`"` + valid + `"`}, "invalid_api_key_format"},
		"truncated":               {[]string{valid[:len(valid)-3]}, "invalid_api_key"},
		"one extra char":          {[]string{valid + "A"}, "invalid_api_key"},
		"inner space":             {[]string{valid[:15] + " " + valid[16:]}, "invalid_api_key"},
		"unicode lookalike":       {[]string{"triq_" + "А" + body[2:]}, "invalid_api_key"}, // Cyrillic А
		"SQL injection":           {[]string{"triq_' OR 1=1 --"}, "invalid_api_key"},
		"SQL injection no prefix": {[]string{"' OR '1'='1"}, "invalid_api_key_format"},
		"JSON breaking":           {[]string{`triq_"},"success":true,"x":{"`}, "invalid_api_key"},
		"percent encoded":         {[]string{"triq%5F" + body}, "invalid_api_key_format"},
		"log injection":           {[]string{"triq_x\nlevel=ERROR msg=forged"}, "invalid_api_key"},
		"hex of a key":            {[]string{fmt.Sprintf("%x", valid)}, "invalid_api_key_format"},
	}
}

// swapDistinct swaps the first two neighbouring body characters that
// differ, so that the result is never the key itself.
func swapDistinct(key string) string {
	b := []byte(key)
	for i := 5; i+1 < len(b); i++ {
		if b[i] != b[i+1] {
			b[i], b[i+1] = b[i+1], b[i]
			break
		}
	}
	return string(b)
}

func TestRequireAPIKeyHostileValues(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	valid := f.newKey(t)
	cases := hostileValues(valid.Key)
	require.GreaterOrEqual(t, len(cases), 30)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := f.probe.calls.Load()
			w := f.do(http.Header{"X-Api-Key": tc.values})
			require.Equal(t, http.StatusUnauthorized, w.Code, "body: %s", w.Body.String())
			env := decodeEnvelope(t, w)
			assert.Equal(t, tc.reason, env.Error.Details["reason"])
			if len(tc.values) == 1 {
				// Only a value that passes the checksum may cost a lookup.
				assert.Equal(t, before, f.probe.calls.Load(), "a malformed key reached the store")
			}
			for _, v := range tc.values {
				assertNotEchoed(t, v, w, f.logs.String())
			}
		})
	}
}

// assertNotEchoed checks that a presented value (or a long piece of it)
// appears nowhere in the response or the logs.
func assertNotEchoed(t *testing.T, v string, w *httptest.ResponseRecorder, logs string) {
	t.Helper()
	v = strings.TrimSpace(v)
	if len(v) < 8 {
		return // too short to tell an echo from the envelope's own words
	}
	probe := v
	if len(probe) > 64 {
		probe = probe[len(probe)/2 : len(probe)/2+32]
	}
	var headers strings.Builder
	_ = w.Header().Write(&headers)
	assert.NotContains(t, w.Body.String(), probe)
	assert.NotContains(t, headers.String(), probe)
	assert.NotContains(t, logs, probe)
}

func TestRequireAPIKeyMalformedKeysMakeNoStoreCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	valid := f.newKey(t)
	for i := range 1000 {
		k := valid.Key[:len(valid.Key)-1] + flipChar(valid.Key[len(valid.Key)-1])
		if i%2 == 0 {
			k = "TRIQ_" + valid.Key[5:]
		}
		require.Equal(t, http.StatusUnauthorized, f.do(withKey(k)).Code)
	}
	assert.Zero(t, f.probe.calls.Load())
}

func TestRotationKeepsTheOldKeyForItsGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old := f.newKey(t)
	require.Equal(t, http.StatusOK, f.do(withKey(old.Key)).Code)
	rotated, err := f.store.RotateKey(context.Background(), old.Record.ID, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, f.do(withKey(old.Key)).Code)
	assert.Equal(t, http.StatusOK, f.do(withKey(rotated.Key)).Code)
	f.now.Advance(time.Hour)
	w := f.do(withKey(old.Key))
	require.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, "revoked_api_key", decodeEnvelope(t, w).Error.Details["reason"])
	assert.Equal(t, http.StatusOK, f.do(withKey(rotated.Key)).Code)
}

func TestStoreFailureIs503AndRecovers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	f.probe.fail.Store(true)
	for range 3 {
		w := f.do(withKey(k.Key))
		require.Equal(t, http.StatusServiceUnavailable, w.Code)
		env := decodeEnvelope(t, w)
		assert.Equal(t, "service_unavailable", env.Error.Code)
		assert.Equal(t, "1", w.Header().Get("Retry-After"))
		assertNotEchoed(t, k.Key, w, f.logs.String())
	}
	assert.Contains(t, f.logs.String(), "connection refused", "the cause is logged")
	assert.Equal(t, int64(3), f.probe.calls.Load(), "failures are not cached")
	f.probe.fail.Store(false)
	assert.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
}

func TestCancelledRequestDoesNotWaitForTheStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	release := make(chan struct{})
	hold := func() { <-release }
	f.probe.hold.Store(&hold)
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
}

func TestRequireAPIKeyReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := keyward.RequireAPIKey(keyward.AuthConfig{
		Prefix:       "TRIQ",
		Header:       "X API Key",
		Environments: []keyward.Environment{"staging"},
	})
	require.Error(t, err)
	for _, field := range []string{"AuthConfig.Keys", "Prefix", "AuthConfig.Header", "AuthConfig.Environments"} {
		assert.Contains(t, err.Error(), field)
	}
	var ce *keyward.ConfigError
	assert.True(t, errors.As(err, &ce))
	_, err = keyward.RequireAPIKey(keyward.AuthConfig{})
	assert.Error(t, err)
}

func TestRequestIDIsEchoedWhenSane(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.do(http.Header{"X-Request-Id": {"req-123_abc.9"}})
	assert.Equal(t, "req-123_abc.9", decodeEnvelope(t, w).Meta.RequestID)
	for _, bad := range []string{"has space", strings.Repeat("a", 129), "a\nb", "<script>"} {
		w := f.do(http.Header{"X-Request-Id": {bad}})
		got := decodeEnvelope(t, w).Meta.RequestID
		assert.NotEqual(t, bad, got)
		assert.Len(t, got, 36)
	}
}

// A client that sends a key as its request id never gets it back: not in
// the header, the body or a 5xx log record. Keys of any prefix are refused,
// and ids of the usual shapes are still echoed.
func TestRequestIDThatIsAKeyIsNotEchoed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.probe.fail.Store(true) // unknown keys answer 503: a logged failure
	for _, prefix := range []string{"triq_", "sk_", "a_"} {
		kf, err := keyward.NewKeyFormat(prefix)
		require.NoError(t, err)
		key, err := kf.Generate()
		require.NoError(t, err)
		body := key[len(prefix) : len(prefix)+30] // reveals the key: the checksum follows from it
		for _, id := range []string{key, "req." + key, key + "-1", prefix + body} {
			w := f.do(http.Header{"X-Request-Id": {id}, "X-Api-Key": {f.newKey(t).Key}})
			require.Equal(t, http.StatusServiceUnavailable, w.Code)
			got := decodeEnvelope(t, w).Meta.RequestID
			assert.Len(t, got, 36, "a new UUID instead of %q", id)
			assert.NotContains(t, w.Body.String(), key)
			assert.NotContains(t, f.logs.String(), key)
		}
	}
	for _, ok := range []string{"3c90c3cc-0d44-4b50-8888-8dd25736052a", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"4bf92f3577b34da6a3ce929d0e0e4", "req_Xy12abcdEFGH34567890ijkl"} {
		w := f.do(http.Header{"X-Request-Id": {ok}})
		assert.Equal(t, ok, decodeEnvelope(t, w).Meta.RequestID)
	}
}

// An over-long key header is refused as an invalid key at once: no store
// lookup, whatever it starts with.
func TestOverlongKeyHeaderIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key := f.newKey(t).Key
	for _, v := range []string{key + strings.Repeat(" ", 1<<20), strings.Repeat(" ", 1<<20) + key, "triq_" + strings.Repeat("a", 1<<20)} {
		w := f.do(withKey(v))
		require.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Equal(t, keyward.ReasonInvalidAPIKey, decodeEnvelope(t, w).Error.Details["reason"])
	}
	assert.Zero(t, f.probe.calls.Load())
	assert.Equal(t, http.StatusOK, f.do(withKey("  "+key+"\t")).Code, "a key with a little white space still works")
}

func TestDepartedClientIsNotLoggedAsAnOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	release := make(chan struct{})
	hold := func() { <-release }
	f.probe.hold.Store(&hold)
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); f.handler.ServeHTTP(w, r) }()
	require.Eventually(t, func() bool { return f.probe.calls.Load() == 1 }, time.Second, time.Millisecond)
	cancel() // the client leaves while the store is slow
	<-done
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "answered, though nobody may be there")
	assert.NotContains(t, f.logs.String(), "request failed", "a departed client is not an outage")
}

// A key served from the cache keeps every format check: an authenticator
// with another prefix sharing the cache still refuses it, and a key one
// character off is still malformed and reaches no store.
func TestCacheKeepsFormatChecks(t *testing.T) {
	f := newFixture(t)
	k := f.newKey(t)
	require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	other, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: f.cache, Prefix: "test_", Errors: f.errors})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	other.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("served with a foreign prefix") })).ServeHTTP(w, r)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, "invalid_api_key_format", decodeEnvelope(t, w).Error.Details["reason"])

	calls := f.probe.calls.Load()
	last := k.Key[len(k.Key)-1]
	flipped := k.Key[:len(k.Key)-1] + string(map[bool]byte{true: 'A', false: 'B'}[last != 'A'])
	w = f.do(withKey(flipped))
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, "invalid_api_key", decodeEnvelope(t, w).Error.Details["reason"])
	assert.Equal(t, calls, f.probe.calls.Load(), "a malformed key reaches no store")
	assert.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
}

// With Bearer on, the key may come as "Authorization: Bearer KEY" (any
// case of the scheme); exactly one key per request, wherever it is; off,
// the Authorization header is not read at all.
func TestBearerKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.Bearer = true })
	k := f.newKey(t)
	for name, c := range map[string]struct {
		h      http.Header
		status int
		reason string
	}{
		"bearer":               {http.Header{"Authorization": {"Bearer " + k.Key}}, http.StatusOK, ""},
		"bearer, lower case":   {http.Header{"Authorization": {"bearer " + k.Key}}, http.StatusOK, ""},
		"header":               {withKey(k.Key), http.StatusOK, ""},
		"both":                 {http.Header{"X-Api-Key": {k.Key}, "Authorization": {"Bearer " + k.Key}}, http.StatusUnauthorized, keyward.ReasonInvalidAPIKey},
		"basic":                {http.Header{"Authorization": {"Basic " + k.Key}}, http.StatusUnauthorized, keyward.ReasonMissingAPIKey},
		"bearer, wrong key":    {http.Header{"Authorization": {"Bearer triq_x"}}, http.StatusUnauthorized, keyward.ReasonInvalidAPIKey},
		"bearer, other scheme": {http.Header{"Authorization": {"Token " + k.Key}}, http.StatusUnauthorized, keyward.ReasonMissingAPIKey},
	} {
		w := f.do(c.h)
		require.Equal(t, c.status, w.Code, name)
		if c.reason != "" {
			env := decodeEnvelope(t, w)
			assert.Equal(t, c.reason, env.Error.Details["reason"], name)
			if c.reason == keyward.ReasonMissingAPIKey || name == "both" {
				assert.Contains(t, env.Error.Message, "Authorization: Bearer", name)
			}
		}
	}
	off := newFixture(t)
	k2 := off.newKey(t)
	w := off.do(http.Header{"Authorization": {"Bearer " + k2.Key}})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, keyward.ReasonMissingAPIKey, decodeEnvelope(t, w).Error.Details["reason"])
}

// Bearer with the key header set to Authorization would read one header
// twice: refused at construction.
func TestBearerWithAuthorizationHeaderIsRefused(t *testing.T) {
	t.Parallel()
	_, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: keyStoreFunc(nil), Prefix: "triq_", Header: "Authorization", Bearer: true})
	var ce *keyward.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "AuthConfig.Header", ce.Field)
}

// A store that answers with the record of another key is a failing store
// (503), not an authentication.
func TestStoreAnsweringAnotherKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	other := f.newKey(t)
	wrong, err := f.store.LookupKey(context.Background(), keyward.Hash(other.Key))
	require.NoError(t, err)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Prefix: "triq_",
		Keys: keyStoreFunc(func(context.Context, keyward.KeyHash) (*keyward.KeyRecord, error) { return wrong, nil })})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	_, err = a.Authenticate(r)
	assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeServiceUnavailable})
	assert.False(t, strings.Contains(err.Error(), k.Key))
}

// A test key made before test keys had their own prefix (live prefix, test
// record) keeps working, in the test budget; a test-prefixed key whose
// record says live is refused.
func TestTestKeysAndTheirRecords(t *testing.T) {
	t.Parallel()
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	legacy, err := format.Generate()
	require.NoError(t, err)
	test, err := format.GenerateFor(keyward.EnvTest)
	require.NoError(t, err)
	records := map[keyward.KeyHash]*keyward.KeyRecord{
		keyward.Hash(legacy): {ID: "key_legacy", Hash: keyward.Hash(legacy), Environment: keyward.EnvTest, Org: keyward.Organization{ID: "org_l"}},
		keyward.Hash(test):   {ID: "key_wrong", Hash: keyward.Hash(test), Environment: keyward.EnvLive, Org: keyward.Organization{ID: "org_w"}},
	}
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Prefix: "triq_", Keys: keyStoreFunc(func(_ context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
		return records[h], nil
	})})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", legacy)
	rec, err := a.Authenticate(r)
	require.NoError(t, err)
	assert.Equal(t, "org_l:test", rec.Account().OrgID)
	r.Header.Set("X-API-Key", test)
	_, err = a.Authenticate(r)
	assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeAuthentication, Reason: keyward.ReasonInvalidAPIKey})
}
