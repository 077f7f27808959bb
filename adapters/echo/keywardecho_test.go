package keywardecho_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/keyward/keyward"
	keywardecho "github.com/keyward/keyward/adapters/echo"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildEcho is the kit's Builder for echo: every route on an *echo.Echo,
// behind this package's handlers.
func buildEcho(s keywardtest.Stack) (http.Handler, error) {
	e := echo.New() // no Recover: the kit checks that panics go on
	auth, err := keywardecho.RequireAPIKey(s.Auth)
	if err != nil {
		return nil, err
	}
	limit, err := keywardecho.RateLimitByOrg(s.Limiter)
	if err != nil {
		return nil, err
	}
	for _, rt := range s.Routes {
		var chain []echo.MiddlewareFunc
		if rt.Auth {
			chain = append(chain, auth)
		}
		if rt.Permissions != nil {
			perm, err := keywardecho.EnforcePermissions(rt.Permissions)
			if err != nil {
				return nil, err
			}
			chain = append(chain, perm)
		}
		if rt.Limit {
			chain = append(chain, limit)
		}
		if rt.Charge != nil {
			charge, err := keywardecho.ChargeCredits(rt.Charge)
			if err != nil {
				return nil, err
			}
			chain = append(chain, charge)
		}
		h := echo.WrapHandler(rt.Handler)
		if code := rt.NativeFailure; code != 0 {
			h = func(echo.Context) error { return echo.NewHTTPError(code, "native failure") }
		}
		e.Add(rt.Method, rt.Path, h, chain...)
	}
	return e, nil
}

// TestConformance: for every request of the kit, echo answers what
// net/http answers, byte for byte, and settles the same credits.
func TestConformance(t *testing.T) {
	t.Parallel()
	var want, got keywardtest.Transcript
	t.Run("impl=nethttp", func(t *testing.T) { want = keywardtest.RunConformance(t, keywardtest.NetHTTP) })
	t.Run("impl=echo", func(t *testing.T) { got = keywardtest.RunConformance(t, buildEcho) })
	require.NotEmpty(t, want)
	keywardtest.SameTranscript(t, want, got)
}

// fixture is one organization with plenty of credits and one key, and the
// four handlers built for it.
type fixture struct {
	ledger *memstore.Ledger
	acct   credit.Account
	key    string
	chain  []echo.MiddlewareFunc
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	cache, err := keyward.NewCache(store, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	store.Watch(cache)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "growth", MonthlyCredits: 100})
	require.NoError(t, err)
	k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:enrich"}})
	require.NoError(t, err)
	f := &fixture{key: k.Key}
	f.ledger, err = memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	f.acct = org.Account()

	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	require.NoError(t, err)
	pc, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	require.NoError(t, err)
	l, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	require.NoError(t, err)
	cg, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.ledger})
	require.NoError(t, err)
	auth, err := keywardecho.RequireAPIKey(a)
	require.NoError(t, err)
	perm, err := keywardecho.EnforcePermissions(pc)
	require.NoError(t, err)
	limit, err := keywardecho.RateLimitByOrg(l)
	require.NoError(t, err)
	charge, err := keywardecho.ChargeCredits(cg)
	require.NoError(t, err)
	f.chain = []echo.MiddlewareFunc{auth, perm, limit, charge}
	return f
}

func (f *fixture) serve(t *testing.T, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/transactions/enrich", nil)
	r.Header.Set("X-API-Key", f.key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func (f *fixture) balance(t *testing.T) credit.Balance {
	t.Helper()
	b, err := f.ledger.Balance(context.Background(), f.acct)
	require.NoError(t, err)
	return b
}

func (f *fixture) echo(h echo.HandlerFunc) *echo.Echo {
	e := echo.New()
	e.POST("/v1/transactions/enrich", h, f.chain...)
	return e
}

func TestKeyThroughEchoAndContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var viaEcho, viaCtx *keyward.KeyRecord
	w := f.serve(t, f.echo(func(c echo.Context) error {
		viaEcho, _ = keywardecho.Key(c)
		viaCtx, _ = keyward.FromContext(c.Request().Context())
		return c.String(http.StatusOK, "ok")
	}))
	require.Equal(t, http.StatusOK, w.Code)
	require.NotNil(t, viaEcho)
	assert.Same(t, viaEcho, viaCtx)
	assert.Equal(t, "production", viaEcho.Name)

	// Without RequireAPIKey there is none, and asking does not panic.
	c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
	_, ok := keywardecho.Key(c)
	assert.False(t, ok)
}

// The call settles on the status echo commits, whatever way the handler
// chose it; an error's response is written once.
func TestChargeSettlesOnTheStatusEchoCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler echo.HandlerFunc
		status  int
		spent   int64
		body    string
	}{
		{"HTTPError 422", func(echo.Context) error { return echo.NewHTTPError(http.StatusUnprocessableEntity, "bad title") },
			422, 0, `{"message":"bad title"}` + "\n"},
		{"plain error", func(echo.Context) error { return errors.New("boom") }, 500, 0, `{"message":"Internal Server Error"}` + "\n"},
		{"JSON 200", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]bool{"ok": true}) }, 200, 1, `{"ok":true}` + "\n"},
		{"NoContent 204", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, 204, 1, ""},
		{"String 400", func(c echo.Context) error { return c.String(http.StatusBadRequest, "bad") }, 400, 0, "bad"},
		{"nothing", func(echo.Context) error { return nil }, 200, 1, ""},
		{"committed 200, then an error", func(c echo.Context) error {
			_ = c.String(http.StatusOK, "partial")
			return errors.New("late")
		}, 200, 1, "partial"},
		{"SetCost 3 then Blob 200", func(c echo.Context) error {
			if err := keyward.SetCost(c.Request().Context(), 3); err != nil {
				return err
			}
			return c.Blob(http.StatusOK, "text/plain", []byte("ok"))
		}, 200, 3, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			w := f.serve(t, f.echo(tc.handler))
			assert.Equal(t, tc.status, w.Code)
			assert.Equal(t, tc.body, w.Body.String())
			b := f.balance(t)
			assert.Equal(t, tc.spent, b.Spent)
			assert.Zero(t, b.Reserved)
			if tc.spent > 0 {
				assert.Equal(t, strconv.FormatInt(b.Available, 10), w.Header().Get("X-Credits-Remaining"))
			} else {
				assert.Empty(t, w.Header().Get("X-Credits-Remaining"))
			}
		})
	}
}

