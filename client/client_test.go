package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// seed decodes the example payload of frontpay/testdata/file into req, with a due date an hour
// from now where it has one, and returns the same data as a JSON tree.
func seed(t *testing.T, file string, req any) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "frontpay", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		t.Fatal(err)
	}
	if _, ok := tree["dueDateForPaymentLink"]; ok {
		tree["dueDateForPaymentLink"] = strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	}
	if req != nil {
		b, _ := json.Marshal(tree)
		if err := json.Unmarshal(b, req); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

// TestBuildersWriteTheData builds every operation's command from the seed documents' examples,
// through its typed builder and through NewCommand with the example's JSON as it is, and requires
// the worker to read the same command from both.
func TestBuildersWriteTheData(t *testing.T) {
	t.Parallel()
	const res, ord = "RES1943140879", "ORD3672053467"
	var (
		order   frontpay.CreateOrderRequest
		submit  frontpay.SubmitReservationRequest
		session frontpay.CreateSessionRequest
		capture frontpay.CaptureRequest
		charge  frontpay.ChargeRequest
		cancel  frontpay.NoteRequest
		done    frontpay.NoteRequest
		resend  frontpay.ResendRequest
		refund  frontpay.RefundRequest
	)
	with := func(tree map[string]any, name, value string) map[string]any { tree[name] = value; return tree }
	start, end := time.Unix(1706674723, 0), time.Unix(1706761123, 0)
	tests := []struct {
		op    frontpay.Operation
		typed func() (*client.Command, error)
		data  map[string]any
	}{
		{frontpay.OrderCreate, func() (*client.Command, error) { return client.CreateOrder(&order) }, seed(t, "order.json", &order)},
		{frontpay.OrderResend, func() (*client.Command, error) { return client.ResendOrder(ord, &resend) }, with(seed(t, "resend.json", &resend), "orderUuid", ord)},
		{frontpay.ReservationSubmit, func() (*client.Command, error) { return client.SubmitReservation(&submit) }, seed(t, "submit.json", &submit)},
		{frontpay.ReservationSession, func() (*client.Command, error) { return client.CreateSession(&session) }, seed(t, "session.json", &session)},
		{frontpay.ReservationDetails, func() (*client.Command, error) { return client.Details(res) }, map[string]any{"reservationUuid": res}},
		{frontpay.ReservationCapture, func() (*client.Command, error) { return client.Capture(res, &capture) }, with(seed(t, "capture.json", &capture), "reservationUuid", res)},
		{frontpay.ReservationCharge, func() (*client.Command, error) { return client.Charge(res, &charge) }, with(seed(t, "charge.json", &charge), "reservationUuid", res)},
		{frontpay.ReservationCancel, func() (*client.Command, error) { return client.Cancel(res, &cancel) }, with(seed(t, "cancel.json", &cancel), "reservationUuid", res)},
		{frontpay.ReservationComplete, func() (*client.Command, error) { return client.Complete(res, &done) }, with(seed(t, "complete.json", &done), "reservationUuid", res)},
		{frontpay.ReservationResend, func() (*client.Command, error) { return client.ResendReservation(res, &resend) }, with(seed(t, "resend.json", nil), "reservationUuid", res)},
		{frontpay.ReservationRefund, func() (*client.Command, error) { return client.Refund(res, &refund) }, with(seed(t, "refund.json", &refund), "reservationUuid", res)},
		{frontpay.ReservationHistory, func() (*client.Command, error) { return client.History(start, end) }, map[string]any{"start": 1706674723, "end": 1706761123}},
	}
	if len(tests) != len(frontpay.Operations()) {
		t.Fatalf("%d operations tested, want all %d", len(tests), len(frontpay.Operations()))
	}
	for _, tt := range tests {
		t.Run(string(tt.op), func(t *testing.T) {
			typed, err := tt.typed()
			if err != nil {
				t.Fatal(err)
			}
			plain, err := client.NewCommand(tt.op, tt.data, client.Key("k"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := schemas.ParseCommand(tt.op, typed.JSON(), time.Now())
			if err != nil {
				t.Fatalf("the worker refuses %s: %v", typed.JSON(), err)
			}
			want, err := schemas.ParseCommand(tt.op, plain.JSON(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Body, want.Body) || !reflect.DeepEqual(got.Params, want.Params) || got.Resource != want.Resource {
				t.Errorf("typed %s\nplain %s", typed.Event().Data, plain.Event().Data)
			}
			if typed.Op() != tt.op || got.Type != schemas.CommandSubject("", tt.op) ||
				got.Source != client.DefaultSource || got.DataContentType != "application/json" || typed.Key() != typed.ID() || plain.Key() != "k" {
				t.Errorf("envelope %s", typed.JSON())
			}
		})
	}
}

func TestBuildersRefuse(t *testing.T) {
	t.Parallel()
	capture := &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: frontpay.Num("298"), Amount: frontpay.Num("5")}},
		GrandTotal: frontpay.Num("5"),
	}
	for name, tc := range map[string]struct {
		build func() (*client.Command, error)
		field string // the field the *schemas.InvalidError names
	}{
		"sum": {func() (*client.Command, error) {
			return client.Capture("RES1", &frontpay.CaptureRequest{Products: capture.Products, GrandTotal: frontpay.Num("6")})
		}, "data.grandTotal"},
		"no products": {func() (*client.Command, error) {
			return client.Capture("RES1", &frontpay.CaptureRequest{GrandTotal: frontpay.Num("5")})
		}, "data.products"},
		"no request":     {func() (*client.Command, error) { return client.Capture("RES1", nil) }, "data.products"},
		"no reservation": {func() (*client.Command, error) { return client.Capture("", capture) }, "data.reservationUuid"},
		"bad uuid":       {func() (*client.Command, error) { return client.Details("RES 1/..") }, "data.reservationUuid"},
		"history order":  {func() (*client.Command, error) { return client.History(time.Unix(2000, 0), time.Unix(1000, 0)) }, "data.start"},
		"past due date": {func() (*client.Command, error) {
			var submit frontpay.SubmitReservationRequest
			seed(t, "submit.json", &submit)
			submit.DueDateForPaymentLink = strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
			return client.SubmitReservation(&submit)
		}, "data.dueDateForPaymentLink"},
		"empty source": {func() (*client.Command, error) { return client.Capture("RES1", capture, client.Source("")) }, "source"},
		"data not an object": {func() (*client.Command, error) {
			return client.NewCommand(frontpay.ReservationDetails, []string{"RES1"})
		}, "data"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.build()
			var invalid *schemas.InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("got %v, want an *schemas.InvalidError", err)
			}
			for _, f := range invalid.Fields {
				if f.Field == tc.field {
					return
				}
			}
			t.Errorf("%v does not name %s", err, tc.field)
		})
	}
	if _, err := client.NewCommand("reservation.bogus", map[string]any{}); err == nil {
		t.Error("an unknown operation was built")
	}
}

