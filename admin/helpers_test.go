package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/stretchr/testify/require"
)

// env is an admin Handler over a real store (SQLite in a temporary
// directory), served by httptest.
type env struct {
	t     *testing.T
	store *sqlstore.Store
	srv   *httptest.Server
	h     *admin.Handler
	token string // operator mode: a valid admin token
	path  string // operator mode: the token file
}

// operatorEnv serves the handler in operator mode.
func operatorEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, store: newStore(t)}
	e.path = filepath.Join(t.TempDir(), "admin-tokens")
	var err error
	e.token, _, err = admin.CreateToken(e.path, "ops", time.Now())
	require.NoError(t, err)
	tokens, err := admin.OpenTokenFile(e.path)
	require.NoError(t, err)
	e.serve(admin.Config{Tokens: tokens})
	return e
}

// selfServiceEnv serves the handler in self-service mode: the org of a
// request is its X-Test-Org header (the host's sign-in, in a test).
func selfServiceEnv(t *testing.T, offered ...string) *env {
	t.Helper()
	e := &env{t: t, store: newStore(t)}
	e.serve(admin.Config{Permissions: offered, OrgFor: func(r *http.Request) (string, error) {
		if id := r.Header.Get("X-Test-Org"); id != "" {
			return id, nil
		}
		if c, err := r.Cookie("test_org"); err == nil {
			return c.Value, nil
		}
		return "", io.EOF
	}})
	return e
}

func newStore(t *testing.T) *sqlstore.Store { return newStoreWith(t, sqlstore.Options{}) }

func newStoreWith(t *testing.T, opts sqlstore.Options) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlite.DSN(filepath.Join(t.TempDir(), "keyward.db")), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (e *env) serve(cfg admin.Config) {
	cfg.Keys, cfg.Ledger, cfg.Usage, cfg.History, cfg.Plans = e.store, e.store, e.store, e.store, e.store.Plans
	if cfg.Permissions == nil {
		cfg.Permissions = []string{"transactions:enrich", "transactions:read", "*"}
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Errors = &keyward.ErrorWriter{Logger: cfg.Logger}
	h, err := admin.New(cfg)
	require.NoError(e.t, err)
	e.h = h
	mux := http.NewServeMux()
	mux.Handle(admin.APIPath, h)
	mux.Handle(admin.PagePath, h)
	e.srv = httptest.NewServer(mux)
	e.t.Cleanup(e.srv.Close)
}

// org makes an organization directly in the store.
func (e *env) org(name string) keyward.Organization {
	e.t.Helper()
	o, err := e.store.CreateOrg(context.Background(), manage.OrgSpec{Name: name, Plan: "starter"})
	require.NoError(e.t, err)
	return o
}

// key makes a key directly in the store.
func (e *env) key(orgID, name string) manage.CreatedKey {
	e.t.Helper()
	k, err := e.store.CreateKey(context.Background(), manage.KeySpec{OrgID: orgID, Name: name, Permissions: []string{"*"}})
	require.NoError(e.t, err)
	return k
}

type answer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// call makes an API request. Headers come as name, value pairs; in
// operator mode the admin token is sent unless an Authorization is given.
func (e *env) call(method, path, body string, header ...string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(e.t, json.Unmarshal(raw, &a.body), "body: %s", raw)
	}
	return a
}

// data returns the success envelope's data, checking the envelope.
func (a answer) data(t *testing.T) any {
	t.Helper()
	require.Equal(t, true, a.body["success"], "not a success: %d %s", a.status, a.raw)
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	require.NotEmpty(t, a.header.Get("X-Request-Id"))
	return a.body["data"]
}

func (a answer) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := a.data(t).(map[string]any)
	require.True(t, ok, "data is not an object: %s", a.raw)
	return m
}

func (a answer) list(t *testing.T) []any {
	t.Helper()
	l, ok := a.data(t).([]any)
	require.True(t, ok, "data is not a list: %s", a.raw)
	return l
}

// keys returns a key listing's keys.
func (a answer) keys(t *testing.T) []any {
	t.Helper()
	l, ok := a.obj(t)["keys"].([]any)
	require.True(t, ok, "data has no list of keys: %s", a.raw)
	return l
}

// failed checks a is keyward's error envelope with this status, code and
// reason.
func (a answer) failed(t *testing.T, status int, code, reason string) {
	t.Helper()
	require.Equal(t, status, a.status, "body: %s", a.raw)
	require.Equal(t, false, a.body["success"], "body: %s", a.raw)
	errObj, ok := a.body["error"].(map[string]any)
	require.True(t, ok, "no error object: %s", a.raw)
	require.Equal(t, code, errObj["code"], "body: %s", a.raw)
	details, _ := errObj["details"].(map[string]any)
	if reason == "" {
		require.NotContains(t, details, "reason", "body: %s", a.raw)
	} else {
		require.Equal(t, reason, details["reason"], "body: %s", a.raw)
	}
	require.NotEmpty(t, errObj["message"])
	meta, _ := a.body["meta"].(map[string]any)
	require.NotEmpty(t, meta["requestId"])
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
}

// snapshot is everything the store holds that a request could change.
func (e *env) snapshot() string {
	e.t.Helper()
	ctx := context.Background()
	orgs, err := e.store.ListOrgs(ctx)
	require.NoError(e.t, err)
	var b strings.Builder
	for _, o := range orgs {
		bal, err := e.store.Balance(ctx, o.Account())
		require.NoError(e.t, err)
		keys, err := e.store.ListKeys(ctx, o.ID, manage.KeyQuery{})
		require.NoError(e.t, err)
		j, _ := json.Marshal([]any{o, bal.Allocation, bal.Granted, bal.Spent, keys})
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

var testNow = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
