package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dial opens a raw connection to the server.
func (s *server) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// closedWithin waits up to limit for the server to close conn, reading
// and discarding whatever it sends, and returns how long that took; ok is
// false if conn is still open at limit.
func closedWithin(conn net.Conn, limit time.Duration) (took time.Duration, ok bool) {
	began := time.Now()
	_ = conn.SetReadDeadline(began.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return limit, false
	}
	return time.Since(began), true
}

// within makes one request with a client that gives up after limit, and
// returns the answer's status and headers (zero when the client gave up)
// and how long it took.
func (s *server) within(t *testing.T, limit time.Duration, method, path, key, body string) (int, http.Header, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	began := time.Now()
	resp, err := (&http.Client{Timeout: limit}).Do(req)
	if err != nil {
		return 0, nil, time.Since(began)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header, time.Since(began)
}

// TestServeTimeouts: `keyward serve` with one-second bounds closes
// kept-alive connections that stay idle, stops reading a body sent too
// slowly by a client without a key (after answering it 401), and drops a
// connection whose headers do not arrive. Without the bounds all three
// stayed open as long as the client liked.
func TestServeTimeouts(t *testing.T) {
	c := newCLI(t)
	srv := c.serve("--idle-timeout", "1s", "--read-timeout", "1s", "--read-header-timeout", "1s")
	const limit = 4 * time.Second // the bound plus slack for a busy machine

	t.Run("idle connections", func(t *testing.T) {
		t.Parallel()
		const n = 50
		var wg sync.WaitGroup
		for range n {
			conn := srv.dial(t)
			wg.Go(func() {
				_, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: keyward\r\n\r\n")
				if !assert.NoError(t, err) {
					return
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.False(t, resp.Close, "kept alive")
				took, ok := closedWithin(conn, limit)
				assert.True(t, ok, "an idle connection is still open after %v", limit)
				assert.GreaterOrEqual(t, took, 900*time.Millisecond, "closed before the idle timeout")
			})
		}
		wg.Wait()
	})
	t.Run("slow unauthenticated body", func(t *testing.T) {
		t.Parallel()
		conn := srv.dial(t)
		_, err := io.WriteString(conn, "POST /v1/transactions/enrich HTTP/1.1\r\nHost: keyward\r\n"+
			"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		require.NoError(t, err)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a byte every 50 ms, as long as the server takes them
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(conn, " "); err != nil {
					return
				}
			}
		}()
		took, ok := closedWithin(conn, limit)
		if assert.True(t, ok, "a slow body is still being read after %v", limit) {
			t.Logf("a body sent at 20 bytes/s: connection closed after %v", took.Round(time.Millisecond))
		}
	})
	t.Run("headers that never end", func(t *testing.T) {
		t.Parallel()
		conn := srv.dial(t)
		_, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: keyward\r\n")
		require.NoError(t, err)
		_, ok := closedWithin(conn, limit)
		assert.True(t, ok, "a connection without complete headers is still open after %v", limit)
	})
}

// TestServeHeaderLimit: by default `keyward serve` refuses a header block
// over 64 KiB with 431 (net/http's default was 1 MiB) and serves one below.
func TestServeHeaderLimit(t *testing.T) {
	c := newCLI(t)
	srv := c.serve()
	for _, tc := range []struct {
		size int
		want int
	}{{32 << 10, http.StatusOK}, {80 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		r := srv.do(t, http.MethodGet, "/health", "", "", "X-Padding", strings.Repeat("a", tc.size))
		assert.Equal(t, tc.want, r.status, "a %d KiB header", tc.size>>10)
	}
}

// TestServeFrozenRedis: `keyward serve --redis` with Redis frozen (a
// partition, through the fault proxy) serves each request without a
// limit after at most --redis-timeout, where it used to wait about ten
// seconds; once Redis answers again the limit counts again.
func TestServeFrozenRedis(t *testing.T) {
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	require.NoError(t, err)
	if err := redis.NewClient(opts).Ping(context.Background()).Err(); err != nil {
		testenv.Unreachable(t, "Redis at "+opts.Addr, err)
	}
	proxy := testenv.NewProxy(t, opts.Addr)
	c := newCLI(t)
	org := c.org("--name", "acme", "--rate", "100000/min", "--rps", "1000")
	k := c.key(org, "--name", "production", "--permissions", "*")
	const timeout = 200 * time.Millisecond
	srv := c.serve("--redis", fmt.Sprintf("redis://%s/%d", proxy.Addr(), opts.DB), "--redis-timeout", timeout.String())
	r := srv.do(t, http.MethodGet, "/v1/categories", k.Key, "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.NotEmpty(t, r.header.Get("X-RateLimit-Limit"))

	proxy.BlackHole()
	var slowest time.Duration
	for range 10 {
		status, h, took := srv.within(t, 5*time.Second, http.MethodGet, "/v1/categories", k.Key, "")
		slowest = max(slowest, took)
		assert.Equal(t, http.StatusOK, status, "fail open")
		assert.Empty(t, h.Get("X-RateLimit-Limit"), "served without a limit")
	}
	t.Logf("Redis frozen: slowest request %v (--redis-timeout %v)", slowest.Round(time.Millisecond), timeout)
	assert.Less(t, slowest, timeout+300*time.Millisecond)
	proxy.Restore()
	require.Eventually(t, func() bool {
		return srv.do(t, http.MethodGet, "/v1/categories", k.Key, "").header.Get("X-RateLimit-Limit") != ""
	}, 5*time.Second, 50*time.Millisecond, "limited again once Redis answers")
}

// TestServeFrozenPostgres: `keyward serve` on PostgreSQL frozen (through
// the fault proxy) answers a charged call 503 after --db-timeout, where it
// used to hold it until the client gave up; once PostgreSQL answers again
// the call is served.
func TestServeFrozenPostgres(t *testing.T) {
	dsn := pgSchema(t)
	c := &cli{t: t, db: dsn}
	// Credits below what a lease is taken for (1,000): every charged call
	// needs the database. (A call a lease covers is served while the
	// database is frozen: sqlstore's TestPostgresCutUnderLeasedLoad.)
	org := c.org("--name", "acme", "--credits", "900", "--rate", "100000/min", "--rps", "1000")
	k := c.key(org, "--name", "production", "--permissions", "*")
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	const timeout = time.Second
	srv := c.serve("--db", u.String(), "--db-timeout", timeout.String())
	r := srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
	require.Equal(t, http.StatusOK, r.status, r.raw)

	proxy.BlackHole()
	status, _, took := srv.within(t, 10*time.Second, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
	t.Logf("PostgreSQL frozen: a charged call answered %d after %v (--db-timeout %v)", status, took.Round(time.Millisecond), timeout)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Less(t, took, timeout+time.Second)
	proxy.Restore()
	require.Eventually(t, func() bool {
		return srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody).status == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "served once PostgreSQL answers")
}

// pgSchema returns a DSN for a schema of its own on the test PostgreSQL,
// dropped when the test ends.
func pgSchema(t *testing.T) string {
	t.Helper()
	base := testenv.PostgresDSN(t)
	db, err := sql.Open("pgx", base)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		testenv.Unreachable(t, "PostgreSQL", err)
	}
	schema := "keyward_test_" + ids.New("")
	_, err = db.Exec(`CREATE SCHEMA ` + schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestServeBoundsMustBeBounds: a bound of zero or below, a write timeout
// as long as a credit reservation, and a database timeout of zero are
// usage errors, before anything is opened.
func TestServeBoundsMustBeBounds(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"serve", "--idle-timeout", "0"},
		{"serve", "--read-timeout", "-1s"},
		{"demo", "--read-header-timeout", "0"},
		{"serve", "--redis-timeout", "0"},
		{"serve", "--write-timeout", "5m"},
		{"serve", "--max-header-bytes", "0"},
		{"serve", "--forwarded-header", "X-Real-IP"},
		{"serve", "--trusted-proxy", "proxy.internal"},
		{"orgs", "list", "--db-timeout", "0"},
	} {
		_, errs, code := c.run(args...)
		assert.Equal(t, 2, code, "keyward %v: %s", args, errs)
		assert.Contains(t, errs, args[len(args)-2], "the error names the flag")
	}
}

// TestServePortInUse: the error says which address is taken and names
// --addr.
func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c := newCLI(t)
	_, errs, code := c.run("serve", "--addr", ln.Addr().String())
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, ln.Addr().String()+" is in use")
	assert.Contains(t, errs, "--addr")
}
