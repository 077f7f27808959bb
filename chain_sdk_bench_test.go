package keyward_test

import (
	"testing"

	"github.com/keyward/keyward/telemetry"
	promclient "github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkFullChainSDK is BenchmarkFullChain with the OpenTelemetry SDK
// installed and a Prometheus reader (on a registry of its own) attached:
// what a host that scrapes keyward pays.
func BenchmarkFullChainSDK(b *testing.B) {
	exp, err := otelprom.New(otelprom.WithRegisterer(promclient.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	if err := telemetry.Configure(telemetry.Config{MeterProvider: mp}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = telemetry.Configure(telemetry.Config{}) })
	h, r := fullChain(b)
	runChain(b, h, r)
}
