package keywardgin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/keyward/keyward"
	keywardgin "github.com/keyward/keyward/adapters/gin"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // no route listing on stdout
	os.Exit(m.Run())
}

// buildGin is the kit's Builder for gin: every route on a gin.Engine,
// behind this package's handlers.
func buildGin(s keywardtest.Stack) (http.Handler, error) {
	e := gin.New() // no Recovery: the kit checks that panics go on
	auth, err := keywardgin.RequireAPIKey(s.Auth)
	if err != nil {
		return nil, err
	}
	limit, err := keywardgin.RateLimitByOrg(s.Limiter)
	if err != nil {
		return nil, err
	}
	for _, rt := range s.Routes {
		var chain []gin.HandlerFunc
		if rt.Auth {
			chain = append(chain, auth)
		}
		if rt.Permissions != nil {
			perm, err := keywardgin.EnforcePermissions(rt.Permissions)
			if err != nil {
				return nil, err
			}
			chain = append(chain, perm)
		}
		if rt.Limit {
			chain = append(chain, limit)
		}
		if rt.Charge != nil {
			charge, err := keywardgin.ChargeCredits(rt.Charge)
			if err != nil {
				return nil, err
			}
			chain = append(chain, charge)
		}
		if code := rt.NativeFailure; code != 0 {
			chain = append(chain, func(c *gin.Context) { c.AbortWithStatus(code) })
		} else {
			chain = append(chain, gin.WrapH(rt.Handler))
		}
		e.Handle(rt.Method, rt.Path, chain...)
	}
	return e, nil
}

// TestConformance: for every request of the kit, gin answers what
// net/http answers, byte for byte, and settles the same credits.
func TestConformance(t *testing.T) {
	t.Parallel()
	var want, got keywardtest.Transcript
	t.Run("impl=nethttp", func(t *testing.T) { want = keywardtest.RunConformance(t, keywardtest.NetHTTP) })
	t.Run("impl=gin", func(t *testing.T) { got = keywardtest.RunConformance(t, buildGin) })
	require.NotEmpty(t, want)
	keywardtest.SameTranscript(t, want, got)
}

// fixture is one organization with plenty of credits and one key, and the
// four handlers built for it.
type fixture struct {
	ledger *memstore.Ledger
	acct   credit.Account
	key    string
	auth   gin.HandlerFunc
	limit  gin.HandlerFunc
	perm   gin.HandlerFunc
	charge gin.HandlerFunc
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
	f.auth, err = keywardgin.RequireAPIKey(a)
	require.NoError(t, err)
	f.perm, err = keywardgin.EnforcePermissions(pc)
	require.NoError(t, err)
	f.limit, err = keywardgin.RateLimitByOrg(l)
	require.NoError(t, err)
	f.charge, err = keywardgin.ChargeCredits(cg)
	require.NoError(t, err)
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

func (f *fixture) engine(handlers ...gin.HandlerFunc) *gin.Engine {
	e := gin.New()
	e.POST("/v1/transactions/enrich", append([]gin.HandlerFunc{f.auth, f.perm, f.limit, f.charge}, handlers...)...)
	return e
}

func TestKeyThroughGinAndContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var viaGin, viaCtx *keyward.KeyRecord
	w := f.serve(t, f.engine(func(c *gin.Context) {
		viaGin, _ = keywardgin.Key(c)
		viaCtx, _ = keyward.FromContext(c.Request.Context())
		c.String(http.StatusOK, "ok")
	}))
	require.Equal(t, http.StatusOK, w.Code)
	require.NotNil(t, viaGin)
	assert.Same(t, viaGin, viaCtx)
	assert.Equal(t, "production", viaGin.Name)

	// Without RequireAPIKey there is none, and asking does not panic.
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	_, ok := keywardgin.Key(c)
	assert.False(t, ok)
	c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
	_, ok = keywardgin.Key(c)
	assert.False(t, ok)
}

