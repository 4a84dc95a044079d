package status

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
)

const testSecret = "callback-secret-for-tests"

// callbackQuery is the query Front Payment sends, with the checksum under secret ("" none).
func callbackQuery(secret, uuid, status, amount, ts, method string) url.Values {
	q := url.Values{}
	q.Set("orderUuid", uuid)
	q.Set("status", status)
	q.Set("amount", amount)
	q.Set("timestamp", ts)
	if method != "" {
		q.Set("paymentMethod", method)
	}
	if secret != "" {
		q.Set("checksum", sandbox.Checksum(secret, uuid, status, amount, ts))
	}
	return q
}

type want struct{ status, amount, source string }

func changesOf(rs []received) []want {
	var out []want
	for _, r := range rs {
		out = append(out, want{r.Change.Status, r.Change.Amount, r.Change.Source})
	}
	return out
}

// historySpy records the windows the history is read for.
type historySpy struct {
	API
	mu     sync.Mutex
	starts []time.Time
}

func (h *historySpy) History(ctx context.Context, start, end time.Time) (*frontpay.Result[[]frontpay.HistoryEvent], error) {
	h.mu.Lock()
	h.starts = append(h.starts, start)
	h.mu.Unlock()
	return h.API.History(ctx, start, end)
}

// TestLifecycle follows reservations through the sandbox: every change is one event, whether the
// callback, a repeated callback or the history poll sees it, and the checkpoint survives a restart.
func TestLifecycle(t *testing.T) {
	w := setup(t, testSecret)
	svc, obs := w.service(nil)

	// A reservation with a callbackUrl: each change yields one event from its callback.
	res := w.submit(true)
	w.pay(res)
	obs.waitSettled(t, SourceCallback, 1)
	w.capture(res, 10000)
	obs.waitSettled(t, SourceCallback, 2)
	w.charge(res, 2000)
	obs.waitSettled(t, SourceCallback, 3)
	if n := obs.count(SourceCallback, Published); n != 3 {
		t.Fatalf("%d callbacks published, want 3 (log:\n%s)", n, w.logs)
	}
	got := w.of(res)
	wantCB := []want{{"reserved", "150.00", "callback"}, {"captured", "100.00", "callback"}, {"charged", "20.00", "callback"}}
	if !slices.Equal(changesOf(got), wantCB) {
		t.Fatalf("events %v, want %v", changesOf(got), wantCB)
	}
	for _, r := range got {
		checkEvent(t, r)
		if r.Change.PaymentMethod != "" {
			t.Errorf("payment method %q from a callback, which nothing confirms", r.Change.PaymentMethod)
		}
	}

	// The same callback again (as Front Payment might resend it): no new event.
	sent := w.sentQueries.all()
	if len(sent) != 3 {
		t.Fatalf("%d callbacks arrived, want 3", len(sent))
	}
	if code, body := w.get(sent[1]); code != http.StatusAccepted {
		t.Fatalf("resent callback: %d %s", code, body)
	}
	obs.waitSettled(t, SourceCallback, 4)
	if n := obs.count(SourceCallback, Duplicate); n != 1 {
		t.Errorf("resent callback: %d duplicates, want 1", n)
	}

	// The history poll sees the same three changes: nothing new.
	if err := svc.Poll(testworld.Context(w.t)); err != nil {
		t.Fatal(err)
	}
	if n := obs.count(SourceHistory, Duplicate); n != 3 {
		t.Errorf("poll: %d duplicates, want 3", n)
	}
	if n := len(w.all()); n != 3 {
		t.Fatalf("%d events after the poll, want 3", n)
	}

	// A reservation without a callbackUrl: only the poll learns of its changes.
	quiet := w.submit(false)
	w.pay(quiet)
	w.capture(quiet, 10000)
	if err := svc.Poll(testworld.Context(w.t)); err != nil {
		t.Fatal(err)
	}
	got = w.of(quiet)
	wantHist := []want{{"reserved", "150.00", "history"}, {"captured", "100.00", "history"}}
	if !slices.Equal(changesOf(got), wantHist) {
		t.Fatalf("events of the quiet reservation %v, want %v", changesOf(got), wantHist)
	}
	for _, r := range got {
		checkEvent(t, r)
		if r.Change.PaymentMethod != "visa" {
			t.Errorf("payment method %q from the history, want visa", r.Change.PaymentMethod)
		}
	}
	if n := len(w.sentQueries.all()); n != 4 {
		t.Errorf("%d callbacks arrived, want 4 (3 and the resent one)", n)
	}

	// The checkpoint is stored ...
	e, err := w.kv.Get(testworld.Context(w.t), CheckpointKey)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	sec, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)) > time.Minute || time.Until(time.Unix(sec, 0)) > time.Second {
		t.Fatalf("checkpoint %q, want about now", e.Value())
	}

	// ... and survives a restart: the new instance reads from it, less the overlap, and publishes
	// nothing again.
	svc.Close()
	spy := &historySpy{API: w.api}
	svc2, obs2 := w.service(spy)
	if err := svc2.Poll(testworld.Context(w.t)); err != nil {
		t.Fatal(err)
	}
	if len(spy.starts) != 1 || !spy.starts[0].Equal(time.Unix(sec, 0).Add(-Overlap)) {
		t.Fatalf("restarted poll read from %v, want the checkpoint %v less %v", spy.starts, time.Unix(sec, 0).UTC(), Overlap)
	}
	if n := obs2.count(SourceHistory, Published); n != 0 {
		t.Errorf("restarted poll published %d events", n)
	}
	if n := len(w.all()); n != 5 {
		t.Fatalf("%d events after the restart, want 5", n)
	}

	// A change after the restart is published by the next poll.
	w.charge(quiet, 2000)
	if err := svc2.Poll(testworld.Context(w.t)); err != nil {
		t.Fatal(err)
	}
	got = w.of(quiet)
	wantHist = append(wantHist, want{"charged", "20.00", "history"})
	if !slices.Equal(changesOf(got), wantHist) {
		t.Fatalf("events of the quiet reservation %v, want %v", changesOf(got), wantHist)
	}
	checkEvent(t, got[2])
	if n := len(w.all()); n != 6 {
		t.Fatalf("%d events, want 6", n)
	}
}

