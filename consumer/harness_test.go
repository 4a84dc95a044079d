package consumer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The test harness: an embedded JetStream server, the sandbox over real HTTP, and workers.

const (
	testToken   = "test-token"
	testSource  = "frontpay-worker-test"
	maxAttempts = 4
	apiTimeout  = 2 * time.Second
	ackWait     = time.Second
	// pinnedTTL is how soon a standby takes over from an owner that stopped pulling.
	pinnedTTL = 2 * time.Second
	// drainTimeout bounds a worker's shutdown.
	drainTimeout = 2 * time.Second
	// retryMax is the workers' longest backoff, and caps a 429's Retry-After for the worker's
	// client, as the application wires them (FRONTPAY_RETRY_MAX).
	retryMax = 100 * time.Millisecond
)

// harness is one test's world. Tests that set sandbox faults get one of their own, since faults
// apply to every call of an operation.
type harness struct {
	t         testing.TB
	nats      *testworld.NATS // restartable: h.nats.Restart
	nc        *nats.Conn
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	topo      Topology
	sb        *testworld.API
	api       *frontpay.Client // the test's own client, with the right token
	calls     *testworld.Calls
	results   *collector // the result stream, as stored (duplicates dropped)
	sent      *collector // every publication on a result subject, copies the stream dropped included
	workerAPI *frontpay.Client
	worker    *runner // the default worker, nil with withoutWorker
}

type options struct {
	sandbox   sandbox.Options
	token     string // the worker's API token
	noWorker  bool
	merchants bool          // the topology of a deployment of several merchants
	ackWait   time.Duration // the consumers' AckWait; 0: ackWait
}

type option func(*options)

// sandboxClock runs the sandbox's clock ahead of the worker's by d.
func sandboxClock(d time.Duration) option {
	return func(o *options) { o.sandbox.Clock = func() time.Time { return time.Now().Add(d) } }
}

// workerToken gives the worker's client another token than the sandbox accepts.
func workerToken(token string) option { return func(o *options) { o.token = token } }

// withAckWait gives the consumers an AckWait of d instead of ackWait.
func withAckWait(d time.Duration) option { return func(o *options) { o.ackWait = d } }

// withoutWorker leaves starting workers to the test.
func withoutWorker() option { return func(o *options) { o.noWorker = true } }

// withMerchants sets up the topology of a deployment of several merchants with the common prefix
// "p." (a stream over "*.…" subjects would overlap JetStream's API), and no worker: the test starts
// one per merchant (Config.Merchant).
func withMerchants() option {
	return func(o *options) { o.merchants, o.noWorker = true, true }
}

// setup starts the server, the topology, the sandbox and (unless told otherwise) a worker; all
// of it stops when the test ends.
func setup(t testing.TB, opts ...option) *harness {
	t.Helper()
	o := options{sandbox: sandbox.Options{Token: testToken, RateLimit: -1, Seed: 1}, token: testToken}
	for _, f := range opts {
		f(&o)
	}
	h := &harness{t: t, topo: Topology{AckWait: cmp.Or(o.ackWait, ackWait), PinnedTTL: pinnedTTL, Merchants: o.merchants, Prefix: map[bool]string{true: "p."}[o.merchants]},
		calls: &testworld.Calls{}, results: &collector{}, sent: &collector{}}
	h.nats = testworld.JetStream(t, testworld.WithTopology(h.topo))
	h.nc, h.js, h.kv = h.nats.Conn, h.nats.JS, h.nats.KV
	h.sb = testworld.Sandbox(t, o.sandbox, h.calls.Wrap)
	h.api = h.sb.Client(t, testToken, frontpay.WithTimeout(apiTimeout))
	h.workerAPI = h.sb.Client(t, o.token, frontpay.WithTimeout(apiTimeout), frontpay.WithRetryAfterMax(retryMax))

	h.collect()
	if !o.noWorker {
		h.worker = h.start("worker-1")
	}
	return h
}

