package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP receiver: the names of the metrics and spans it
// was sent.
type collector struct {
	colmetrics.UnimplementedMetricsServiceServer
	mu      sync.Mutex
	metrics map[string]bool
	spans   map[string]bool
}

func newCollector() *collector {
	return &collector{metrics: map[string]bool{}, spans: map[string]bool{}}
}

func (c *collector) Export(_ context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				c.metrics[m.GetName()] = true
			}
		}
	}
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

// traces is the trace service: Export is taken by the metrics one.
type traces struct {
	coltrace.UnimplementedTraceServiceServer
	c *collector
}

func (t traces) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				t.c.spans[s.GetName()] = true
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) has(metric, span string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.metrics[metric] && c.spans[span]
}

// serveGRPC runs c as an OTLP/gRPC receiver and returns its endpoint.
func (c *collector) serveGRPC(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(srv, c)
	coltrace.RegisterTraceServiceServer(srv, traces{c: c})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String()
}

// serveHTTP runs c as an OTLP/HTTP (protobuf) receiver and returns its
// endpoint.
func (c *collector) serveHTTP(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req colmetrics.ExportMetricsServiceRequest
		if body, err := io.ReadAll(r.Body); err != nil || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = c.Export(r.Context(), &req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req coltrace.ExportTraceServiceRequest
		if body, err := io.ReadAll(r.Body); err != nil || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = traces{c: c}.Export(r.Context(), &req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestServeExportsOTLP: with the standard OTEL_* variables, `keyward
// serve` sends its metrics and spans to an OTLP receiver over gRPC or
// HTTP, as OTEL_EXPORTER_OTLP_PROTOCOL says; a protocol it does not speak
// stops it with an error that names the variable.
func TestServeExportsOTLP(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(protocol, "/", "-"), func(t *testing.T) {
			c := newCLI(t)
			col := newCollector()
			endpoint := col.serveHTTP(t)
			if protocol == "grpc" {
				endpoint = col.serveGRPC(t)
			}
			org := c.org("--name", "o", "--plan", "free")
			k := c.key(org, "--name", "k", "--permissions", "transactions:enrich")
			c.env = []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_METRIC_EXPORT_INTERVAL=100", "OTEL_BSP_SCHEDULE_DELAY=50"}
			srv := c.serve()
			require.Equal(t, http.StatusOK, srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody).status)
			require.Eventually(t, func() bool { return col.has("keyward.requests", "keyward.ledger.reserve") }, 10*time.Second, 20*time.Millisecond,
				"keyward's metrics and its spans under the request's reached the receiver")
		})
	}

	c := newCLI(t)
	c.env = []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"}
	_, errs, code := c.run("serve", "--addr", "127.0.0.1:0")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, `OTLP protocol "http/json"`)
	require.Contains(t, errs, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
}