// TestSameCallbackTwice: a callback sent twice at once is one event.
func TestSameCallbackTwice(t *testing.T) {
	w := setup(t, testSecret)
	_, obs := w.service(nil)
	uuid := w.submit(false)
	w.pay(uuid)
	q := callbackQuery(testSecret, uuid, "reserved", "150.00", unix(time.Now()), "visa").Encode()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if code, body := w.get(q); code != http.StatusAccepted {
				t.Errorf("callback: %d %s", code, body)
			}
		})
	}
	wg.Wait()
	obs.waitSettled(t, SourceCallback, 2)
	got := w.of(uuid)
	if len(got) != 1 {
		t.Fatalf("%d events, want 1: %v", len(got), changesOf(got))
	}
	checkEvent(t, got[0])
	if n := obs.count(SourceCallback, Failed) + obs.count(SourceCallback, Rejected); n != 0 {
		t.Errorf("%d callbacks failed or were rejected", n)
	}
}

// TestBadCallbacks: refused callbacks get the right 4xx, read-backs that disagree publish nothing,
// and the log holds neither a checksum nor a query.
func TestBadCallbacks(t *testing.T) {
	w := setup(t, testSecret)
	_, obs := w.service(nil)
	uuid := w.submit(false)
	w.pay(uuid) // reserved, nothing captured
	ts := unix(time.Now())
	good := func() url.Values { return callbackQuery(testSecret, uuid, "reserved", "150.00", ts, "visa") }
	with := func(mod func(url.Values)) string {
		q := good()
		mod(q)
		return q.Encode()
	}
	// resign recomputes the checksum after a change, so that only the change is wrong.
	resign := func(mod func(url.Values)) string {
		q := good()
		mod(q)
		q.Set("checksum", sandbox.Checksum(testSecret, q.Get("orderUuid"), q.Get("status"), q.Get("amount"), q.Get("timestamp")))
		return q.Encode()
	}
	cases := []struct {
		name   string
		method string
		query  string
		body   []byte
		code   int
		param  string
	}{
		{"POST", http.MethodPost, good().Encode(), nil, http.StatusMethodNotAllowed, ""},
		{"PUT", http.MethodPut, good().Encode(), nil, http.StatusMethodNotAllowed, ""},
		{"HEAD", http.MethodHead, good().Encode(), nil, http.StatusMethodNotAllowed, ""},
		{"no query", http.MethodGet, "", nil, http.StatusBadRequest, "orderUuid"},
		{"missing orderUuid", http.MethodGet, with(func(q url.Values) { q.Del("orderUuid") }), nil, http.StatusBadRequest, "orderUuid"},
		{"invalid orderUuid", http.MethodGet, resign(func(q url.Values) { q.Set("orderUuid", "RES1/../x") }), nil, http.StatusBadRequest, "orderUuid"},
		{"two orderUuids", http.MethodGet, with(func(q url.Values) { q.Add("orderUuid", "RES1") }), nil, http.StatusBadRequest, "orderUuid"},
		{"missing status", http.MethodGet, with(func(q url.Values) { q.Del("status") }), nil, http.StatusBadRequest, "status"},
		{"unknown status", http.MethodGet, resign(func(q url.Values) { q.Set("status", "refunded") }), nil, http.StatusBadRequest, "status"},
		{"missing amount", http.MethodGet, with(func(q url.Values) { q.Del("amount") }), nil, http.StatusBadRequest, "amount"},
		{"negative amount", http.MethodGet, resign(func(q url.Values) { q.Set("amount", "-1.00") }), nil, http.StatusBadRequest, "amount"},
		{"three decimals", http.MethodGet, resign(func(q url.Values) { q.Set("amount", "1.005") }), nil, http.StatusBadRequest, "amount"},
		{"exponent", http.MethodGet, resign(func(q url.Values) { q.Set("amount", "1e999999999") }), nil, http.StatusBadRequest, "amount"},
		{"amount not a number", http.MethodGet, resign(func(q url.Values) { q.Set("amount", "lots") }), nil, http.StatusBadRequest, "amount"},
		{"missing timestamp", http.MethodGet, with(func(q url.Values) { q.Del("timestamp") }), nil, http.StatusBadRequest, "timestamp"},
		{"timestamp not digits", http.MethodGet, resign(func(q url.Values) { q.Set("timestamp", "2024-01-21") }), nil, http.StatusBadRequest, "timestamp"},
		{"timestamp in two days", http.MethodGet, resign(func(q url.Values) { q.Set("timestamp", unix(time.Now().Add(48*time.Hour))) }), nil, http.StatusBadRequest, "timestamp"},
		{"bad paymentMethod", http.MethodGet, with(func(q url.Values) { q.Set("paymentMethod", "visa;rm -rf") }), nil, http.StatusBadRequest, "paymentMethod"},
		{"long paymentMethod", http.MethodGet, with(func(q url.Values) { q.Set("paymentMethod", strings.Repeat("v", 21)) }), nil, http.StatusBadRequest, "paymentMethod"},
		{"malformed query", http.MethodGet, good().Encode() + "&x=%zz", nil, http.StatusBadRequest, ""},
		{"oversized query", http.MethodGet, with(func(q url.Values) { q.Set("pad", strings.Repeat("p", MaxQuery)) }), nil, http.StatusRequestURITooLong, ""},
		{"body", http.MethodGet, good().Encode(), []byte(`{"status":"captured"}`), http.StatusBadRequest, ""},
		{"missing checksum", http.MethodGet, with(func(q url.Values) { q.Del("checksum") }), nil, http.StatusUnauthorized, "checksum"},
		{"forged checksum", http.MethodGet, with(func(q url.Values) {
			q.Set("checksum", sandbox.Checksum("guessed-secret", uuid, "reserved", "150.00", ts))
		}), nil, http.StatusUnauthorized, "checksum"},
		{"checksum of other values", http.MethodGet, with(func(q url.Values) { q.Set("amount", "15000.00") }), nil, http.StatusUnauthorized, "checksum"},
		{"checksum not hex", http.MethodGet, with(func(q url.Values) { q.Set("checksum", "zz") }), nil, http.StatusUnauthorized, "checksum"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := w.do(c.method, c.query, c.body)
			if code != c.code {
				t.Fatalf("%s: %d %s, want %d", c.name, code, body, c.code)
			}
			if c.method == http.MethodHead {
				return
			}
			if c.param != "" && !strings.Contains(body, `"parameter":"`+c.param+`"`) {
				t.Errorf("%s: body %s does not name %s", c.name, body, c.param)
			}
			for _, v := range []string{"RES1/../x", "refunded", "lots", "visa;rm", "guessed", "15000.00", "captured"} {
				if strings.Contains(body, v) {
					t.Errorf("%s: body %s echoes %q", c.name, body, v)
				}
			}
		})
	}

	// Valid in form and checksum, but the read-back disagrees: 202, then nothing published.
	for _, q := range []string{
		callbackQuery(testSecret, "RES0000000001", "reserved", "150.00", ts, "visa").Encode(), // unknown reservation
		callbackQuery(testSecret, uuid, "captured", "150.00", ts, "visa").Encode(),            // never captured
		callbackQuery(testSecret, uuid, "charged", "20.00", ts, "").Encode(),                  // never charged
		callbackQuery(testSecret, uuid, "reserved", "15.00", ts, "visa").Encode(),             // another amount
	} {
		if code, body := w.get(q); code != http.StatusAccepted {
			t.Fatalf("%d %s, want 202", code, body)
		}
	}
	obs.waitSettled(t, SourceCallback, 4)
	if n := obs.count(SourceCallback, Rejected); n != 4 {
		t.Errorf("%d callbacks rejected, want 4", n)
	}
	if n := w.stored(); n != 0 {
		t.Fatalf("%d events published, want none: %v", n, changesOf(w.all()))
	}

	// The log names parameters and uuids, but holds no query and no checksum.
	logs := w.logs.String()
	if !strings.Contains(logs, "callback refused") || !strings.Contains(logs, "status change rejected") {
		t.Errorf("the log does not tell of refusals and rejections:\n%s", logs)
	}
	for _, q := range w.sentQueries.all() {
		if q == "" {
			continue
		}
		if strings.Contains(logs, q) {
			t.Errorf("the log holds the query %q", q)
		}
		v, _ := url.ParseQuery(q)
		if sum := v.Get("checksum"); sum != "" && strings.Contains(logs, sum) {
			t.Errorf("the log holds a checksum")
		}
	}
	for _, s := range []string{testSecret, "RES1/../x", "visa;rm", "1e999999999"} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// TestWithoutSecret: without a secret the checksum is ignored and the read-back decides; order
