package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/keyward/keyward/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// serveTelemetry installs the OpenTelemetry SDK for `keyward serve` and
// returns api wrapped for telemetry, and the GET /metrics handler: the
// Prometheus text format of a Prometheus reader. When the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or its _METRICS_ / _TRACES_ variant) is
// set, OTLP exporters send metrics and traces too, over gRPC or HTTP as
// OTEL_EXPORTER_OTLP_PROTOCOL says (otlpProtocol), configured by the other
// OTEL_* variables as the exporters read them; with traces, every request
// of api gets a server span (otelhttp, W3C trace context), under which
// keyward's spans go. OTEL_SDK_DISABLED=true installs nothing (and
// /metrics is empty). The returned function flushes and stops the
// exporters.
//
// No metric attribute comes from the request: otelhttp's server name is
// server (the address serve listens on), not the Host header, and its
// metrics keep only httpAttributes, so a client cannot make series.
func serveTelemetry(ctx context.Context, api http.Handler, server string) (http.Handler, http.Handler, func(context.Context) error, error) {
	reg := prometheus.NewRegistry()
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return api, metrics, func(context.Context) error { return nil }, nil
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("keyward")))
	if err != nil {
		return nil, nil, nil, err
	}
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil { // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		res, _ = resource.Merge(res, env)
	}
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, nil, err
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom), sdkmetric.WithView(httpMetricsView)}
	var shutdown []func(context.Context) error
	if otlpSet("METRICS") {
		exp, err := metricExporter(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	shutdown = append(shutdown, mp.Shutdown)
	cfg := telemetry.Config{MeterProvider: mp}
	if otlpSet("TRACES") {
		exp, err := traceExporter(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
		shutdown = append(shutdown, tp.Shutdown)
		cfg.TracerProvider = tp
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
		api = otelhttp.NewHandler(api, "keyward", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp),
			otelhttp.WithServerName(server))
	}
	if err := telemetry.Configure(cfg); err != nil {
		return nil, nil, nil, err
	}
	return api, metrics, func(ctx context.Context) error {
		var errs []error
		for _, f := range shutdown {
			errs = append(errs, f(ctx))
		}
		return errors.Join(errs...)
	}, nil
}

// httpAttributes are the attributes otelhttp's metrics keep: each has a
// few values that the server, not the client, decides (an unknown method
// is "_OTHER"; a route is a pattern of the server's muxes). The client's
// Host header (server.address, server.port) and anything otelhttp adds
// later are dropped.
var httpAttributes = []attribute.Key{
	semconv.HTTPRequestMethodKey, semconv.HTTPResponseStatusCodeKey, semconv.HTTPRouteKey, semconv.URLSchemeKey,
}

// httpMetricsView keeps only httpAttributes on otelhttp's metrics.
var httpMetricsView = sdkmetric.NewView(
	sdkmetric.Instrument{Scope: instrumentation.Scope{Name: otelhttp.ScopeName}},
	sdkmetric.Stream{AttributeFilter: attribute.NewAllowKeysFilter(httpAttributes...)},
)

// otlpProtocol returns the OTLP protocol of signal (METRICS or TRACES):
// its own OTEL_EXPORTER_OTLP_<signal>_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf, the specification's
// default. http/json, which Go's exporters do not speak, is an error.
func otlpProtocol(signal string) (string, error) {
	p := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	if p != "grpc" && p != "http/protobuf" {
		return "", fmt.Errorf("OTLP protocol %q (OTEL_EXPORTER_OTLP_PROTOCOL or OTEL_EXPORTER_OTLP_%s_PROTOCOL): keyward serve speaks grpc and http/protobuf", p, signal)
	}
	return p, nil
}

func metricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	switch p, err := otlpProtocol("METRICS"); {
	case err != nil:
		return nil, err
	case p == "grpc":
		return otlpmetricgrpc.New(ctx)
	}
	return otlpmetrichttp.New(ctx)
}

func traceExporter(ctx context.Context) (*otlptrace.Exporter, error) {
	switch p, err := otlpProtocol("TRACES"); {
	case err != nil:
		return nil, err
	case p == "grpc":
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

// otlpSet reports whether an OTLP endpoint is set for signal (METRICS or
// TRACES), by its own variable or the common one.
func otlpSet(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}