func TestNewRefusesOptions(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	for name, opts := range map[string][]client.Option{
		"prefix without a dot": {client.WithPrefix("shop1")},
		"wildcard prefix":      {client.WithPrefix("*.")},
		"merchant id":          {client.WithMerchant("Shop 1")},
	} {
		if c, err := client.New(nc, opts...); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// newClient returns a Client on the test server for one test.
func newClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(connect(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// call publishes cmd and awaits its result.
func call(t *testing.T, c *client.Client, cmd *client.Command) (*client.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	if err := c.Publish(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	return c.Await(ctx, cmd.ID())
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestPublishAwait publishes a reservation's life through the client and the worker, and checks
// each result's typed value and the published commands.
func TestPublishAwait(t *testing.T) {
	t.Parallel()
	const prefix = "life." // a worker of its own, so that the stored commands are this test's
	startTestWorker(t, prefix)
	c := newClient(t, client.WithPrefix(prefix))
	cmd := must[*client.Command](t)
	result := must[*client.Result](t)

	var submit frontpay.SubmitReservationRequest
	seed(t, "submit.json", &submit)
	submitted := result(call(t, c, cmd(client.SubmitReservation(&submit, client.Correlation("order-1")))))
	uuid := submitted.Value.(*frontpay.SubmitReservationResult).ReservationUUID
	if submitted.HTTPStatus != 201 || uuid == "" || submitted.Event.CorrelationID != "order-1" || submitted.Op != frontpay.ReservationSubmit {
		t.Fatalf("submit: %+v", submitted)
	}
	customerPays(uuid)
	details := result(call(t, c, cmd(client.Details(uuid)))).Value.(*frontpay.Reservation)
	if details.ReservationUUID != uuid || len(details.ProductList) == 0 {
		t.Fatalf("details: %+v", details)
	}
	line := details.ProductList[0]

	capture := cmd(client.Capture(uuid, &frontpay.CaptureRequest{
		Products: frontpay.Lines[frontpay.CaptureLine]{{ID: line.ID, Amount: line.Amount}}, GrandTotal: line.Amount,
	}, client.Key("capture-"+uuid)))
	captured := result(call(t, c, capture))
	reference := captured.Value.(*frontpay.PaymentResult).UUID
	if captured.HTTPStatus != 202 || reference == "" || captured.Event.CausationID != capture.ID() || captured.Event.IdempotencyKey != "capture-"+uuid {
		t.Fatalf("capture: %+v", captured)
	}
	// The command as stored: its bytes, Nats-Msg-Id and content type.
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), consumer.Topology{Prefix: prefix}.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(t.Context(), c.Subject(capture))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.Data, capture.JSON()) || stored.Header.Get(jetstream.MsgIDHeader) != capture.ID() ||
		stored.Header.Get("Content-Type") != publisher.ContentType {
		t.Errorf("stored %s %v", stored.Data, stored.Header)
	}

	refunded := result(call(t, c, cmd(client.Refund(uuid, &frontpay.RefundRequest{
		Type: "reservation", GrandTotal: frontpay.Num("0.5"), Source: "captured", Reference: reference,
		Products: []frontpay.CaptureLine{{ID: line.ID, Amount: frontpay.Num("0.5")}},
	}))))
	if refunded.Value != nil || refunded.HTTPStatus != 202 || refunded.Message != "orderRefundedSuccessfully" {
		t.Errorf("refund: %+v", refunded)
	}
	history := result(call(t, c, cmd(client.History(time.Time{}, time.Time{})))).Value.([]frontpay.HistoryEvent)
	if len(history) == 0 {
		t.Error("no history")
	}
	completed := result(call(t, c, cmd(client.Complete(uuid, &frontpay.NoteRequest{Note: "delivered"}))))
	if completed.Message != "reservationCompletedSuccessfully" || !json.Valid(completed.Raw) {
		t.Errorf("complete: %+v", completed)
	}
}

func TestAwaitFailure(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	uuid, line := paidReservation()
	capture := must[*client.Command](t)(client.Capture(uuid, &frontpay.CaptureRequest{
		Products: frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("150")}}, GrandTotal: frontpay.Num("150"),
	}))
	res, err := call(t, c, capture)
	var f *client.Failure
	if !errors.As(err, &f) || res != nil {
		t.Fatalf("got %v, %v; want a *client.Failure", res, err)
	}
	if f.Op != frontpay.ReservationCapture || f.Reason != schemas.BusinessRule || f.HTTPStatus != 400 || f.Attempts != 1 ||
		f.Message != "requestedCaptureAmountExceedAvailableCaptureRunway" || f.Event.CausationID != capture.ID() || f.Retryable {
		t.Errorf("failure %+v", f)
	}
	var command schemas.Event
	if err := json.Unmarshal(f.Command, &command); err != nil || command.ID != capture.ID() {
		t.Errorf("the failure's command %s (%v)", f.Command, err)
	}
	if want := "reservation.capture failed: business_rule (400 requestedCaptureAmountExceedAvailableCaptureRunway)"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

// TestAwaitSameKey publishes a capture again as a new command with the same key: the worker
// answers with the first result, and Await returns it. A capture with the key and other data,
// published just before such a copy, is an idempotency_conflict that answers it alone.
func TestAwaitSameKey(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	uuid, line := paidReservation()
	req := &frontpay.CaptureRequest{Products: frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("30")}}, GrandTotal: frontpay.Num("30")}
	key := client.Key("capture-" + uuid + "-1")
	first := must[*client.Command](t)(client.Capture(uuid, req, key))
	res1 := must[*client.Result](t)(call(t, c, first))

	other := must[*client.Command](t)(client.Capture(uuid, &frontpay.CaptureRequest{
		Products: frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("20")}}, GrandTotal: frontpay.Num("20"),
	}, key))
	again := must[*client.Command](t)(client.Capture(uuid, req, key))
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	for _, cmd := range []*client.Command{other, again} {
		if err := c.Publish(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	res2, err := c.Await(ctx, again.ID())
	if err != nil || again.ID() == first.ID() || res2.Event.ID != res1.Event.ID || res2.Event.CausationID != first.ID() {
		t.Fatalf("the copy's result %+v (%v), want the first %+v", res2, err, res1.Event)
	}
	_, err = c.Await(ctx, other.ID())
	var f *client.Failure
	if !errors.As(err, &f) || f.Reason != schemas.IdempotencyConflict || f.Event.CausationID != other.ID() {
		t.Errorf("other data under the key: %v", err)
	}
}

// TestMerchant publishes with a prefix and a merchant to a worker whose prefix is
// <prefix><merchant>., as a merchant's subjects are those of such a deployment.
func TestMerchant(t *testing.T) {
	t.Parallel()
	startTestWorker(t, "acme.shop1.")
	c := newClient(t, client.WithPrefix("acme."), client.WithMerchant("shop1"))
	uuid, _ := paidReservation()
	details := must[*client.Command](t)(client.Details(uuid))
	if s := c.Subject(details); s != "acme.shop1.reservation.details.requested" {
		t.Fatalf("subject %s", s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, consumer.Topology{Prefix: "acme.shop1."}.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(c.Subject(details)))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[c.Subject(details)]
	}
	before := stored()
	// Published twice: stored once, answered once.
	for range 2 {
		if err := c.Publish(ctx, details); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Await(ctx, details.ID())
	if err != nil || res.Value.(*frontpay.Reservation).ReservationUUID != uuid {
		t.Fatalf("%+v, %v", res, err)
	}
	if n := stored() - before; n != 1 {
		t.Errorf("%d stored, want 1", n)
	}
}

// TestAwaitLater awaits a command that no worker answers yet: Await ends with its context, and
// awaited again once a worker runs, it returns the result that came meanwhile.
func TestAwaitLater(t *testing.T) {
	t.Parallel()
	const prefix = "later."
	if _, err := startWorker(prefix, false); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, client.WithPrefix(prefix))
	if _, err := c.Await(t.Context(), "never-published"); !errors.Is(err, client.ErrNotPublished) {
		t.Errorf("unknown id: %v", err)
	}
	uuid, _ := paidReservation()
	details := must[*client.Command](t)(client.Details(uuid))
	if err := c.Publish(t.Context(), details); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Await(short, details.ID()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with no worker: %v", err)
	}
	startTestWorker(t, prefix)
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	if res, err := c.Await(ctx, details.ID()); err != nil || res.Value.(*frontpay.Reservation).ReservationUUID != uuid {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := c.Await(ctx, details.ID()); !errors.Is(err, client.ErrNotPublished) {
		t.Errorf("awaited twice: %v", err)
	}
}