// callbacks cannot be read back and are rejected.
func TestWithoutSecret(t *testing.T) {
	w := setup(t, "")
	_, obs := w.service(nil)
	uuid := w.submit(false)
	w.pay(uuid)
	ts := unix(time.Now())
	q := callbackQuery("", uuid, "RESERVED", "150", ts, "VISA")
	q.Set("checksum", "not-even-hex")
	if code, body := w.get(q.Encode()); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, body)
	}
	order := callbackQuery("", "ORD1234567890", "paid", "99.00", ts, "")
	if code, body := w.get(order.Encode()); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, body)
	}
	obs.waitSettled(t, SourceCallback, 2)
	got := w.all()
	if len(got) != 1 || got[0].Change.Status != "reserved" || got[0].Change.Amount != "150.00" || got[0].Change.PaymentMethod != "" {
		t.Fatalf("events %v, want the reservation's reserved 150.00 (no payment method: unconfirmed)", changesOf(got))
	}
	checkEvent(t, got[0])
	if n := obs.count(SourceCallback, Rejected); n != 1 {
		t.Errorf("%d rejected, want the order's callback", n)
	}
}

// TestOrderCallback: with a secret and a verified checksum an order's status is published.
func TestOrderCallback(t *testing.T) {
	w := setup(t, testSecret)
	_, obs := w.service(nil)
	at := time.Date(2026, 3, 4, 10, 4, 37, 0, time.UTC)
	q := callbackQuery(testSecret, "ORD1234567890", "Paid", "99.5", unix(at), "")
	if code, body := w.get(q.Encode()); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, body)
	}
	obs.waitSettled(t, SourceCallback, 1)
	got := w.all()
	if len(got) != 1 {
		t.Fatalf("%d events, want 1", len(got))
	}
	r := got[0]
	checkEvent(t, r)
	if r.Subject != "order.status.changed" || r.Change.Status != "paid" || r.Change.Amount != "99.50" ||
		r.Change.At != "2026-03-04T10:04:00Z" || r.Change.Source != "callback" {
		t.Errorf("event %s: %+v", r.Subject, r.Change)
	}
}

