package consumer

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// TestTracing: a capture carrying a traceparent, in the CloudEvents extension or in the W3C
// header of the NATS message, is worked on in a span that continues its trace, with its record
// writes, its API call (an HTTP client span) and its publish as children; its result carries the
// span's traceparent, and its log lines the trace's ids.
func TestTracing(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	api, err := frontpay.New(h.sb.URL, testToken, frontpay.WithTimeout(apiTimeout),
		frontpay.WithHTTPClient(&http.Client{Transport: otelhttp.NewTransport(frontpay.DefaultTransport(), otelhttp.WithTracerProvider(tp))}))
	if err != nil {
		t.Fatal(err)
	}
	var logs testworld.SyncBuffer
	w := h.newWorker("traced", func(c *Config) {
		c.Tracer = tp
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	w.api = api
	h.run(w)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, viaHeader := range []bool{false, true} {
		parent := "00-" + traceID + "-00f067aa0ba902b7-01"
		if viaHeader {
			parent = "00-" + traceID + "-b7ad6b7169203331-01"
		}
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "traced"), func(e *schemas.Event) {
			if !viaHeader {
				e.Traceparent = parent
			}
		})
		m := nats.NewMsg(schemas.CommandSubject("", c.Op))
		m.Data = c.Raw
		m.Header.Set(jetstream.MsgIDHeader, c.ID)
		if viaHeader {
			m.Header.Set("traceparent", parent)
		}
		testworld.Publish(t, h.js, m)
		res := h.resultOf(t, c)
		success(t, res)

		var root sdktrace.ReadOnlySpan
		testworld.WaitFor(t, func() bool {
			for _, s := range rec.Ended() {
				if s.Name() == "frontpay.command reservation.capture" && s.Parent().SpanID().String() == parent[36:52] {
					root = s
					return true
				}
			}
			return false
		}, "the command's span, a child of "+parent)
		if root.SpanContext().TraceID().String() != traceID {
			t.Errorf("the command's span is in trace %s, want %s", root.SpanContext().TraceID(), traceID)
		}
		if want := "00-" + traceID + "-" + root.SpanContext().SpanID().String() + "-01"; res.Event.Traceparent != want {
			t.Errorf("the result carries traceparent %q, want the command's span's %q", res.Event.Traceparent, want)
		}
		var children []string
		for _, s := range rec.Ended() {
			if s.Parent().SpanID() == root.SpanContext().SpanID() {
				children = append(children, s.Name())
			}
		}
		for _, want := range []string{"frontpay.record sending", "frontpay.record succeeded", "frontpay.publish", "HTTP POST"} {
			if !slices.ContainsFunc(children, func(n string) bool { return strings.HasPrefix(n, want) }) {
				t.Errorf("no %s span under the command's: %v", want, children)
			}
		}
		if !strings.Contains(logs.String(), "trace_id="+traceID) {
			t.Errorf("the logs do not carry the trace id:\n%s", logs.String())
		}
	}
}

// TestNoTracer: without a tracer, the result carries the command's own traceparent.
func TestNoTracer(t *testing.T) {
	t.Parallel()
	h := setup(t)
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": h.paid(t).UUID},
		func(e *schemas.Event) { e.Traceparent = parent })
	if got := h.resultOf(t, c).Event.Traceparent; got != parent {
		t.Errorf("the result carries %q, want the command's %q", got, parent)
	}
}
