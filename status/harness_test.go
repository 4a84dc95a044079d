package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The test world: an embedded JetStream server over TCP with the worker's topology, the sandbox
// over real HTTP, a callback server in front of the current Service's handler, and the real
// publisher.

const (
	testToken  = "test-token"
	testSource = "frontpay-worker-test"
)

var _ Publisher = (*publisher.Publisher)(nil)

type world struct {
	t      *testing.T
	secret string
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	topo   consumer.Topology
	pub    *publisher.Publisher
	sb     *testworld.API
	api    *frontpay.Client // the test's and the services' client
	// apiPaths counts every request that reached the sandbox.
	apiPaths *testworld.Calls
	cbURL    string                // the callback endpoint's full URL
	logs     *testworld.SyncBuffer // what the services logged
	events   *collector
	// sentQueries are the raw queries of every request that reached the callback server.
	sentQueries *strList
	handler     atomic.Pointer[http.Handler]
}

// setup builds a world; a non-empty secret is given to the sandbox and to every service.
func setup(t *testing.T, secret string) *world {
	t.Helper()
	w := &world{t: t, secret: secret, logs: &testworld.SyncBuffer{}, events: &collector{}, sentQueries: &strList{}, apiPaths: &testworld.Calls{}}
	n := testworld.JetStream(t, testworld.WithTopology(w.topo))
	w.js, w.kv = n.JS, n.KV
	w.pub = publisher.New(w.js, w.logger(), 0)

	// The callback server: records what arrives, then hands it to the current service.
	cb := testworld.Serve(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.sentQueries.add(r.URL.RawQuery)
		h := w.handler.Load()
		if h == nil {
			http.Error(rw, "no service", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(rw, r)
	}))
	w.cbURL = cb + CallbackPath

	// Registered after the callback server: the sandbox's callbacks in flight end before it closes.
	w.sb = testworld.Sandbox(t, sandbox.Options{Token: testToken, RateLimit: -1, Seed: 7, CallbackSecret: secret}, w.apiPaths.Wrap)
	w.api = w.sb.Client(t, testToken, frontpay.WithTimeout(10*time.Second))

	c, err := w.js.OrderedConsumer(context.Background(), w.topo.ResultStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schemas.StatusSubject("", "reservation"), schemas.StatusSubject("", "order")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { w.events.add(t, m) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return w
}

func (w *world) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// service starts a Service over the world's API (or api), serving the callback server; it is
// closed when the test ends.
func (w *world) service(api API, mods ...func(*Config)) (*Service, *counter) {
	w.t.Helper()
	if api == nil {
		api = w.api
	}
	obs := &counter{}
	cfg := Config{Source: testSource, Secret: w.secret, Logger: w.logger(), Observer: obs,
		ReadBackDelay: 10 * time.Millisecond, VerifyTimeout: testworld.Patience}
	for _, m := range mods {
		m(&cfg)
	}
	s := New(cfg, api, w.pub, w.kv)
	h := s.Handler()
	w.handler.Store(&h)
	w.t.Cleanup(s.Close)
	return s, obs
}

func ptr[T any](v T) *T { return &v }

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// submit submits a reservation of two products, 100.00 and 50.00 (grand total 150.00); with
// callback it names the callback server as its callbackUrl.
func (w *world) submit(callback bool) string {
	w.t.Helper()
	now := time.Now()
	q := &frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			UUID: ptr(""), Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "kari@example.com",
			Name: "Kari Nordmann", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "Storgata 1", Zip: "0155", City: "Oslo", Country: "NO"},
		},
		OrderDate:             unix(now),
		DueDateForPaymentLink: unix(now.Add(24 * time.Hour)),
		SendOrderBy:           &frontpay.SendOrderBy{SMS: ptr(false), Email: ptr(true)},
		Products: frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Tent", Rate: frontpay.Num("100"), Tax: frontpay.Str("25"), Amount: frontpay.Num("100.00")},
			{Name: "Stove", Rate: frontpay.Num("50"), Tax: frontpay.Str("25"), Amount: frontpay.Num("50.00")},
		},
		OrderSummary: &frontpay.ReservationSummary{SubTotal: frontpay.Num("120"), TotalTax: frontpay.Num("30"), GrandTotal: frontpay.Num("150.00")},
	}
	if callback {
		q.Callback = &frontpay.Callback{CallbackURL: w.cbURL}
	}
	res, err := w.api.SubmitReservation(testworld.Context(w.t), q)
	if err != nil {
		w.t.Fatalf("submit: %v", err)
	}
	return res.Data.ReservationUUID
}

// pay has the customer pay a reservation.
func (w *world) pay(uuid string) {
	w.t.Helper()
	if err := w.sb.Pay(uuid); err != nil {
		w.t.Fatal(err)
	}
}

// capture captures cents of the first product of a reservation.
func (w *world) capture(uuid string, cents int64) {
	w.t.Helper()
	d, err := w.api.Details(testworld.Context(w.t), uuid)
	if err != nil {
		w.t.Fatal(err)
	}
	amount := frontpay.FromCents(cents)
	_, err = w.api.Capture(testworld.Context(w.t), uuid, &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: d.Data.ProductList[0].ID, Amount: amount}},
		GrandTotal: amount,
	})
	if err != nil {
		w.t.Fatalf("capture: %v", err)
	}
}