// blockingAPI answers Details only once released.
type blockingAPI struct {
	API
	release chan struct{}
}

func (b *blockingAPI) Details(ctx context.Context, uuid string) (*frontpay.Result[frontpay.Reservation], error) {
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.API.Details(ctx, uuid)
}

// TestBusy: beyond MaxInFlight verifications, and after Close, callbacks are answered 503;
// Close waits for the verification in flight.
func TestBusy(t *testing.T) {
	w := setup(t, testSecret)
	api := &blockingAPI{API: w.api, release: make(chan struct{})}
	svc, obs := w.service(api, func(c *Config) { c.MaxInFlight = 1 })
	uuid := w.submit(false)
	w.pay(uuid)
	q := callbackQuery(testSecret, uuid, "reserved", "150.00", unix(time.Now()), "visa").Encode()
	if code, _ := w.get(q); code != http.StatusAccepted {
		t.Fatalf("first callback: %d", code)
	}
	if code, _ := w.get(q); code != http.StatusServiceUnavailable {
		t.Fatalf("second callback while busy: %d, want 503", code)
	}
	closed := make(chan struct{})
	go func() {
		svc.Close()
		close(closed)
	}()
	// Close is waiting for the verification; new callbacks are refused meanwhile.
	testworld.WaitFor(t, func() bool {
		code, _ := w.get(q)
		return code == http.StatusServiceUnavailable && func() bool {
			svc.mu.Lock()
			defer svc.mu.Unlock()
			return svc.closed
		}()
	}, "the service to refuse callbacks")
	select {
	case <-closed:
		t.Fatal("Close returned with a verification in flight")
	default:
	}
	close(api.release)
	select {
	case <-closed:
	case <-time.After(testworld.Patience):
		t.Fatal("Close did not return")
	}
	if n := obs.count(SourceCallback, Published); n != 1 {
		t.Errorf("%d published, want 1", n)
	}
}