// The call settles on the status gin sends, whatever way the handler
// chose it.
func TestChargeSettlesOnTheStatusGinSends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler gin.HandlerFunc
		status  int
		spent   int64
	}{
		{"AbortWithStatus 422", func(c *gin.Context) { c.AbortWithStatus(http.StatusUnprocessableEntity) }, 422, 0},
		{"AbortWithStatusJSON 500", func(c *gin.Context) { c.AbortWithStatusJSON(500, gin.H{"error": "boom"}) }, 500, 0},
		{"JSON 200", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"ok": true}) }, 200, 1},
		{"Status 201 then JSON 500", func(c *gin.Context) { c.Status(http.StatusCreated); c.JSON(500, gin.H{}) }, 500, 0},
		{"Status 202 only", func(c *gin.Context) { c.Status(http.StatusAccepted) }, 202, 1},
		{"String 400", func(c *gin.Context) { c.String(http.StatusBadRequest, "bad") }, 400, 0},
		{"nothing", func(*gin.Context) {}, 200, 1},
		{"SetCost 3 then Data 200", func(c *gin.Context) {
			if err := keyward.SetCost(c.Request.Context(), 3); err != nil {
				c.AbortWithStatus(http.StatusInternalServerError)
				return
			}
			c.Data(http.StatusOK, "text/plain", []byte("ok"))
		}, 200, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			w := f.serve(t, f.engine(tc.handler))
			assert.Equal(t, tc.status, w.Code)
			b := f.balance(t)
			assert.Equal(t, tc.spent, b.Spent)
			assert.Zero(t, b.Reserved)
			if tc.spent > 0 {
				assert.Equal(t, b.Available, mustInt(t, w.Header().Get("X-Credits-Remaining")))
			} else {
				assert.Empty(t, w.Header().Get("X-Credits-Remaining"))
			}
		})
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', "not a number: %q", s)
		n = n*10 + int64(c-'0')
	}
	require.NotEmpty(t, s)
	return n
}

// With gin's Recovery in front, a panic is released by ChargeCredits and
// answered 500 by Recovery, without credit headers.
func TestPanicUnderRecovery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := gin.New()
	e.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, _ any) { c.AbortWithStatus(http.StatusInternalServerError) }))
	e.POST("/v1/transactions/enrich", f.auth, f.limit, f.charge, func(*gin.Context) { panic("boom") })
	w := f.serve(t, e)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Empty(t, w.Header().Get("X-Credits-Remaining"))
	b := f.balance(t)
	assert.Zero(t, b.Spent)
	assert.Zero(t, b.Reserved)
}

func TestHijackedCallIsNotCharged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := httptest.NewServer(f.engine(func(c *gin.Context) {
		conn, rw, err := c.Writer.Hijack()
		if err != nil {
			c.AbortWithStatus(http.StatusInternalServerError)
			return
		}
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		_ = rw.Flush()
		_ = conn.Close()
	}))
	defer srv.Close()
	r, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/transactions/enrich", nil)
	require.NoError(t, err)
	r.Header.Set("X-API-Key", f.key)
	res, err := srv.Client().Do(r)
	require.NoError(t, err)
	_ = res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	b := f.balance(t)
	assert.Zero(t, b.Spent)
	assert.Zero(t, b.Reserved)
}

func TestNilDecisionsAreConfigErrors(t *testing.T) {
	t.Parallel()
	var cfgErr *keyward.ConfigError
	_, err := keywardgin.RequireAPIKey(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardgin.EnforcePermissions(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardgin.RateLimitByOrg(nil)
	assert.ErrorAs(t, err, &cfgErr)
	_, err = keywardgin.ChargeCredits(nil)
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
		"no limits":       {ID: "key_x", Org: keyward.Organization{ID: "org_handmade_gin"}, Permissions: []string{"*"}},
		"permissions nil": {ID: "key_x", Org: keyward.Organization{ID: "org_x"}},
	}
	for name, rec := range cases {
		for hname, h := range map[string]gin.HandlerFunc{"EnforcePermissions": f.perm, "RateLimitByOrg": f.limit, "ChargeCredits": f.charge} {
			if name == "permissions nil" && hname != "EnforcePermissions" || name == "no limits" && hname == "EnforcePermissions" {
				continue // not a misconfiguration for this handler
			}
			t.Run(name+"/"+hname, func(t *testing.T) {
				e := gin.New()
				ran := false
				e.POST("/", func(c *gin.Context) {
					if rec != nil {
						c.Request = c.Request.WithContext(keyward.WithKey(c.Request.Context(), rec))
					}
					c.Next()
				}, h, func(c *gin.Context) { ran = true })
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
// so: the rule is the core's, so gin follows it.
func TestBearerThroughGin(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "b", Plan: "free"})
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_", Bearer: true})
	require.NoError(t, err)
	auth, err := keywardgin.RequireAPIKey(a)
	require.NoError(t, err)
	e := gin.New()
	e.GET("/", auth, func(c *gin.Context) { c.Status(http.StatusNoContent) })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+k.Key)
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	assert.Equal(t, http.StatusNoContent, w.Code)
}
