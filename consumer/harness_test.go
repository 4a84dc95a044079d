package consumer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/embedded"
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
	// patience is how long waitFor waits for anything.
	patience = 30 * time.Second
)

// harness is one test's world. Tests that set sandbox faults get one of their own, since faults
// apply to every call of an operation.
type harness struct {
	t         testing.TB
	storeDir  string
	srv       *embedded.Server
	url       string // NATS client URL, stable across restarts
	nc        *nats.Conn
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	topo      Topology
	sb        *sandbox.Sandbox
	api       *frontpay.Client // the test's own client, with the right token
	calls     *apiCalls
	results   *collector // the result stream, as stored (duplicates dropped)
	sent      *collector // every publication on a result subject, copies the stream dropped included
	workerAPI *frontpay.Client
	apiURL    string  // the sandbox's
	worker    *runner // the default worker, nil with withoutWorker
}

type options struct {
	sandbox   sandbox.Options
	token     string // the worker's API token
	noWorker  bool
	merchants bool // the topology of a deployment of several merchants
}

type option func(*options)

// sandboxClock runs the sandbox's clock ahead of the worker's by d.
func sandboxClock(d time.Duration) option {
	return func(o *options) { o.sandbox.Clock = func() time.Time { return time.Now().Add(d) } }
}

// workerToken gives the worker's client another token than the sandbox accepts.
func workerToken(token string) option { return func(o *options) { o.token = token } }

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
	h := &harness{t: t, storeDir: t.TempDir(), topo: Topology{AckWait: ackWait, PinnedTTL: pinnedTTL, Merchants: o.merchants, Prefix: map[bool]string{true: "p."}[o.merchants]}, calls: newAPICalls(),
		results: &collector{}, sent: &collector{}}
	h.startServer(0)
	t.Cleanup(h.stopServer)

	var err error
	h.nc, err = nats.Connect(h.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(h.nc.Close)
	if h.js, err = jetstream.New(h.nc); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if h.kv, err = h.topo.Ensure(ctx, h.js); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}

	h.sb = sandbox.New(o.sandbox)
	api := httptest.NewServer(h.calls.wrap(h.sb))
	t.Cleanup(api.Close)
	h.apiURL = api.URL
	h.api = newClient(t, api.URL, testToken)
	h.workerAPI = newClient(t, api.URL, o.token)

	h.collect()
	if !o.noWorker {
		h.worker = h.start("worker-1")
	}
	return h
}

func newClient(t testing.TB, url, token string) *frontpay.Client {
	t.Helper()
	c, err := frontpay.New(url, token, frontpay.WithTimeout(apiTimeout))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startServer starts the embedded server on port (0: any free port) over the harness's store.
func (h *harness) startServer(port int) {
	h.t.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: h.storeDir, Port: port})
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv = srv
	if h.url == "" {
		h.url = srv.ClientURL()
	}
}

func (h *harness) stopServer() {
	if h.srv != nil {
		h.srv.Shutdown()
		h.srv = nil
	}
}

// restartServer shuts the server down, runs down while it is down, and starts it again on the
// same port and store.
func (h *harness) restartServer(down func()) {
	h.t.Helper()
	p, err := strconv.Atoi(h.url[strings.LastIndexByte(h.url, ':')+1:])
	if err != nil {
		h.t.Fatal(err)
	}
	h.stopServer()
	down()
	h.startServer(p)
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
		if err := resultSchema(t).Validate(mustUnmarshalAny(t, r.Data)); err != nil {
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

var compiledResultSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	b, err := schemas.FS.ReadFile(schemas.ResultSchema)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemas.BaseURI+schemas.ResultSchema, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemas.BaseURI + schemas.ResultSchema)
})

func resultSchema(t testing.TB) *jsonschema.Schema {
	s, err := compiledResultSchema()
	if err != nil {
		t.Fatalf("compile result schema: %v", err)
	}
	return s
}

