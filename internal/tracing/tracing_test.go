package tracing

import (
	"context"
	"strings"
	"testing"
)

func TestSetupFromTheEnvironment(t *testing.T) {
	for _, name := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(name, "")
	}
	tp, exporting, shutdown, err := Setup(t.Context(), "test")
	if err != nil || exporting {
		t.Fatalf("no OTEL_* variable: exporting %v, %v", exporting, err)
	}
	if _, span := tp.Tracer("t").Start(t.Context(), "s"); span.IsRecording() {
		t.Error("without OTEL_* variables spans record")
	}
	_ = shutdown(t.Context())

	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	tp, exporting, shutdown, err = Setup(t.Context(), "test")
	if err != nil || !exporting {
		t.Fatalf("console: exporting %v, %v", exporting, err)
	}
	if _, span := tp.Tracer("t").Start(t.Context(), "s"); !span.IsRecording() {
		t.Error("with an exporter spans do not record")
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}

	t.Setenv("OTEL_TRACES_EXPORTER", "jaeger")
	if _, _, _, err := Setup(t.Context(), "test"); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("an unknown exporter: %v", err)
	}
}

func TestExtractInject(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got, state := Inject(Extract(context.Background(), tp, "vendor=1"))
	if got != tp || state != "vendor=1" {
		t.Errorf("round trip: %q %q", got, state)
	}
	if got, _ := Inject(Extract(context.Background(), "not-a-traceparent", "")); got != "" {
		t.Errorf("a malformed traceparent gave %q", got)
	}
	if got := (Carrier{"Traceparent": {tp}}).Get("traceparent"); got != tp {
		t.Errorf("a header in another case: %q", got)
	}
}
