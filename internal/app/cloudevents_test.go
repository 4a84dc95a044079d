package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cejetstream "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// TestCloudEventsSDK drives the whole worker with commands that the official CloudEvents Go SDK
// publishes, in binary mode (its default) and in structured mode, and reads the results back
// with the SDK: both modes mean the same command, and results stay structured.
func TestCloudEventsSDK(t *testing.T) {
	sb := newSandbox(t)
	m := startMain(t, sb.URL)
	nc, js := testworld.Connect(t, m.NATSURL)
	results := watchResults(t, nc)
	sdk := &ceSender{t: t, nc: nc}

	// A reservation submitted in binary mode, its details read in structured mode.
	sdk.send(frontpay.ReservationSubmit, false, ceCommand(t, frontpay.ReservationSubmit, "submit-1", testworld.SubmitData()))
	var submitted frontpay.SubmitReservationResult
	results.success(t, "submit-1", &submitted)
	if err := sb.Pay(submitted.ReservationUUID); err != nil {
		t.Fatal(err)
	}
	uuid := submitted.ReservationUUID
	sdk.send(frontpay.ReservationDetails, true, ceCommand(t, frontpay.ReservationDetails, "details-1", map[string]any{"reservationUuid": uuid}))
	var details frontpay.Reservation
	results.success(t, "details-1", &details)
	line := details.ProductList[0].ID

	// A capture and a complete in binary mode, published back to back: the sequencer reads the
	// binary capture's reservation too, so the capture takes effect first.
	capture := map[string]any{"reservationUuid": uuid, "products": []any{map[string]any{"id": line, "amount": 60}}, "grandTotal": 60}
	first := ceCommand(t, frontpay.ReservationCapture, "capture-1", capture)
	sdk.send(frontpay.ReservationCapture, false, first)
	sdk.send(frontpay.ReservationComplete, false, ceCommand(t, frontpay.ReservationComplete, "complete-1", map[string]any{"reservationUuid": uuid, "note": "delivered"}))
	var captured frontpay.PaymentResult
	capturedEvent := results.success(t, "capture-1", &captured)
	results.success(t, "complete-1", nil)

	// The same capture (same key, same data) as a new structured event: the worker takes it for
	// the command it already answered, so both modes carry the same key and data.
	again := ceCommand(t, frontpay.ReservationCapture, "capture-1", capture)
	sdk.send(frontpay.ReservationCapture, true, again)
	testworld.WaitFor(t, func() bool { return len(results.byKey("capture-1")) == 2 }, "the capture's result again")
	if both := results.byKey("capture-1"); both[1].ID() != capturedEvent.ID() {
		t.Errorf("the structured copy got %s, want the binary capture's result %s", both[1].ID(), capturedEvent.ID())
	}
	captures := 0
	for _, e := range sb.Ledger() {
		if e.Op == string(frontpay.ReservationCapture) && e.UUID == uuid {
			captures++
		}
	}
	if captures != 1 {
		t.Errorf("%d captures at the API, want 1", captures)
	}

	// A binary command whose body is not JSON although its content type says so: an
	// invalid_command failure that carries the body and the trace context.
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	bad := ceCommand(t, frontpay.ReservationCapture, "bad-1", nil)
	bad.SetExtension("traceparent", traceparent)
	body := []byte(`{"reservationUuid": "` + uuid + `", grandTotal: 5`)
	if err := bad.SetData(cloudevents.ApplicationJSON, body); err != nil {
		t.Fatal(err)
	}
	sdk.send(frontpay.ReservationCapture, false, bad)
	failure := results.failure(t, "bad-1")
	var command struct {
		ID          string `json:"id"`
		Traceparent string `json:"traceparent"`
		DataBase64  []byte `json:"data_base64"`
	}
	if err := json.Unmarshal(failure.Command, &command); err != nil {
		t.Fatal(err)
	}
	if failure.Reason != schemas.InvalidCommand || command.ID != bad.ID() || command.Traceparent != traceparent || !bytes.Equal(command.DataBase64, body) {
		t.Errorf("failure %s %s, command %s", failure.Reason, failure.Message, failure.Command)
	}

	// A binary message whose attributes cannot be read is a dead letter, bytes and headers kept.
	garbled := nats.NewMsg(schemas.CommandSubject("", frontpay.ReservationCapture))
	garbled.Header.Set("ce-specversion", "1.0")
	garbled.Header.Set("ce-id", "bad-\xff")
	garbled.Data = []byte(`{"reservationUuid": "` + uuid + `"}`)
	if _, err := js.PublishMsg(t.Context(), garbled); err != nil {
		t.Fatal(err)
	}
	deadLetters, err := js.Stream(t.Context(), consumer.Topology{}.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	var dead *jetstream.RawStreamMsg
	testworld.WaitFor(t, func() bool {
		dead, err = deadLetters.GetLastMsgForSubject(t.Context(), schemas.DeadLetterSubject("", garbled.Subject))
		return err == nil
	}, "the dead letter")
	if !bytes.Equal(dead.Data, garbled.Data) || dead.Header.Get("ce-id") != "bad-\xff" || dead.Header.Get(publisher.HeaderDeadLetterReason) == "" {
		t.Errorf("dead letter %q %v", dead.Data, dead.Header)
	}
}

// ceCommand is a command event of op made with the SDK. data nil leaves it without data.
func ceCommand(t *testing.T, op frontpay.Operation, key string, data any) cloudevents.Event {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID(schemas.NewID())
	e.SetSource("shop/checkout")
	e.SetType(schemas.CommandSubject("", op))
	e.SetTime(time.Now())
	e.SetExtension("idempotencykey", key)
	e.SetExtension("correlationid", "order-88412")
	if data != nil {
		if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// ceSender publishes events with the SDK's NATS JetStream binding.
type ceSender struct {
	t  *testing.T
	nc *nats.Conn
}

// send publishes e on the command subject of op, in structured mode or in the SDK's default,
// binary mode.
func (s *ceSender) send(op frontpay.Operation, structured bool, e cloudevents.Event) {
	s.t.Helper()
	sender, err := cejetstream.NewSenderFromConn(s.nc, consumer.Topology{}.CommandStream(), schemas.CommandSubject("", op), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	client, err := cloudevents.NewClient(sender)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx := s.t.Context()
	if structured {
		ctx = binding.WithForceStructured(ctx)
	}
	if res := client.Send(ctx, e); !cloudevents.IsACK(res) {
		s.t.Fatalf("send %s: %v", op, res)
	}
}

// ceResults holds every result event published, read with the SDK.
type ceResults struct {
	mu     sync.Mutex
	events []cloudevents.Event
	err    error
}

// watchResults reads every result published from now on and checks that each is a structured
// CloudEvent: Content-Type application/cloudevents+json and no ce- header.
func watchResults(t *testing.T, nc *nats.Conn) *ceResults {
	r := &ceResults{}
	for _, subject := range []string{"*.*.succeeded", "*.*.failed"} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			msg := cejetstream.NewMessage(m)
			e, err := binding.ToEvent(context.Background(), msg)
			r.mu.Lock()
			defer r.mu.Unlock()
			switch {
			case msg.ReadEncoding() != binding.EncodingStructured || m.Header.Get("Content-Type") != publisher.ContentType:
				r.err = fmt.Errorf("a result not in structured mode on %s: %v", m.Subject, m.Header)
			case err != nil:
				r.err = err
			default:
				r.events = append(r.events, *e)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// byKey returns the results of idempotency key key, in the order they came.
func (r *ceResults) byKey(key string) []cloudevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []cloudevents.Event
	for _, e := range r.events {
		if k, _ := e.Extensions()["idempotencykey"].(string); k == key {
			out = append(out, e)
		}
	}
	return out
}

// await returns the first result of key, failing t on a result that was not a structured event.
func (r *ceResults) await(t *testing.T, key string) cloudevents.Event {
	t.Helper()
	var e cloudevents.Event
	testworld.WaitFor(t, func() bool {
		r.mu.Lock()
		err := r.err
		r.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		got := r.byKey(key)
		if len(got) > 0 {
			e = got[0]
		}
		return len(got) > 0
	}, "the result of "+key)
	if err := e.Validate(); err != nil {
		t.Fatalf("result of %s: %v", key, err)
	}
	return e
}

// success waits for the succeeded result of key and decodes its response into v (unless nil).
func (r *ceResults) success(t *testing.T, key string, v any) cloudevents.Event {
	t.Helper()
	e := r.await(t, key)
	var s schemas.Success
	if err := e.DataAs(&s); err != nil || !strings.HasSuffix(e.Type(), ".succeeded") {
		t.Fatalf("result of %s: %s %s (%v)", key, e.Type(), e.Data(), err)
	}
	if corr, _ := e.Extensions()["correlationid"].(string); corr != "order-88412" {
		t.Errorf("result of %s: correlationid %q", key, corr)
	}
	if v != nil {
		if err := json.Unmarshal(s.Response, v); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// failure waits for the failed result of key and returns its data.
func (r *ceResults) failure(t *testing.T, key string) schemas.Failure {
	t.Helper()
	e := r.await(t, key)
	var f schemas.Failure
	if err := e.DataAs(&f); err != nil {
		t.Fatalf("result of %s: %s %s (%v)", key, e.Type(), e.Data(), err)
	}
	return f
}
