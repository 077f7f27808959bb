package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// binary is the keyward command, built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyward-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "keyward")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building keyward:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the keyward command against one database.
type cli struct {
	t   *testing.T
	db  string
	env []string // besides the test's own environment
}

// newCLI returns a cli on a new database, made by `keyward init`.
func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{t: t, db: filepath.Join(t.TempDir(), "keyward.db")}
	_, errs, code := c.run("init")
	require.Equal(t, 0, code, "keyward init: %s", errs)
	return c
}

func (c *cli) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "KEYWARD_DB="+c.db, "KEYWARD_KEY_PREFIX=triq_"), c.env...)
	return cmd
}

// run runs the command and returns its stdout, stderr and exit status.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := c.cmd(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("keyward %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// json runs the command, which must succeed, and decodes its stdout.
func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out, errs, code := c.run(args...)
	require.Equal(c.t, 0, code, "keyward %v: %s", args, errs)
	require.NoError(c.t, json.Unmarshal([]byte(out), v), "stdout is one JSON document: %s", out)
}

type createdKey struct {
	ID   string `json:"id"`
	Key  string `json:"key"`
	Hint string `json:"hint"`
}

func (c *cli) org(args ...string) string {
	var org struct {
		ID string `json:"id"`
	}
	c.json(&org, append([]string{"orgs", "create", "--json"}, args...)...)
	require.NotEmpty(c.t, org.ID)
	return org.ID
}

func (c *cli) key(org string, args ...string) createdKey {
	var k createdKey
	c.json(&k, append([]string{"keys", "create", "--json", "--org", org}, args...)...)
	require.True(c.t, strings.HasPrefix(k.Key, "triq_"), "key %q", k.Key)
	return k
}

// server is `keyward serve` running on a free loopback port.
type server struct {
	cmd     *exec.Cmd
	base    string
	metrics string // the URL of /metrics
	logs    *bytes.Buffer
}

var addrLine = regexp.MustCompile(`addr=(http://127\.0\.0\.1:\d+).* metrics=(http://\S+)`)

