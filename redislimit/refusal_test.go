package redislimit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefusalHeadersOfEachScope is keyward's test of the same name on
// Redis, across two instances: the requests served by one, the 429 by the
// other says X-RateLimit-Limit, -Remaining and -Reset of the limit named
// by X-RateLimit-Scope (its limit, 0, and when it admits again, on Redis's
// clock), not of the per-second bucket.
func TestRefusalHeadersOfEachScope(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	for _, tc := range []struct {
		scope, limit string
		reset        time.Duration // from the refusal, within a second or two
		org          manage.OrgSpec
		keyLimit     int64
		calls        int // served before the refusal
	}{
		{"rps", "1", time.Second, manage.OrgSpec{Plan: "free"}, 0, 2},
		{"rpm", "2", time.Minute, manage.OrgSpec{Plan: "free", RatePerSecond: 100, RatePerMinute: 2}, 0, 2},
		{"key", "1", time.Minute, manage.OrgSpec{Plan: "growth"}, 1, 1},
		{"concurrency", "1", time.Second, manage.OrgSpec{Plan: "growth", Concurrency: 1}, 0, 1},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			t.Parallel()
			tc.org.Name = tc.scope
			keys, org, _ := newOrgAndKey(t, tc.org)
			k, err := keys.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "limited", RatePerMinute: tc.keyLimit})
			require.NoError(t, err)
			release := make(chan struct{})
			held := make(chan struct{}, tc.calls)
			in := twoInstances(t, opts, keys, setup{handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				held <- struct{}{}
				<-release
			})})
			done := make(chan int, tc.calls)
			defer close(release)
			for i := range tc.calls {
				go func() { done <- in[0].call(k.Key).Code }()
				select {
				case <-held:
				case code := <-done:
					t.Fatalf("call %d of %d was answered %d, not served", i+1, tc.calls, code)
				}
			}
			w := in[1].call(k.Key)
			refused := time.Now()
			require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
			h := w.Header()
			assert.Equal(t, tc.scope, h.Get("X-RateLimit-Scope"))
			assert.Equal(t, tc.limit, h.Get("X-RateLimit-Limit"), "the refusing limit")
			assert.Equal(t, "0", h.Get("X-RateLimit-Remaining"), "nothing left of the refusing limit")
			reset, err := time.Parse(time.RFC3339, h.Get("X-RateLimit-Reset"))
			require.NoError(t, err)
			// Reset is rounded up to the second; a loaded machine may take a
			// second between the served calls and the refusal.
			assert.WithinRange(t, reset, refused.Add(tc.reset-2*time.Second), refused.Add(tc.reset+time.Second),
				"when the refusing limit admits again")
			var env struct {
				Error struct{ Details map[string]any }
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &env))
			assert.Equal(t, h.Get("X-RateLimit-Reset"), env.Error.Details["resetAt"], "the body says the same")
		})
	}
}
