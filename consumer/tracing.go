package consumer

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nordpay/frontpay-worker/internal/tracing"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Tracing. Each delivery of a command is a span, "frontpay.command <op>", a child of the trace the
// command carries (the CloudEvents traceparent extension, or the W3C traceparent header of the
// NATS message). Under it: the wait for its turn, the waits for a retry, each record write, the
// API calls (HTTP client spans, from the client's transport), the read-back and the publish. Its
// result events carry the span's traceparent. Without Config.Tracer no span is made, and results
// carry the command's own traceparent.

const tracerName = "github.com/nordpay/frontpay-worker/consumer"

// traceTask starts the span of a delivery, as a child of the trace the command carries.
func (w *Worker) traceTask(t *task) {
	tp, ts := "", ""
	if t.cmd != nil {
		tp, ts = t.cmd.Traceparent, t.cmd.Tracestate
	}
	if tp == "" {
		h := tracing.Carrier(t.msg.Headers())
		tp, ts = h.Get("traceparent"), h.Get("tracestate")
	}
	t.ctx = tracing.Extract(context.Background(), tp, ts)
	if w.cfg.Tracer == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", t.msg.Subject()),
		attribute.Int64("messaging.nats.stream_sequence", int64(t.seq)),
		attribute.String("frontpay.operation", string(t.op)),
	}
	if w.cfg.Merchant != "" {
		attrs = append(attrs, attribute.String("frontpay.merchant", w.cfg.Merchant))
	}
	if t.cmd != nil {
		attrs = append(attrs, attribute.String("messaging.message.id", t.cmd.ID), attribute.String("frontpay.idempotency_key", t.cmd.Key))
	}
	t.ctx, t.span = w.cfg.Tracer.Tracer(tracerName).Start(t.ctx, "frontpay.command "+string(t.op),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	if t.resource != "" {
		_, t.waiting = w.child(t.ctx, "frontpay.wait_for_turn")
	}
}

// child starts a span under ctx's, with the same tracer; a no-op span without one.
func (w *Worker) child(ctx context.Context, name string) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, name)
}

// within returns ctx carrying the delivery's span, so that the spans of its work are its children.
func (t *task) within(ctx context.Context) context.Context {
	if t.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, t.span)
}

// waited ends the span of the wait the task was in, if any.
func (t *task) waited() {
	if t.waiting != nil {
		t.waiting.End()
		t.waiting = nil
	}
}

// endTrace ends the delivery's span, with what became of it.
func (t *task) endTrace(outcome string, err error) {
	t.waited()
	if t.span == nil {
		return
	}
	t.span.SetAttributes(attribute.String("frontpay.delivery", outcome))
	if err != nil {
		t.span.SetStatus(codes.Error, err.Error())
	}
	t.span.End()
}

// traced stamps an event with the traceparent of the delivery's span (the command's own without
// tracing).
func (t *task) traced(ev *schemas.Event) {
	ev.Traceparent, ev.Tracestate = tracing.Inject(t.ctx)
}