// serve starts `keyward serve` with the flags given besides --addr.
func (c *cli) serve(flags ...string) *server {
	c.t.Helper()
	cmd := c.cmd(append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)...)
	stderr, err := cmd.StderrPipe()
	require.NoError(c.t, err)
	require.NoError(c.t, cmd.Start())
	s := &server{cmd: cmd, logs: &bytes.Buffer{}}
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			s.logs.WriteString(sc.Text() + "\n")
			if m := addrLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1:]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case m, ok := <-found:
		require.True(c.t, ok, "serve exited before listening")
		s.base, s.metrics = m[0], m[1]
	case <-time.After(30 * time.Second):
		c.t.Fatal("serve did not start")
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (s *server) do(t *testing.T, method, path, key, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (r response) reason(t *testing.T) string {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	require.True(t, ok, "an error envelope: %s", r.raw)
	d, _ := e["details"].(map[string]any)
	reason, _ := d["reason"].(string)
	return reason
}

func (r response) code(t *testing.T) string {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	require.True(t, ok, "an error envelope: %s", r.raw)
	assert.Equal(t, false, r.body["success"])
	assert.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"))
	return e["code"].(string)
}

const enrichBody = `{"title": "STARBUCKS STORE 1234 SEATTLE", "country": "US", "type": "expense"}`

func TestDemoAPIEndToEnd(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme", "--plan", "free", "--rps", "100") // the rate limits have their own subtest
	full := c.key(org, "--name", "production", "--permissions", "transactions:enrich,transactions:read")
	enrichOnly := c.key(org, "--name", "partner", "--permissions", "transactions:enrich")
	srv := c.serve()

	t.Run("health is public", func(t *testing.T) {
		r := srv.do(t, http.MethodGet, "/health", "", "")
		assert.Equal(t, http.StatusOK, r.status)
	})
	t.Run("unknown routes and methods get the envelope", func(t *testing.T) {
		r := srv.do(t, http.MethodGet, "/v1/nope", "", "")
		require.Equal(t, http.StatusNotFound, r.status, r.raw)
		assert.Equal(t, "route_not_found", r.reason(t))
		r = srv.do(t, http.MethodDelete, "/v1/categories", full.Key, "")
		require.Equal(t, http.StatusMethodNotAllowed, r.status, r.raw)
		assert.Equal(t, "method_not_allowed", r.reason(t))
		assert.Equal(t, "GET", r.header.Get("Allow"))
		assert.Contains(t, r.header.Get("Content-Type"), "application/json")
	})
	t.Run("missing and malformed keys", func(t *testing.T) {
		r := srv.do(t, http.MethodGet, "/v1/categories", "", "")
		require.Equal(t, http.StatusUnauthorized, r.status)
		assert.Equal(t, "authentication_error", r.code(t))
		assert.Equal(t, "missing_api_key", r.reason(t))
		r = srv.do(t, http.MethodGet, "/v1/categories", "sk_live_abc", "")
		assert.Equal(t, "invalid_api_key_format", r.reason(t))
		spoiled := full.Key[:len(full.Key)-1] + map[bool]string{true: "y", false: "x"}[strings.HasSuffix(full.Key, "x")]
		r = srv.do(t, http.MethodGet, "/v1/categories", spoiled, "")
		assert.Equal(t, "invalid_api_key", r.reason(t))
		assert.NotContains(t, r.raw, full.Key[:20])
	})
	t.Run("charged and uncharged calls", func(t *testing.T) {
		r := srv.do(t, http.MethodGet, "/v1/categories", full.Key, "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Empty(t, r.header.Get("X-Credits-Remaining"), "categories are free")
		assert.Equal(t, "100", r.header.Get("X-RateLimit-Limit"), "requests per second")

		r = srv.do(t, http.MethodPost, "/v1/transactions/enrich", full.Key, enrichBody)
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Equal(t, true, r.body["success"])
		assert.NotContains(t, r.body, "partial", "one success envelope: success, data, meta")
		data := r.body["data"].(map[string]any)
		assert.Equal(t, "food_and_drink", data["category"])
		assert.Equal(t, "99", r.header.Get("X-Credits-Remaining"))

		r = srv.do(t, http.MethodPost, "/v1/transactions/enrich", full.Key, `{"title": "", "country": "USA", "type": "gift"}`)
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		assert.Equal(t, "validation_error", r.code(t))
		fe := r.body["error"].(map[string]any)["details"].(map[string]any)["fieldErrors"].(map[string]any)
		assert.Contains(t, fe, "title")
		assert.Contains(t, fe, "country")
		assert.Contains(t, fe, "type")

		r = srv.do(t, http.MethodGet, "/v1/usage", full.Key, "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		credits := r.body["data"].(map[string]any)["credits"].(map[string]any)
		assert.Equal(t, 99.0, credits["remaining"], "the 422 was not charged")
		assert.Equal(t, 1.0, credits["spent"])

		r = srv.do(t, http.MethodGet, "/v1/transactions", full.Key, "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Len(t, r.body["data"], 1)
	})
	t.Run("request ids of successes follow the error writer's rule", func(t *testing.T) {
		meta := func(r response) string {
			m, _ := r.body["meta"].(map[string]any)
			id, _ := m["requestId"].(string)
			return id
		}
		r := srv.do(t, http.MethodGet, "/v1/categories", full.Key, "", "X-Request-Id", "req_abc-1.2")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Equal(t, "req_abc-1.2", meta(r), "a sane id is echoed")
		assert.Equal(t, "req_abc-1.2", r.header.Get("X-Request-Id"), "in the header too, as on failures")
		r = srv.do(t, http.MethodGet, "/v1/categories", full.Key, "", "X-Request-Id", "<b>hi</b>")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, meta(r),
			"anything else is replaced by a UUID, as in an error's meta")
		assert.Equal(t, meta(r), r.header.Get("X-Request-Id"))
	})
	t.Run("permissions", func(t *testing.T) {
		r := srv.do(t, http.MethodGet, "/v1/transactions", enrichOnly.Key, "")
		require.Equal(t, http.StatusForbidden, r.status)
		assert.Equal(t, "authorization_error", r.code(t))
		assert.Equal(t, []any{"transactions:read"}, r.body["error"].(map[string]any)["details"].(map[string]any)["missing"])
	})
	t.Run("credits exhausted", func(t *testing.T) {
		poor := c.org("--name", "poor", "--credits", "2", "--rps", "100")
		k := c.key(poor, "--name", "production", "--permissions", "*")
		for i := range 2 {
			r := srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
			require.Equal(t, http.StatusOK, r.status, "call %d: %s", i, r.raw)
		}
		r := srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
		require.Equal(t, http.StatusPaymentRequired, r.status, r.raw)
		assert.Equal(t, "insufficient_credits", r.code(t))
		// A grant through the command line makes it work again.
		_, errs, code := c.run("credits", "grant", poor, "5")
		require.Equal(t, 0, code, errs)
		r = srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
		require.Equal(t, http.StatusOK, r.status, r.raw)
		assert.Equal(t, "4", r.header.Get("X-Credits-Remaining"))
	})
	t.Run("the third call in a second, and the 6th in a minute", func(t *testing.T) {
		busy := c.org("--name", "busy", "--plan", "free")
		k := c.key(busy, "--name", "production", "--permissions", "*")
		first := srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
		require.Equal(t, http.StatusOK, first.status)
		assert.Equal(t, "1", first.header.Get("X-RateLimit-Limit"))
		assert.Equal(t, "2", first.header.Get("X-RateLimit-Concurrency-Limit"))
		reset, err := time.Parse(time.RFC3339, first.header.Get("X-RateLimit-Reset"))
		require.NoError(t, err, "X-RateLimit-Reset is ISO-8601")
		assert.WithinDuration(t, time.Now().Add(time.Second), reset, 2*time.Second)
		second := srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
		require.Equal(t, http.StatusOK, second.status, "free: a burst of 2, its in-flight cap: %s", second.raw)
		last := srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
		require.Equal(t, http.StatusTooManyRequests, last.status, last.raw)
		assert.Equal(t, "rate_limited", last.code(t))
		assert.Equal(t, "1", last.header.Get("Retry-After"))
		assert.Equal(t, "rps", last.header.Get("X-RateLimit-Scope"))
		assert.Equal(t, "0", last.header.Get("X-RateLimit-Remaining"))

		quota := c.org("--name", "quota", "--rps", "100", "--rate", "5/min")
		k = c.key(quota, "--name", "production", "--permissions", "*")
		for i := range 5 {
			r := srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
			require.Equal(t, http.StatusOK, r.status, "call %d: %s", i, r.raw)
		}
		last = srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
		require.Equal(t, http.StatusTooManyRequests, last.status, last.raw)
		assert.Equal(t, "rpm", last.header.Get("X-RateLimit-Scope"))
		assert.Contains(t, last.raw, "Maximum 5 requests per minute")
		assert.Equal(t, "5", last.header.Get("X-RateLimit-Limit"), "the limit that refused")
		assert.Equal(t, "0", last.header.Get("X-RateLimit-Remaining"), "not the bucket's 99")
	})
	t.Run("revocation while serving", func(t *testing.T) {
		k := c.key(org, "--name", "doomed", "--permissions", "*")
		require.Equal(t, http.StatusOK, srv.do(t, http.MethodGet, "/v1/usage", k.Key, "").status)
		_, errs, code := c.run("keys", "revoke", k.ID)
		require.Equal(t, 0, code, errs)
		revoked := time.Now()
		for {
			r := srv.do(t, http.MethodGet, "/v1/usage", k.Key, "")
			if r.status == http.StatusUnauthorized {
				assert.Equal(t, "revoked_api_key", r.reason(t))
				t.Logf("revocation through the command seen by the server after %v", time.Since(revoked).Round(time.Millisecond))
				break
			}
			require.Less(t, time.Since(revoked), 2*time.Second, "the server still accepts a revoked key")
			time.Sleep(20 * time.Millisecond)
		}
	})
	// Last before shutdown: the invented keys put this client over its failed-auth budget,
	// and its next key not yet cached would wait too.
	t.Run("invented keys are throttled per client", func(t *testing.T) {
		format, err := keyward.NewKeyFormat("triq_")
		require.NoError(t, err)
		codes := map[int]int{}
		for range 30 {
			invented, err := format.Generate()
			require.NoError(t, err)
			codes[srv.do(t, http.MethodGet, "/v1/categories", invented, "").status]++
		}
		assert.GreaterOrEqual(t, codes[http.StatusTooManyRequests], 15, "the default budget lets 10 through at once: %v", codes)
	})
	t.Run("graceful shutdown", func(t *testing.T) {
		require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
		done := make(chan error, 1)
		go func() { done <- srv.cmd.Wait() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "exit status 0; logs:\n%s", srv.logs)
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop on SIGTERM")
		}
		for _, k := range []string{full.Key, enrichOnly.Key} {
			assert.NotContains(t, srv.logs.String(), k, "keys never reach the log")
		}
	})
	// Usage was flushed at shutdown: the key shows a last-used time.
	var keys []struct {
		ID         string  `json:"id"`
		LastUsedAt *string `json:"lastUsedAt"`
		Hint       string  `json:"hint"`
	}
	c.json(&keys, "keys", "list", "--org", org, "--json")
	for _, k := range keys {
		if k.ID == full.ID {
			assert.NotNil(t, k.LastUsedAt, "usage flushed at shutdown")
			assert.Equal(t, full.Hint, k.Hint)
		}
	}
}

func TestScan(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	k := c.key(org, "--name", "leaky")
	dir := t.TempDir()
	bad := k.Key[:len(k.Key)-1] + map[bool]string{true: "b", false: "a"}[k.Key[len(k.Key)-1] == 'a']
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.env"), []byte("# settings\nAPI_KEY="+k.Key+"\nOTHER="+bad+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.md"), []byte("nothing here but triq_ and "+bad+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blob.bin"), append([]byte{0, 1, 2}, []byte(k.Key)...), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".git"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".git", "ORIG"), []byte(k.Key), 0o600))

	out, errs, code := c.run("scan", dir)
	assert.Equal(t, 1, code, "keys found: exit 1")
	assert.Equal(t, filepath.Join(dir, "config.env")+":2: "+k.Hint+"\n", out, "one report, with the hint")
	assert.NotContains(t, out+errs, k.Key, "the whole key is never printed")
	assert.Contains(t, errs, "1 key(s) found")

	require.NoError(t, os.Remove(filepath.Join(dir, "config.env")))
	out, _, code = c.run("scan", dir)
	assert.Equal(t, 0, code, "a bad checksum is not a key: %s", out)
	assert.Empty(t, out)
}

func TestCommandErrors(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"orgs", "create"}, 2}, // --name missing
		{[]string{"orgs", "create", "--name", "a", "--rate", "fast"}, 2},
		{[]string{"keys", "revoke"}, 2},                                      // KEY_ID missing
		{[]string{"keys", "create", "--bogus"}, 2},                           // unknown flag
		{[]string{"nonsense"}, 2},                                            // unknown command
		{[]string{"credits", "grant", "org_x", "-5"}, 2},                     // N must be positive
		{[]string{"keys", "revoke", "key_nope"}, 1},                          // a failure, not a usage error
		{[]string{"orgs", "create", "--name", "a", "--plan", "platinum"}, 2}, // a flag's value
		{[]string{"--db", "mysql://x", "orgs", "list"}, 1},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, tc.code, code, "keyward %v: %s", tc.args, errs)
		assert.True(t, strings.HasPrefix(errs, "keyward: "), "errors go to stderr: %q", errs)
	}
	var orgs []map[string]any
	c.json(&orgs, "orgs", "list", "--json")
	assert.Empty(t, orgs, "failed commands created nothing")
	out, _, code := c.run("orgs", "list")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "ID")
}