// collect feeds the collectors: an ordered consumer of the result stream, and a plain
// subscription to the result subjects, which also sees the copies the stream drops.
func (h *harness) collect() {
	t := h.t
	c, err := h.js.OrderedConsumer(context.Background(), h.topo.ResultStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { h.results.add(m.Subject(), m.Headers(), m.Data()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	for _, subject := range []string{"*.*.succeeded", "*.*.failed", "*.*.*.succeeded", "*.*.*.failed"} {
		sub, err := h.nc.Subscribe(subject, func(m *nats.Msg) { h.sent.add(m.Subject, m.Header, m.Data) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	t.Cleanup(h.checkResults)
}

// checkResults holds every stored result to CONTRACT.md section 3: the result schema, the type
// its subject names, Nats-Msg-Id its id, and one event per id.
func (h *harness) checkResults() {
	t := h.t
	ids := map[string]bool{}
	for _, r := range h.results.all() {
		if err := testworld.SchemaError(schemas.ResultSchema, r.Data); err != nil {
			t.Errorf("result %s does not follow result.schema.json: %v\n%s", r.Event.ID, err, r.Data)
		}
		if r.Subject != h.topo.SubjectPrefix(r.Event.Merchant)+r.Event.Type || r.MsgID != r.Event.ID {
			t.Errorf("result on %s with Nats-Msg-Id %q is a %s event with id %s", r.Subject, r.MsgID, r.Event.Type, r.Event.ID)
		}
		if ids[r.Event.ID] {
			t.Errorf("result %s stored twice", r.Event.ID)
		}
		ids[r.Event.ID] = true
	}
}

// runner is a running worker.
type runner struct {
	*testworld.Running
	w *Worker
}

// newWorker returns a worker named instance with the test configuration, mods applied.
func (h *harness) newWorker(instance string, mods ...func(*Config)) *Worker {
	cfg := Config{
		Topology: h.topo, Source: testSource, Instance: instance,
		MaxAttempts: maxAttempts, RetryInitial: 10 * time.Millisecond, RetryMax: retryMax,
		APITimeout: apiTimeout, DrainTimeout: drainTimeout, ReportEvery: 100 * time.Millisecond,
		LeaseMargin: 200 * time.Millisecond, Logger: testLogger(instance),
	}
	for _, m := range mods {
		m(&cfg)
	}
	return New(cfg, h.js, h.kv, h.workerAPI, publisher.New(h.js, nil, 2*time.Second))
}

// start runs a worker named instance until the test ends or stop is called.
func (h *harness) start(instance string, mods ...func(*Config)) *runner {
	h.t.Helper()
	return h.run(h.newWorker(instance, mods...))
}

// run runs w until the test ends or stop is called.
func (h *harness) run(w *Worker) *runner {
	h.t.Helper()
	return &runner{Running: testworld.Run(h.t, "worker "+w.cfg.Instance, w.Run), w: w}
}

// stop ends Run and returns how long it took to return.
func (r *runner) stop(t testing.TB) time.Duration {
	start := time.Now()
	if err := r.Stop(); err != nil {
		t.Errorf("worker Run: %v", err)
	}
	return time.Since(start)
}

// testLogger shows the workers' logs with FRONTPAY_TEST_LOG set.
func testLogger(instance string) *slog.Logger {
	if os.Getenv("FRONTPAY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", instance)
}

// received is one message on a result subject.
type received struct {
	Subject string
	MsgID   string
	Data    []byte
	Event   schemas.Event
}

// collector gathers result messages.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

func (c *collector) add(subject string, hdr nats.Header, data []byte) {
	r := received{Subject: subject, MsgID: hdr.Get(jetstream.MsgIDHeader), Data: bytes.Clone(data)}
	_ = json.Unmarshal(data, &r.Event)
	c.mu.Lock()
	c.msgs = append(c.msgs, r)
	c.mu.Unlock()
}

func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

// find returns the messages whose event matches.
func (c *collector) find(match func(schemas.Event) bool) []received {
	var out []received
	for _, r := range c.all() {
		if match(r.Event) {
			out = append(out, r)
		}
	}
	return out
}

// byCause matches the results of the command with id.
func byCause(id string) func(schemas.Event) bool {
	return func(e schemas.Event) bool { return e.CausationID == id }
}

// byKey matches the results of an idempotency key.
func byKey(key string) func(schemas.Event) bool {
	return func(e schemas.Event) bool { return e.IdempotencyKey == key }
}

// await waits for a stored result that matches and returns the first.
func (h *harness) await(t testing.TB, match func(schemas.Event) bool, what string) received {
	t.Helper()
	testworld.WaitFor(t, func() bool { return len(h.results.find(match)) > 0 }, what)
	return h.results.find(match)[0]
}

// resultOf waits for the result of c and checks that it is the only one stored for its key.
func (h *harness) resultOf(t testing.TB, c command) received {
	t.Helper()
	r := h.await(t, byCause(c.ID), "the result of "+c.String())
	if all := h.results.find(byKey(c.Key)); len(all) != 1 {
		t.Errorf("%s: %d results stored for key %s, want 1", c, len(all), c.Key)
	}
	return r
}

// success decodes a result that must be a success.
func success(t testing.TB, r received) schemas.Success {
	t.Helper()
	var s schemas.Success
	if !strings.HasSuffix(r.Event.Type, ".succeeded") || json.Unmarshal(r.Event.Data, &s) != nil {
		t.Fatalf("want a success, got %s: %s", r.Event.Type, r.Event.Data)
	}
	return s
}

// failure decodes a result that must be a failure with reason.
func failure(t testing.TB, r received, reason schemas.Reason) schemas.Failure {
	t.Helper()
	var f schemas.Failure
	if !strings.HasSuffix(r.Event.Type, ".failed") || json.Unmarshal(r.Event.Data, &f) != nil {
		t.Fatalf("want a failure (%s), got %s: %s", reason, r.Event.Type, r.Event.Data)
	}
	if f.Reason != reason {
		t.Fatalf("want reason %s, got %s: %s", reason, f.Reason, r.Event.Data)
	}
	return f
}

// command is a command event as published.
type command struct {
	testworld.Command
	Merchant string // whose subject it is published on, with withMerchants
	Seq      uint64 // its stream sequence once published
}

// newCommand builds a command event of op around data; edits change its envelope. Its key is
// "key-" and its id, its correlation id "corr-" and its id, unless an edit sets them.
func newCommand(t testing.TB, op frontpay.Operation, data any, edits ...func(*schemas.Event)) command {
	t.Helper()
	keyed := func(e *schemas.Event) { e.IdempotencyKey, e.CorrelationID = "key-"+e.ID, "corr-"+e.ID }
	return command{Command: testworld.NewCommand(t, op, data, append([]func(*schemas.Event){keyed}, edits...)...)}
}

// publish builds a command and publishes it.
func (h *harness) publish(t testing.TB, op frontpay.Operation, data any, edits ...func(*schemas.Event)) command {
	t.Helper()
	return h.send(t, newCommand(t, op, data, edits...), "")
}

// send publishes a command on its subject with Nats-Msg-Id msgID (its id when empty).
func (h *harness) send(t testing.TB, c command, msgID string) command {
	t.Helper()
	m := c.Msg(h.topo.SubjectPrefix(c.Merchant))
	m.Header.Set(jetstream.MsgIDHeader, cmp.Or(msgID, c.Merchant+c.ID))
	c.Seq = testworld.Publish(t, h.js, m)
	return c
}

// deadLetters waits until the dead-letter stream holds n messages, and returns them in order.
func (h *harness) deadLetters(t *testing.T, n int, what string) []*jetstream.RawStreamMsg {
	t.Helper()
	dl, err := h.js.Stream(t.Context(), h.topo.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	testworld.WaitFor(t, func() bool {
		info, err := dl.Info(t.Context())
		return err == nil && info.State.Msgs == uint64(n)
	}, what)
	out := make([]*jetstream.RawStreamMsg, n)
	for i := range out {
		if out[i], err = dl.GetMsg(t.Context(), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// consumerIdle reports whether the consumer has nothing pending: every message delivered and
// acknowledged.
func (h *harness) consumerIdle(t testing.TB) bool {
	t.Helper()
	return h.consumerIdleOf(t, ConsumerName)
}

// consumerIdleOf is consumerIdle of the consumer name.
func (h *harness) consumerIdleOf(t testing.TB, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, h.topo.CommandStream(), name)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// capturedFirst fails the test when the reservation was completed before it was captured, and
// returns its captures and completes.
func (h *harness) capturedFirst(t testing.TB, uuid string) (captured, completed []sandbox.Effect) {
	t.Helper()
	captured, completed = h.effects(frontpay.ReservationCapture, uuid), h.effects(frontpay.ReservationComplete, uuid)
	if len(captured) > 0 && len(completed) > 0 && captured[0].Seq > completed[0].Seq {
		t.Errorf("%s completed (effect %d) before it was captured (effect %d)", uuid, completed[0].Seq, captured[0].Seq)
	}
	return captured, completed
}

// effects returns the ledger's effects of op on uuid ("" for any).
func (h *harness) effects(op frontpay.Operation, uuid string) []sandbox.Effect {
	var out []sandbox.Effect
	for _, e := range h.sb.Ledger() {
		if e.Op == string(op) && (uuid == "" || e.UUID == uuid) {
			out = append(out, e)
		}
	}
	return out
}

// marked returns the ledger's effects whose request body holds the string marker (as a note of
// its own, or with the worker's read-back marker after it).
func (h *harness) marked(marker string) []sandbox.Effect {
	var out []sandbox.Effect
	for _, e := range h.sb.Ledger() {
		if bytes.Contains(e.Body, []byte(`"`+marker+`"`)) || bytes.Contains(e.Body, []byte(`"`+marker+` [fp:`)) {
			out = append(out, e)
		}
	}
	return out
}

// Command data.

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// submitData is a reservation of two products, 300 and 700 NOK; note goes in customerNotes.
func submitData(note string) map[string]any {
	return map[string]any{
		"customerDetails": map[string]any{
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "kari@example.no",
			"name": "Kari Nordmann", "preferredLanguage": "no",
			"address": map[string]any{"street": "Storgata 1", "zip": "0155", "city": "Oslo", "country": "NO"},
		},
		"orderDate": unix(time.Now()), "dueDateForPaymentLink": unix(time.Now().Add(72 * time.Hour)),
		"sendOrderBy": map[string]any{"sms": false, "email": true},
		"products": map[string]any{
			"0": map[string]any{"name": "Ski wax", "productId": "WAX-1", "rate": 300, "tax": "25", "amount": 300},
			"1": map[string]any{"name": "Ski poles", "productId": "POLE-2", "rate": 700, "tax": "25", "amount": 700},
		},
		"orderSummary":  map[string]any{"subTotal": 1000, "totalTax": 250, "grandTotal": 1000},
		"customerNotes": note,
	}
}

// sessionData is submitData with a payment session.
func sessionData(note string) map[string]any {
	d := submitData(note)
	d["submitPayment"] = map[string]any{"via": "visa"}
	return d
}

// orderData is an invoice order of 51 NOK; note goes in internalReferences.notes.
func orderData(note string) map[string]any {
	return map[string]any{
		"products":               map[string]any{"0": map[string]any{"name": "Hair wash", "productId": "HW", "quantity": "1", "rate": 51, "discount": 0, "tax": "0", "amount": 51}},
		"orderSummary":           map[string]any{"subTotal": "51.00", "totalTax": "0.00", "totalDiscount": "0.00", "grandTotal": "51.00"},
		"orderDate":              "5 Dec, 2026",
		"dueDateForPaymentLink":  unix(time.Now().Add(72 * time.Hour)),
		"sendOrderBy":            map[string]any{"sms": false, "email": true, "invoice": false},
		"invoiceAsPaymentOption": false,
		"isCreditCheckAvailable": false,
		"customerDetails": map[string]any{
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "ola@example.no",
			"name": "Ola Nordmann", "preferredLanguage": "en",
			"address": map[string]any{"street": "Storgata 2", "zip": "0155", "city": "Oslo", "country": "NO"},
		},
		"internalReferences": map[string]any{"referenceNo": "R-1", "notes": note},
	}
}

// reservation is a reservation the customer has paid, and its product line ids (300 and 700 NOK).
type reservation struct {
	UUID  string
	Lines []frontpay.Number
}

// paid submits a reservation through the test's own client and pays it.
func (h *harness) paid(t testing.TB) reservation {
	t.Helper()
	r := h.submitted(t)
	if err := h.sb.Pay(r.UUID); err != nil {
		t.Fatal(err)
	}
	return r
}

// paidN returns n paid reservations.
func (h *harness) paidN(t testing.TB, n int) []reservation {
	t.Helper()
	rs := make([]reservation, n)
	for i := range rs {
		rs[i] = h.paid(t)
	}
	return rs
}

// decodeAs reads command data as the request it is the body of.
func decodeAs[T any](t testing.TB, data any) *T {
	t.Helper()
	var req T
	b, _ := json.Marshal(data)
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

// submitted submits a reservation through the test's own client, unpaid.
func (h *harness) submitted(t testing.TB) reservation {
	t.Helper()
	res, err := h.api.SubmitReservation(context.Background(), decodeAs[frontpay.SubmitReservationRequest](t, submitData("seeded")))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	d := h.details(t, res.Data.ReservationUUID)
	r := reservation{UUID: d.ReservationUUID}
	for _, p := range d.ProductList {
		r.Lines = append(r.Lines, p.ID)
	}
	return r
}

// details reads a reservation through the test's own client.
func (h *harness) details(t testing.TB, uuid string) frontpay.Reservation {
	t.Helper()
	d, err := h.api.Details(context.Background(), uuid)
	if err != nil {
		t.Fatalf("details of %s: %v", uuid, err)
	}
	return d.Data
}

// captureData captures amount (NOK) from the reservation's first line; text is additionalText.
func captureData(r reservation, amount int, text string) map[string]any {
	return map[string]any{
		"reservationUuid": r.UUID, "products": []any{map[string]any{"id": r.Lines[0], "amount": amount}},
		"grandTotal": amount, "additionalText": text,
	}
}

// chargeData charges amount (NOK) as a new line; text is additionalText.
func chargeData(r reservation, amount int, text string) map[string]any {
	return map[string]any{
		"reservationUuid": r.UUID,
		"products":        map[string]any{"0": map[string]any{"name": "Extra", "productId": nil, "rate": amount, "tax": "25", "amount": amount}},
		"grandTotal":      amount, "additionalText": text,
	}
}

// refundData refunds amount (NOK) of the first line from the capture ref.
func refundData(r reservation, ref string, amount int) map[string]any {
	return map[string]any{
		"reservationUuid": r.UUID, "type": "reservation", "grandTotal": amount,
		"products": []any{map[string]any{"id": r.Lines[0], "amount": amount}}, "source": "captured", "reference": ref,
	}
}

// noteData is the data of cancel and complete.
func noteData(uuid, note string) map[string]any {
	return map[string]any{"reservationUuid": uuid, "note": note}
}

// capture captures through the test's own client, as captureData would, and returns its uuid.
func (h *harness) capture(t testing.TB, r reservation, amount int, text string) string {
	t.Helper()
	return h.captureLine(t, r, 0, amount, text)
}

// captureLine captures amount (NOK) from the reservation's line through the test's own client.
func (h *harness) captureLine(t testing.TB, r reservation, line, amount int, text string) string {
	t.Helper()
	data := captureData(r, amount, text)
	data["products"] = []any{map[string]any{"id": r.Lines[line], "amount": amount}}
	res, err := h.api.Capture(context.Background(), r.UUID, decodeAs[frontpay.CaptureRequest](t, data))
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	return res.Data.UUID
}

// mustParse parses a command as the worker does.
func mustParse(t testing.TB, c command) *schemas.Command {
	t.Helper()
	cmd, err := schemas.ParseCommand(c.Op, c.Raw, time.Now())
	if err != nil {
		t.Fatalf("parse %s: %v", c, err)
	}
	return cmd
}

// responseUUID reads the uuid of a success's response.
func responseUUID(t testing.TB, s schemas.Success) string {
	t.Helper()
	var p frontpay.PaymentResult
	if err := json.Unmarshal(s.Response, &p); err != nil {
		t.Fatalf("response %s: %v", s.Response, err)
	}
	return p.UUID
}
