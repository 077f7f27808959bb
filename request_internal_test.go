package keyward

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Whatever sits under keyward's own context key, if it is not a request
// state every handler answers the 500 of a missing RequireAPIKey, and
// nothing panics: FromContext, SetCost and ChargeFromContext included.
func TestForeignShapesUnderTheStateKey(t *testing.T) {
	t.Parallel()
	perms, err := EnforcePermissions(PermissionConfig{Required: []string{"a:b"}})
	require.NoError(t, err)
	limiter, err := RateLimitByOrg(RateLimitConfig{})
	require.NoError(t, err)
	charger, err := ChargeCredits(CreditConfig{Ledger: nopLedger{}})
	require.NoError(t, err)
	rec := &KeyRecord{ID: "k", Permissions: []string{"*"},
		Org: Organization{ID: "o", Limits: Limits{RequestsPerMinute: 1, MonthlyCredits: 1}}}
	for name, v := range map[string]any{
		"string":              "a key",
		"record":              rec,
		"state by value":      requestState{key: rec},
		"nil state":           (*requestState)(nil),
		"nil":                 nil,
		"state under WithKey": WithKey(context.Background(), rec), // a context, not a state
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.WithValue(context.Background(), stateKey{}, v)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("panicked: %v", p)
					}
				}()
				_, ok := FromContext(ctx)
				assert.False(t, ok)
				_, ok = ChargeFromContext(ctx)
				assert.False(t, ok)
				assert.ErrorIs(t, SetCost(ctx, 1), ErrNoCharge)
			}()
			for hname, mw := range map[string]func(http.Handler) http.Handler{
				"EnforcePermissions": perms.Middleware, "RateLimitByOrg": limiter.Middleware, "ChargeCredits": charger.Middleware,
			} {
				w := httptest.NewRecorder()
				r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("%s panicked: %v", hname, p)
						}
					}()
					mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Errorf("%s served", hname) })).ServeHTTP(w, r)
				}()
				assert.Equal(t, http.StatusInternalServerError, w.Code, hname)
				assert.Contains(t, w.Body.String(), `"code":"internal_error"`, hname)
				assert.Contains(t, w.Body.String(), "misconfigured", hname)
			}
		})
	}
}

// SetCost and ChargeFromContext find the innermost ChargeCredits' Charge
// through the request state; with none, nothing.
func TestChargeIsFoundThroughTheState(t *testing.T) {
	t.Parallel()
	rec := &KeyRecord{ID: "k", Org: Organization{ID: "o"}}
	r := AttachKey(httptest.NewRequest(http.MethodGet, "/", nil), rec)
	_, ok := ChargeFromContext(r.Context())
	assert.False(t, ok)
	assert.ErrorIs(t, SetCost(r.Context(), 1), ErrNoCharge)
	st := stateFrom(r.Context())
	require.NotNil(t, st)
	assert.Same(t, &st.req, r, "the request passed on lives in the state")
	first, second := st.newCharge(), st.newCharge()
	assert.Same(t, &st.room, first, "the first Charge is the state's")
	assert.NotSame(t, first, second)
	got, ok := ChargeFromContext(context.WithValue(r.Context(), stateKey{}, st))
	require.True(t, ok)
	assert.Same(t, second, got, "the innermost")
}
