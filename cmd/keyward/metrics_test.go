package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sample is one line of the Prometheus text format: a name, its labels
// and its value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads the server's /metrics.
func (s *server) scrape(t *testing.T) (string, []sample) {
	t.Helper()
	resp, err := http.Get(s.metrics)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out []sample
	for _, line := range strings.Split(string(body), "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err, line)
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		out = append(out, sample{m[1], labels, v})
	}
	return string(body), out
}

// value sums the samples of name whose labels include want.
func value(samples []sample, name string, want map[string]string) float64 {
	var sum float64
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && s.labels[k] == v
		}
		if ok {
			sum += s.value
		}
	}
	return sum
}

// TestServeMetrics: a real `keyward serve` answers a scripted sequence
// (ok, 401, 403, 429, 402) and its /metrics counts each, in the
// Prometheus text format, without any key or key id.
func TestServeMetrics(t *testing.T) {
	c := newCLI(t)
	limited := c.org("--name", "limited", "--plan", "free", "--rps", "1")
	poor := c.org("--name", "poor", "--plan", "free", "--rps", "100", "--credits", "1")
	keyA := c.key(limited, "--name", "a", "--permissions", "transactions:enrich")
	readOnly := c.key(limited, "--name", "r", "--permissions", "transactions:read")
	keyB := c.key(poor, "--name", "b", "--permissions", "transactions:enrich")
	srv := c.serve()

	status := map[int]int{}
	do := func(key string) int {
		r := srv.do(t, http.MethodPost, "/v1/transactions/enrich", key, enrichBody)
		status[r.status]++
		return r.status
	}
	require.Equal(t, http.StatusOK, do(keyA.Key))
	for i := 0; i < 10 && status[http.StatusTooManyRequests] == 0; i++ {
		do(keyA.Key) // a burst of 2 at 1 request/s: a third within the second is refused
	}
	require.NotZero(t, status[http.StatusTooManyRequests])
	require.Equal(t, http.StatusUnauthorized, do(""))
	require.Equal(t, http.StatusForbidden, do(readOnly.Key))
	require.Equal(t, http.StatusOK, do(keyB.Key))
	require.Equal(t, http.StatusPaymentRequired, do(keyB.Key))

	body, samples := srv.scrape(t)
	const requests = "keyward_requests_total"
	count := func(handler, outcome string) int {
		return int(value(samples, requests, map[string]string{"keyward_handler": handler, "keyward_outcome": outcome}))
	}
	valid := status[http.StatusOK] + status[http.StatusTooManyRequests] + status[http.StatusForbidden] + status[http.StatusPaymentRequired]
	require.Equal(t, valid, count("auth", "ok"), body)
	require.Equal(t, 1, count("auth", "missing_api_key"), body)
	require.Equal(t, 1, count("permissions", "missing_permissions"), body)
	require.Equal(t, status[http.StatusTooManyRequests], int(value(samples, requests, map[string]string{
		"keyward_handler": "rate_limit", "keyward_outcome": "rate_limited", "keyward_rate_limit_scope": "rps"})), body)
	require.Equal(t, 1, count("credits", "insufficient_credits"), body)
	require.Equal(t, status[http.StatusOK], count("credits", "ok"), body)
	require.Equal(t, float64(status[http.StatusOK]), value(samples, "keyward_credits_committed_total", nil), body)
	require.NotZero(t, value(samples, "keyward_key_lookups_total", map[string]string{"keyward_result": "miss"}), body)
	require.Contains(t, body, "# TYPE keyward_key_store_duration_seconds histogram")
	for _, k := range []createdKey{keyA, readOnly, keyB} {
		require.NotContains(t, body, k.Key)
		require.NotContains(t, body, k.ID, "no key id on metrics")
	}
	require.NotContains(t, body, limited, "no organization id without the opt-in")
	for _, k := range []createdKey{keyA, readOnly, keyB} {
		require.NotContains(t, srv.logs.String(), k.Key)
	}
}

// TestMetricsCannotBeInflated: with traces on (otelhttp around the API),
// 1,000 requests with distinct Host headers and paths add no series to
// /metrics. otelhttp put the Host header on its metrics
// (server.address, server.port): each new value was a new series.
func TestMetricsCannotBeInflated(t *testing.T) {
	c := newCLI(t)
	c.env = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + newCollector().serveHTTP(t) + "/v1/traces"}
	srv := c.serve()
	get := func(host, path string) {
		req, err := http.NewRequest(http.MethodGet, srv.base+path, nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	get(strings.TrimPrefix(srv.base, "http://"), "/first") // the series a request of this kind makes
	body, before := srv.scrape(t)
	require.Contains(t, body, "http_server_request_duration_seconds", "otelhttp's metrics are on")
	const n = 1000
	for i := range n {
		get(fmt.Sprintf("h%d.example:%d", i, 1024+i), fmt.Sprintf("/p/%d", i))
	}
	body, after := srv.scrape(t)
	require.Equal(t, len(before), len(after), "no series made by the requests' Host or path:\n%s", body)
	require.Equal(t, float64(n+1), value(after, "http_server_request_duration_seconds_count", nil), body)
	require.NotContains(t, body, "h1.example")
}

// TestServeMetricsAddr: --metrics-addr serves /metrics on a listener of
// its own, and the API's listener no longer does.
func TestServeMetricsAddr(t *testing.T) {
	c := newCLI(t)
	srv := c.serve("--metrics-addr", "127.0.0.1:0")
	require.NotEqual(t, srv.base+"/metrics", srv.metrics)
	body, _ := srv.scrape(t)
	require.Contains(t, body, "target_info")
	r := srv.do(t, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusNotFound, r.status, r.raw)
}