// The handler's error still reaches the middleware in front, as echo's
// own middleware let it.
func TestChargeReturnsTheHandlersError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var seen error
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			seen = next(c)
			return seen
		}
	})
	e.POST("/v1/transactions/enrich", func(echo.Context) error { return echo.ErrTeapot }, f.chain...)
	w := f.serve(t, e)
	assert.Equal(t, http.StatusTeapot, w.Code)
	assert.ErrorIs(t, seen, echo.ErrTeapot)
	assert.Equal(t, `{"message":"I'm a teapot"}`+"\n", w.Body.String())
}

// With echo's Recover in front, a panic is released by ChargeCredits and
// answered 500 by Recover, without credit headers.
func TestPanicUnderRecover(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := echo.New()
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true, DisableStackAll: true}))
	e.Logger.SetOutput(io.Discard)
	e.POST("/v1/transactions/enrich", func(echo.Context) error { panic("boom") }, f.chain...)
	w := f.serve(t, e)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Empty(t, w.Header().Get("X-Credits-Remaining"))
	b := f.balance(t)
	assert.Zero(t, b.Spent)
	assert.Zero(t, b.Reserved)
}

func TestNilDecisionsAreConfigErrors(t *testing.T) {
	t.Parallel()
	var cfgErr *keyward.ConfigError
	_, err := keywardecho.RequireAPIKey(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardecho.EnforcePermissions(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardecho.RateLimitByOrg(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardecho.ChargeCredits(nil)
	assert.ErrorAs(t, err, &cfgErr)
}

// Each handler after RequireAPIKey, given no key or a hand-made, partly
// empty one, answers 500 internal_error naming the misconfiguration: no
// panic, no call of the handler.
func TestHandMadeKeysAnswer500(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := map[string]*keyward.KeyRecord{
		"no key":          nil,
		"no key id":       {Org: keyward.Organization{ID: "org_x", Limits: keyward.Limits{RequestsPerMinute: 60}}},
		"no org id":       {ID: "key_x", Org: keyward.Organization{Limits: keyward.Limits{RequestsPerMinute: 60}}},
		"no limits":       {ID: "key_x", Org: keyward.Organization{ID: "org_handmade_echo"}, Permissions: []string{"*"}},
		"permissions nil": {ID: "key_x", Org: keyward.Organization{ID: "org_x"}},
	}
	handlers := map[string]echo.MiddlewareFunc{"EnforcePermissions": f.chain[1], "RateLimitByOrg": f.chain[2], "ChargeCredits": f.chain[3]}
	for name, rec := range cases {
		for hname, mw := range handlers {
			if name == "permissions nil" && hname != "EnforcePermissions" || name == "no limits" && hname == "EnforcePermissions" {
				continue // not a misconfiguration for this handler
			}
			t.Run(name+"/"+hname, func(t *testing.T) {
				e := echo.New()
				ran := false
				withKey := func(next echo.HandlerFunc) echo.HandlerFunc {
					return func(c echo.Context) error {
						if rec != nil {
							c.SetRequest(c.Request().WithContext(keyward.WithKey(c.Request().Context(), rec)))
						}
						return next(c)
					}
				}
				e.POST("/", func(c echo.Context) error { ran = true; return nil }, withKey, mw)
				w := httptest.NewRecorder()
				require.NotPanics(t, func() { e.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil)) })
				if name == "permissions nil" {
					assert.Equal(t, http.StatusForbidden, w.Code, "a key without permissions is refused, not a 500")
					return
				}
				assert.Equal(t, http.StatusInternalServerError, w.Code)
				assert.Contains(t, w.Body.String(), `"code":"internal_error"`)
				assert.Contains(t, w.Body.String(), "misconfigured")
				assert.False(t, ran)
			})
		}
	}
}

// The key may come as Authorization: Bearer when the Authenticator says
// so: the rule is the core's, so echo follows it.
func TestBearerThroughEcho(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "b", Plan: "free"})
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_", Bearer: true})
	require.NoError(t, err)
	auth, err := keywardecho.RequireAPIKey(a)
	require.NoError(t, err)
	e := echo.New()
	e.GET("/", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, auth)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+k.Key)
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	assert.Equal(t, http.StatusNoContent, w.Code)
}
