package keyward_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 429's X-RateLimit-Limit, -Remaining and -Reset describe the limit
// named by X-RateLimit-Scope: its limit, 0, and when it admits again (as
// the body's resetAt), so that a client trusting Remaining stops sending.
// They described the per-second bucket: a 429 by the per-minute quota said
// Remaining: 98. (redislimit's TestRefusalHeadersOfEachScope is this on
// Redis.)
func TestRefusalHeadersOfEachScope(t *testing.T) {
	t.Parallel()
	// limitedNow is 10:30:18: a quota whose requests all came now is
	// whole again at 10:31:18.
	for _, tc := range []struct {
		scope, limit, reset string
		org                 manage.OrgSpec
		keyLimit            int64
		calls               int // served before the refusal
	}{
		{"rps", "1", "2036-01-19T10:30:19Z", manage.OrgSpec{Plan: "free"}, 0, 2},
		{"rpm", "2", "2036-01-19T10:31:18Z", manage.OrgSpec{Plan: "free", RatePerSecond: 100, RatePerMinute: 2}, 0, 2},
		{"key", "1", "2036-01-19T10:31:18Z", manage.OrgSpec{Plan: "growth"}, 1, 1},
		{"concurrency", "1", "2036-01-19T10:30:19Z", manage.OrgSpec{Plan: "growth", Concurrency: 1}, 0, 1},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t)
			tc.org.Name = tc.scope
			org, err := l.store.CreateOrg(context.Background(), tc.org)
			require.NoError(t, err)
			k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID, n.RatePerMinute = org.ID, tc.keyLimit })
			// The requests served stay in flight until the end, so that the
			// in-flight cap refuses the next.
			release := make(chan struct{})
			held := make(chan struct{}, tc.calls)
			l.h = l.auth.Middleware(l.limiter.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				held <- struct{}{}
				<-release
			})))
			done := make(chan int, tc.calls)
			defer close(release)
			for i := range tc.calls {
				go func() { done <- l.call(k.Key).Code }()
				select {
				case <-held:
				case code := <-done:
					t.Fatalf("call %d of %d was answered %d, not served", i+1, tc.calls, code)
				}
			}
			w := l.call(k.Key)
			require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
			h := w.Header()
			assert.Equal(t, tc.scope, h.Get("X-RateLimit-Scope"))
			assert.Equal(t, tc.limit, h.Get("X-RateLimit-Limit"), "the refusing limit")
			assert.Equal(t, "0", h.Get("X-RateLimit-Remaining"), "nothing left of the refusing limit")
			assert.Equal(t, tc.reset, h.Get("X-RateLimit-Reset"), "when the refusing limit admits again")
			env := decodeEnvelope(t, w)
			assert.Equal(t, tc.reset, env.Error.Details["resetAt"], "the body says the same")
			reset, err := time.Parse(time.RFC3339, tc.reset)
			require.NoError(t, err)
			assert.Equal(t, reset.Sub(l.now.Now()).Seconds(), env.Error.Details["retryAfter"], "and Retry-After agrees")
		})
	}
}

// A request served still describes the per-second bucket, whatever limit
// binds next.
func TestSuccessHeadersDescribeTheBucket(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	org, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "q", Plan: "free", RatePerSecond: 100, RatePerMinute: 2})
	require.NoError(t, err)
	k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = org.ID })
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "100", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "99", w.Header().Get("X-RateLimit-Remaining"))
}