// charge charges cents on the stored card.
func (w *world) charge(uuid string, cents int64) {
	w.t.Helper()
	amount := frontpay.FromCents(cents)
	_, err := w.api.Charge(testworld.Context(w.t), uuid, &frontpay.ChargeRequest{
		Products: frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Delivery", Rate: amount, Tax: frontpay.Str("25"), Amount: amount},
		},
		GrandTotal: amount,
	})
	if err != nil {
		w.t.Fatalf("charge: %v", err)
	}
}

// stored is the number of messages the result stream holds: every status event published.
func (w *world) stored() int {
	w.t.Helper()
	st, err := w.js.Stream(testworld.Context(w.t), w.topo.ResultStream())
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := st.Info(testworld.Context(w.t))
	if err != nil {
		w.t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// all waits until the collector has every stored event and returns them.
func (w *world) all() []received {
	w.t.Helper()
	n := w.stored()
	testworld.WaitFor(w.t, func() bool { return w.events.len() >= n }, fmt.Sprintf("%d stored events collected", n))
	return w.events.all()
}

// of returns the events of one uuid.
func (w *world) of(uuid string) []received {
	var out []received
	for _, e := range w.all() {
		if e.Change.UUID == uuid {
			out = append(out, e)
		}
	}
	return out
}

// get sends a GET to the callback endpoint with the raw query and returns the status and body.
func (w *world) get(rawQuery string) (int, string) {
	w.t.Helper()
	return w.do(http.MethodGet, rawQuery, nil)
}

func (w *world) do(method, rawQuery string, body []byte) (int, string) {
	w.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := w.cbURL
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(testworld.Context(w.t), method, u, rd)
	} else {
		req, err = http.NewRequestWithContext(testworld.Context(w.t), method, u, nil)
	}
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// received is one stored status event.
type received struct {
	Subject string
	MsgID   string
	Event   schemas.Event
	Change  schemas.StatusChange
	Raw     []byte
}

type collector struct {
	mu     sync.Mutex
	events []received
}

func (c *collector) add(t *testing.T, m jetstream.Msg) {
	r := received{Subject: m.Subject(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), Raw: m.Data()}
	if err := json.Unmarshal(m.Data(), &r.Event); err != nil {
		t.Errorf("stored event is not JSON: %v", err)
	} else if err := json.Unmarshal(r.Event.Data, &r.Change); err != nil {
		t.Errorf("stored event data: %v", err)
	}
	c.mu.Lock()
	c.events = append(c.events, r)
	c.mu.Unlock()
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.events...)
}

// counter is an Observer that counts.
type counter struct {
	mu      sync.Mutex
	codes   map[int]int
	changes map[string]int // source/outcome
}

func (c *counter) Callback(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.codes == nil {
		c.codes = map[int]int{}
	}
	c.codes[code]++
}

func (c *counter) Change(source, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changes == nil {
		c.changes = map[string]int{}
	}
	c.changes[source+"/"+outcome]++
}

func (c *counter) count(source, outcome string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changes[source+"/"+outcome]
}

// settled is the number of changes from source with any outcome.
func (c *counter) settled(source string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, o := range []string{Published, Duplicate, Rejected, Failed} {
		n += c.changes[source+"/"+o]
	}
	return n
}

// waitSettled waits until n changes from source have ended.
func (c *counter) waitSettled(t *testing.T, source string, n int) {
	t.Helper()
	testworld.WaitFor(t, func() bool { return c.settled(source) >= n }, fmt.Sprintf("%d %s changes settled", n, source))
}

type strList struct {
	mu sync.Mutex
	s  []string
}

func (l *strList) add(s string) {
	l.mu.Lock()
	l.s = append(l.s, s)
	l.mu.Unlock()
}

func (l *strList) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.s...)
}

// checkEvent holds a stored event to the contract: status.schema.json, its type on its subject,
// Nats-Msg-Id its id, the id the canonical change's, subject the uuid.
func checkEvent(t *testing.T, r received) {
	t.Helper()
	if err := testworld.SchemaError(schemas.StatusSchema, r.Raw); err != nil {
		t.Errorf("event does not follow status.schema.json: %v\n%s", err, r.Raw)
	}
	c := r.Change
	if want := EventID("", c.UUID, c.Status, c.At, c.Amount); r.Event.ID != want || r.MsgID != want {
		t.Errorf("event id %s, Nats-Msg-Id %s; want %s", r.Event.ID, r.MsgID, want)
	}
	if r.Subject != r.Event.Type || r.Event.Subject != c.UUID || r.Event.Source != testSource {
		t.Errorf("event on %s: type %s, subject %s, source %s", r.Subject, r.Event.Type, r.Event.Subject, r.Event.Source)
	}
	if at, err := time.Parse(time.RFC3339, c.At); err != nil || !at.Equal(at.Truncate(time.Minute)) || at.Location() != time.UTC {
		t.Errorf("at %q is not a minute in UTC", c.At)
	}
}