func mustUnmarshalAny(t testing.TB, b []byte) any {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// runner is a running worker.
type runner struct {
	w      *Worker
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// newWorker returns a worker named instance with the test configuration, mods applied.
func (h *harness) newWorker(instance string, mods ...func(*Config)) *Worker {
	cfg := Config{
		Topology: h.topo, Source: testSource, Instance: instance,
		MaxAttempts: maxAttempts, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
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
	t := h.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{w: w, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() { r.done <- r.w.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("worker %s did not start: %v", w.cfg.Instance, err)
	case <-time.After(patience):
		t.Fatalf("worker %s did not start within %s", w.cfg.Instance, patience)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and returns how long it took to return.
func (r *runner) stop(t testing.TB) time.Duration {
	var took time.Duration
	r.once.Do(func() {
		start := time.Now()
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
		case <-time.After(patience):
			t.Errorf("worker Run did not return within %s of its context ending", patience)
		}
		took = time.Since(start)
	})
	return took
}

// testLogger shows the workers' logs with FRONTPAY_TEST_LOG set.
func testLogger(instance string) *slog.Logger {
	if os.Getenv("FRONTPAY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", instance)
}

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", patience, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	waitFor(t, func() bool { return len(h.results.find(match)) > 0 }, what)
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
	Op       frontpay.Operation
	ID       string
	Key      string
	Raw      []byte
	Merchant string // whose subject it is published on, with withMerchants
	Seq      uint64 // its stream sequence once published
}

func (c command) String() string { return fmt.Sprintf("%s %s (key %s)", c.Op, c.ID, c.Key) }

// withKey sets a command's idempotency key.
func withKey(key string) func(*schemas.Event) {
	return func(e *schemas.Event) { e.IdempotencyKey = key }
}

// newCommand builds a command event of op around data; edits change its envelope. Its key is
// "key-" and its id unless an edit sets one.
func newCommand(t testing.TB, op frontpay.Operation, data any, edits ...func(*schemas.Event)) command {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	id := schemas.NewID()
	ev := schemas.Event{
		SpecVersion: "1.0", ID: id, Source: "shop/test", Type: schemas.CommandSubject("", op),
		Time: time.Now().UTC().Format(time.RFC3339), DataContentType: "application/json",
		IdempotencyKey: "key-" + id, CorrelationID: "corr-" + id, Data: raw,
	}
	for _, e := range edits {
		e(&ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return command{Op: op, ID: ev.ID, Key: cmp.Or(ev.IdempotencyKey, ev.ID), Raw: b}
}

// publish builds a command and publishes it.
func (h *harness) publish(t testing.TB, op frontpay.Operation, data any, edits ...func(*schemas.Event)) command {
	t.Helper()
	return h.send(t, newCommand(t, op, data, edits...), "")
}

// send publishes a command on its subject with Nats-Msg-Id msgID (its id when empty).
func (h *harness) send(t testing.TB, c command, msgID string) command {
	t.Helper()
	m := nats.NewMsg(schemas.CommandSubject(h.topo.SubjectPrefix(c.Merchant), c.Op))
	m.Data = c.Raw
	m.Header.Set(jetstream.MsgIDHeader, cmp.Or(msgID, c.Merchant+c.ID))
	c.Seq = h.publishMsg(t, m)
	return c
}

// publishMsg stores a message on the command stream, retrying while the server restarts.
func (h *harness) publishMsg(t testing.TB, m *nats.Msg) uint64 {
	t.Helper()
	var ack *jetstream.PubAck
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		ack, err = h.js.PublishMsg(ctx, m)
		return err == nil
	}, "publishing to "+m.Subject)
	return ack.Sequence
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

// apiCalls counts the requests that reach the sandbox's API, and how many of each operation ran
// at once at most.
type apiCalls struct {
	mu     sync.Mutex
	calls  []apiCall
	active map[frontpay.Operation]int
	peak   map[frontpay.Operation]int
}

type apiCall struct {
	Op   frontpay.Operation
	Path string
}

func newAPICalls() *apiCalls {
	return &apiCalls{active: map[frontpay.Operation]int{}, peak: map[frontpay.Operation]int{}}
}

func (a *apiCalls) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := opOfPath(r.URL.Path)
		a.mu.Lock()
		a.calls = append(a.calls, apiCall{op, r.URL.Path})
		a.active[op]++
		a.peak[op] = max(a.peak[op], a.active[op])
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			a.active[op]--
			a.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// opOfPath finds the operation whose endpoint serves path.
func opOfPath(path string) frontpay.Operation {
	for _, op := range frontpay.Operations() {
		prefix, _, _ := strings.Cut(op.Endpoint().Path, "{")
		if strings.HasPrefix(path, prefix) {
			return op
		}
	}
	return ""
}

// count returns the calls of op whose path contains s.
func (a *apiCalls) count(op frontpay.Operation, s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c.Op == op && strings.Contains(c.Path, s) {
			n++
		}
	}
	return n
}

// touching returns the calls of any operation whose path contains s.
func (a *apiCalls) touching(s string) int {
	n := 0
	for _, op := range frontpay.Operations() {
		n += a.count(op, s)
	}
	return n
}

// activeOf returns the calls of op being handled now.
func (a *apiCalls) activeOf(op frontpay.Operation) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.active[op]
}

func (a *apiCalls) peakOf(op frontpay.Operation) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peak[op]
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
