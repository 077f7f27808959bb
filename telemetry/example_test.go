package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/telemetry"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Report keyward's decisions through your SDK's providers, once, at start-up.
func ExampleConfigure() {
	// Your SDK's provider (or nil: the global one, otel.GetMeterProvider(),
	// once your SDK is installed). Here a reader to look at what it records.
	reader := sdkmetric.NewManualReader()
	err := telemetry.Configure(telemetry.Config{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		OrgAttribute:  true, // one series per organization, and an allocation each
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	// A request without a key: RequireAPIKey refuses it, and counts it.
	auth.Middleware(nil).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/categories", nil))

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == telemetry.MetricRequests {
				for _, p := range sum.DataPoints {
					outcome, _ := p.Attributes.Value("keyward.outcome")
					fmt.Println(m.Name, outcome.AsString(), p.Value)
				}
			}
		}
	}
	// Output:
	// keyward.requests missing_api_key 1
}
