// Package tracing sets up OpenTelemetry from the standard OTEL_* variables alone, and carries a
// trace across NATS messages and CloudEvents (the distributed-tracing extension's traceparent and
// tracestate).
//
// Without OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// nothing is exported and the worker's tracer provider is OpenTelemetry's no-op one: spans cost
// next to nothing, and a command's traceparent still passes to its results.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator is the W3C trace context: traceparent and tracestate.
var Propagator = propagation.TraceContext{}

// Setup returns the tracer provider the OTEL_* variables ask for, whether it exports anything,
// and its shutdown (which flushes what is buffered). service is the default service.name
// (OTEL_SERVICE_NAME wins).
//
//   - OTEL_TRACES_EXPORTER: "otlp" (OTLP over HTTP, configured by OTEL_EXPORTER_OTLP_*),
//     "console" (JSON on standard output), or "none". Unset: "otlp" when an OTLP endpoint is
//     set, "none" otherwise.
//   - The sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), the resource
//     (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) and the batch processor (OTEL_BSP_*) are the
//     SDK's own.
func Setup(ctx context.Context, service string) (_ trace.TracerProvider, exporting bool, _ func(context.Context) error, _ error) {
	none := func(context.Context) error { return nil }
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	if exporter == "" && (os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		exporter = "otlp"
	}
	var exp sdktrace.SpanExporter
	var err error
	switch exporter {
	case "", "none":
		return noop.NewTracerProvider(), false, none, nil
	case "otlp":
		exp, err = otlptracehttp.New(ctx)
	case "console":
		exp, err = stdouttrace.New()
	default:
		return nil, false, none, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is none of otlp, console and none", exporter)
	}
	if err != nil {
		return nil, false, none, fmt.Errorf("OTEL_TRACES_EXPORTER %s: %w", exporter, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err == nil {
		res, err = resource.Merge(res, resource.Environment())
	}
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, false, none, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTextMapPropagator(Propagator)
	return tp, true, tp.Shutdown, nil
}

// Carrier reads and writes traceparent and tracestate in a map of header values.
type Carrier map[string][]string

// Get returns the first value of key.
func (c Carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c { // NATS header names are case-sensitive; W3C's are lower-case
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Set sets key to value.
func (c Carrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys.
func (c Carrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// Extract returns ctx carrying the remote span context of traceparent and tracestate; ctx
// unchanged when traceparent is empty or malformed.
func Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	c := Carrier{"traceparent": {traceparent}}
	if tracestate != "" {
		c["tracestate"] = []string{tracestate}
	}
	return Propagator.Extract(ctx, c)
}

// Inject returns the traceparent and tracestate of the span context in ctx, "" when it has none.
func Inject(ctx context.Context) (traceparent, tracestate string) {
	c := Carrier{}
	Propagator.Inject(ctx, c)
	return c.Get("traceparent"), c.Get("tracestate")
}