// TestRunAndReplicas: Run polls until its context ends; two replicas polling at once publish
// each change once and leave the later checkpoint.
func TestRunAndReplicas(t *testing.T) {
	w := setup(t, "")
	uuid := w.submit(false)
	w.pay(uuid)
	w.capture(uuid, 5000)

	a, obsA := w.service(nil)
	b, obsB := w.service(nil)
	var wg sync.WaitGroup
	for _, s := range []*Service{a, b, a, b} {
		wg.Go(func() {
			if err := s.Poll(testworld.Context(w.t)); err != nil {
				t.Errorf("poll: %v", err)
			}
		})
	}
	wg.Wait()
	if got := changesOf(w.of(uuid)); !slices.Equal(got, []want{{"reserved", "150.00", "history"}, {"captured", "50.00", "history"}}) {
		t.Fatalf("events %v", got)
	}
	if n := obsA.count(SourceHistory, Failed) + obsB.count(SourceHistory, Failed); n != 0 {
		t.Errorf("%d failed", n)
	}

	if _, err := w.kv.Get(testworld.Context(w.t), CheckpointKey); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	runner, obsRun := w.service(nil, func(c *Config) { c.Poll = 20 * time.Millisecond })
	go func() {
		runner.Run(ctx)
		close(done)
	}()
	// Each poll sees the two changes again.
	testworld.WaitFor(t, func() bool { return obsRun.count(SourceHistory, Duplicate) >= 4 }, "Run to poll twice")
	cancel()
	select {
	case <-done:
	case <-time.After(testworld.Patience):
		t.Fatal("Run did not return")
	}
	if n := len(w.of(uuid)); n != 2 {
		t.Errorf("%d events after Run, want 2", n)
	}

	// Poll 0: Run returns at once.
	off, _ := w.service(nil)
	ret := make(chan struct{})
	go func() {
		off.Run(context.Background())
		close(ret)
	}()
	select {
	case <-ret:
	case <-time.After(testworld.Patience):
		t.Fatal("Run with Poll 0 did not return")
	}
}

