package main

import (
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
	resp, err := http.Get(s.base + "/metrics")
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