// TestCanonical: the callback's second and the history's minute name one change.
func TestCanonical(t *testing.T) {
	s := New(Config{}, nil, nil, nil)
	amount := frontpay.Str("150.00")
	method := "Visa"
	h, why, ok := s.fromHistory(frontpay.HistoryEvent{UUID: "RES1", Title: "Captured", Datetime: "21.01.2024 04:00",
		Amount: amount, PaymentMethod: &method})
	if !ok || why != "" {
		t.Fatalf("history entry: %v %q", ok, why)
	}
	c := claim{uuid: "RES1", status: "captured", cents: 15000, ts: time.Date(2024, 1, 21, 4, 0, 59, 0, time.UTC)}
	r := &frontpay.Reservation{ReservationUUID: "RES1", IsPaid: true, PaymentHistory: &frontpay.PaymentHistory{
		Captured: []frontpay.HistoryPayment{
			{At: "2024-01-20T04:00:10Z", Amount: frontpay.Num("150.00")},
			{At: "2024-01-21T04:00:12Z", Amount: frontpay.Num("150")},
			{At: "2024-01-21T04:00:13Z", Amount: frontpay.Num("20.00")},
		},
	}}
	at, disagreement := confirm(r, c, time.UTC)
	if disagreement != "" {
		t.Fatal(disagreement)
	}
	cb := change{resource: "reservation", uuid: "RES1", status: "captured", cents: 15000, at: at, source: SourceCallback}
	dh, dc := h.data(), cb.data()
	if dh.At != "2024-01-21T04:00:00Z" || dc.At != dh.At || dh.Amount != "150.00" || dh.PaymentMethod != "visa" {
		t.Fatalf("history %+v, callback %+v", dh, dc)
	}
	if EventID("", dh.UUID, dh.Status, dh.At, dh.Amount) != EventID("", dc.UUID, dc.Status, dc.At, dc.Amount) {
		t.Fatal("one change, two ids")
	}
	if EventID("", "RES1", "captured", dh.At, "150.00") == EventID("", "RES1", "captured", dh.At, "20.00") {
		t.Fatal("two amounts in one minute share an id")
	}

	// Read-backs that disagree.
	for name, c := range map[string]claim{
		"amount":   {uuid: "RES1", status: "captured", cents: 1, ts: c.ts},
		"charged":  {uuid: "RES1", status: "charged", cents: 15000, ts: c.ts},
		"reserved": {uuid: "RES1", status: "reserved", cents: 15000, ts: c.ts},
		"uuid":     {uuid: "RES2", status: "captured", cents: 15000, ts: c.ts},
	} {
		if _, d := confirm(r, c, time.UTC); d == "" {
			t.Errorf("%s: the read-back agrees", name)
		}
	}
	// Entries of no interest, and unreadable ones.
	for _, e := range []frontpay.HistoryEvent{
		{UUID: "RES1", Title: "refund-sent-from-captured", Datetime: "21.01.2024 04:00", Amount: amount},
		{UUID: "RES1", Title: "payment-link-resent", Datetime: "21.01.2024 04:00", Amount: amount},
	} {
		if _, _, ok := s.fromHistory(e); ok {
			t.Errorf("%s taken for a status change", e.Title)
		}
	}
	for _, e := range []frontpay.HistoryEvent{
		{UUID: "RES 1", Title: "reserved", Datetime: "21.01.2024 04:00", Amount: amount},
		{UUID: "RES1", Title: "reserved", Datetime: "2024-01-21", Amount: amount},
		{UUID: "RES1", Title: "reserved", Datetime: "21.01.2024 04:00", Amount: frontpay.Num("1.005")},
	} {
		if _, why, ok := s.fromHistory(e); !ok || why == "" {
			t.Errorf("%+v read as a change", e)
		}
	}
}

// TestForgedPaymentMethod: a callback's paymentMethod is confirmed by neither the details
// read-back nor the checksum (which covers orderUuid, status, amount and timestamp), so it is
// never published (issue 11, item 8): the event carries what the read-back confirms, and the
// history poll, finding the change published, publishes nothing forged either.
func TestForgedPaymentMethod(t *testing.T) {
	for _, secret := range []string{"", testSecret} {
		t.Run("secret "+strconv.FormatBool(secret != ""), func(t *testing.T) {
			w := setup(t, secret)
			svc, obs := w.service(nil)
			uuid := w.submit(false)
			w.pay(uuid)
			// Signed when there is a secret: the checksum does not cover paymentMethod.
			q := callbackQuery(secret, uuid, "reserved", "150.00", unix(time.Now()), "forged")
			if code, body := w.get(q.Encode()); code != http.StatusAccepted {
				t.Fatalf("%d %s", code, body)
			}
			obs.waitSettled(t, SourceCallback, 1)
			if err := svc.Poll(testworld.Context(w.t)); err != nil {
				t.Fatal(err)
			}
			got := w.of(uuid)
			if len(got) != 1 || got[0].Change.Status != "reserved" || got[0].Change.Source != SourceCallback {
				t.Fatalf("events %v, want the callback's reserved", changesOf(got))
			}
			checkEvent(t, got[0])
			if m := got[0].Change.PaymentMethod; m != "" {
				t.Errorf("published paymentMethod %q, which nothing confirmed", m)
			}
			if strings.Contains(string(got[0].Raw), "forged") {
				t.Errorf("the event holds the forged value: %s", got[0].Raw)
			}
			if n := obs.count(SourceHistory, Duplicate); n != 1 {
				t.Errorf("the poll: %d duplicates, want 1", n)
			}
		})
	}
}
