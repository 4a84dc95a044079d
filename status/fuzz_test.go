package status

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The callback fuzz runs the handler alone: in-memory fakes of the API, the publisher and the
// state bucket stand in for the sandbox and NATS, since what is under test is the parsing of the
// query and what the handler answers. The verification still runs in full behind it.

const fuzzSecret = "fuzz-callback-secret"

// fuzzNow is the services' clock: the seeds' timestamps lie around it.
var fuzzNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// fuzzAPI answers the details of a reservation paid 51.00, reserved, captured and charged at
// fuzzNow, for uuids starting with RES; any other uuid is 404. It counts its calls.
type fuzzAPI struct {
	mu    sync.Mutex
	calls int
}

func (a *fuzzAPI) Details(_ context.Context, uuid string) (*frontpay.Result[frontpay.Reservation], error) {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	if !strings.HasPrefix(uuid, "RES") {
		return nil, &frontpay.Error{Op: frontpay.ReservationDetails, HTTPStatus: http.StatusNotFound, Sent: true, Message: "reservationNotFound"}
	}
	at := frontpay.Text(fuzzNow.Format(time.RFC3339))
	pay := []frontpay.HistoryPayment{{At: at, Amount: frontpay.Num("51.00"), Reference: "CAP1"}}
	return &frontpay.Result[frontpay.Reservation]{
		Response: frontpay.Response{HTTPStatus: 200, Raw: json.RawMessage("{}")},
		Data: frontpay.Reservation{
			ReservationUUID: uuid, Status: "RESERVED", IsPaid: true,
			PaymentHistory: &frontpay.PaymentHistory{
				Reserved: []frontpay.HistoryAmount{{At: at, Amount: frontpay.Num("51.00")}},
				Captured: pay, Charged: pay,
			},
		},
	}, nil
}

func (a *fuzzAPI) History(context.Context, time.Time, time.Time) (*frontpay.Result[[]frontpay.HistoryEvent], error) {
	return &frontpay.Result[[]frontpay.HistoryEvent]{}, nil
}

func (a *fuzzAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// fuzzPub keeps what is published.
type fuzzPub struct {
	mu   sync.Mutex
	msgs []fuzzMsg
}

type fuzzMsg struct {
	subject, id string
	data        []byte
}

func (p *fuzzPub) Publish(_ context.Context, subject, msgID string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, fuzzMsg{subject, msgID, bytes.Clone(data)})
	return nil
}

// fuzzKV is the two calls of the state bucket that publishing a status change makes. Any other
// call panics on the nil interface, which the fuzz would report.
type fuzzKV struct {
	jetstream.KeyValue
	mu sync.Mutex
	m  map[string][]byte
}

type fuzzEntry struct{ jetstream.KeyValueEntry }

func (kv *fuzzKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if _, ok := kv.m[key]; ok {
		return fuzzEntry{}, nil
	}
	return nil, jetstream.ErrKeyNotFound
}

func (kv *fuzzKV) Create(_ context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if _, ok := kv.m[key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	kv.m[key] = value
	return uint64(len(kv.m)), nil
}

// The words a callback's answer may hold: nothing of the request but the names of parameters.
var (
	fuzzAnswerKeys   = map[string]bool{"error": true, "parameter": true, "status": true}
	fuzzAnswerErrors = map[string]bool{
		"method_not_allowed": true, "busy": true, "query_too_long": true, "body_not_allowed": true,
		"malformed_query": true, "missing_parameter": true, "invalid_parameter": true, "invalid_checksum": true,
	}
	fuzzAnswerParams = map[string]bool{
		"orderUuid": true, "status": true, "amount": true, "timestamp": true, "paymentMethod": true, "checksum": true,
	}
	fuzzCodes = map[int]bool{
		http.StatusAccepted: true, http.StatusBadRequest: true, http.StatusUnauthorized: true,
		http.StatusMethodNotAllowed: true, http.StatusRequestURITooLong: true, http.StatusServiceUnavailable: true,
	}
)

// fuzzSandboxQuery is a query as the sandbox sends it (frontpay/sandbox/callbacks.go).
func fuzzSandboxQuery(secret, uuid, status, amount, method string, ts time.Time) string {
	q := url.Values{}
	q.Set("orderUuid", uuid)
	q.Set("status", status)
	q.Set("amount", amount)
	q.Set("paymentMethod", method)
	t := strconv.FormatInt(ts.Unix(), 10)
	q.Set("timestamp", t)
	if secret != "" {
		q.Set("checksum", sandbox.Checksum(secret, uuid, status, amount, t))
	}
	return q.Encode()
}

// FuzzCallbackQuery sends arbitrary raw queries to the callback handler, with and without a
// secret, open or closed. It never panics (also in the verification behind the answer); it
// answers only the documented codes, no 5xx but 503, and a 503 only when closed; the answer is a
// JSON object of fixed words that never echoes the request; a refused callback makes no API call
// and publishes nothing; what is published is a valid status event.
func FuzzCallbackQuery(f *testing.F) {
	past := fuzzNow.Add(-time.Minute)
	for _, secret := range []string{"", fuzzSecret} {
		var flags uint8
		if secret != "" {
			flags = 1
		}
		for _, q := range []string{
			fuzzSandboxQuery(secret, "RES1943140879", "reserved", "51.00", "visa", past),
			fuzzSandboxQuery(secret, "RES1943140879", "captured", "51.00", "mastercard", past),
			fuzzSandboxQuery(secret, "RES1943140879", "charged", "51.00", "visa", past),
			fuzzSandboxQuery(secret, "RES4161996022", "reserved", "1000.00", "visa", past),
			fuzzSandboxQuery(secret, "ODR1234567890", "paid", "51.00", "invoice", past),
			fuzzSandboxQuery(secret, "ODR1234567890", "invoiced", "51.00", "invoice", past),
			fuzzSandboxQuery(secret, "NOPE12345", "captured", "51.00", "visa", past),
		} {
			f.Add(flags, q)
			f.Add(flags|2, q) // closed: 503
		}
		f.Add(flags, "")
		f.Add(flags, "orderUuid=RES1&status=RESERVED&amount=51&timestamp=1795255140")
		f.Add(flags, "orderUuid=RES1&orderUuid=RES2&status=reserved&amount=51&timestamp=1795255140")
		f.Add(flags, "orderUuid=../../etc&status=reserved&amount=51&timestamp=1795255140")
		f.Add(flags, "orderUuid=RES1&status=reserved&amount=-1&timestamp=1795255140")
		f.Add(flags, "orderUuid=RES1&status=reserved&amount=1e99&timestamp=1795255140")
		f.Add(flags, "orderUuid=RES1&status=reserved&amount=0.001&timestamp=99999999999999")
		f.Add(flags, "orderUuid=RES1&status=reserved&amount=51&timestamp=1795255140&paymentMethod=%3Cscript%3E")
		f.Add(flags, "orderUuid=RES1;status=reserved")
		f.Add(flags, "orderUuid=%zz")
		f.Add(flags, "orderUuid=RES1&status=reserved&amount=51&timestamp=1795255140&checksum=00&redirect=http://evil.example")
		f.Add(flags, strings.Repeat("a=b&", 600))
	}
	f.Fuzz(func(t *testing.T, flags uint8, raw string) {
		secret := ""
		if flags&1 != 0 {
			secret = fuzzSecret
		}
		closed := flags&2 != 0
		api, pub := &fuzzAPI{}, &fuzzPub{}
		kv := &fuzzKV{m: map[string][]byte{}}
		svc := New(Config{
			Source: "fuzz", Secret: secret, Now: func() time.Time { return fuzzNow },
			VerifyTimeout: 5 * time.Second, ReadBackAttempts: 1, ReadBackDelay: time.Millisecond,
		}, api, pub, kv)
		if closed {
			svc.Close()
		}
		r := httptest.NewRequest(http.MethodGet, CallbackPath, nil)
		r.URL.RawQuery = raw
		r.RequestURI = CallbackPath + "?" + raw
		rec := httptest.NewRecorder()
		svc.Handler().ServeHTTP(rec, r)
		svc.Close() // waits for the verification, so a panic in it fails this input

		code := rec.Code
		if !fuzzCodes[code] {
			t.Fatalf("%q: answered %d", raw, code)
		}
		if code == http.StatusServiceUnavailable && !closed {
			t.Fatalf("%q: 503 from an idle, open service", raw)
		}
		if closed && code == http.StatusAccepted {
			t.Fatalf("%q: a closed service accepted a callback", raw)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%q: answer %q is not a JSON object of strings: %v", raw, rec.Body.String(), err)
		}
		for k, v := range body {
			ok := fuzzAnswerKeys[k] && (k == "error" && fuzzAnswerErrors[v] || k == "parameter" && fuzzAnswerParams[v] ||
				k == "status" && v == "accepted" && code == http.StatusAccepted)
			if !ok {
				t.Fatalf("%q: answer holds %q: %q", raw, k, v)
			}
		}
		for name, vs := range rec.Header() {
			for _, v := range vs {
				if len(raw) > 3 && strings.Contains(v, raw) {
					t.Fatalf("%q: header %s echoes the query: %q", raw, name, v)
				}
			}
		}

		calls := api.count()
		pub.mu.Lock()
		msgs := append([]fuzzMsg(nil), pub.msgs...)
		pub.mu.Unlock()
		if code != http.StatusAccepted {
			if calls != 0 || len(msgs) != 0 {
				t.Fatalf("%q: refused with %d, yet %d API calls and %d events", raw, code, calls, len(msgs))
			}
			return
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("%q: accepted a query that does not parse: %v", raw, err)
		}
		st := strings.ToLower(q.Get("status"))
		switch {
		case reservationStatuses[st] && calls != 1:
			t.Fatalf("%q: a %s callback read back %d times, want 1", raw, st, calls)
		case orderStatuses[st] && calls != 0:
			t.Fatalf("%q: an order callback read back %d times", raw, calls)
		case orderStatuses[st] && secret == "" && len(msgs) != 0:
			t.Fatalf("%q: an order callback without a secret published %d events", raw, len(msgs))
		}
		if len(msgs) > 1 {
			t.Fatalf("%q: one callback published %d events", raw, len(msgs))
		}
		for _, m := range msgs {
			var ev schemas.Event
			var ch schemas.StatusChange
			if err := json.Unmarshal(m.data, &ev); err != nil || json.Unmarshal(ev.Data, &ch) != nil {
				t.Fatalf("%q: published %q", raw, m.data)
			}
			if m.id != ev.ID || ev.Subject != q.Get("orderUuid") || ch.UUID != ev.Subject || ch.Status != st || ch.Source != SourceCallback {
				t.Fatalf("%q: published %s with id %s", raw, m.data, m.id)
			}
			if m.subject != schemas.StatusSubject("", "reservation") && m.subject != schemas.StatusSubject("", "order") {
				t.Fatalf("%q: published on %s", raw, m.subject)
			}
		}
	})
}

// TestFuzzCallbackHarness checks that the fuzz's fakes let a real callback through to its
// event, so that FuzzCallbackQuery exercises the verification and not only refusals.
func TestFuzzCallbackHarness(t *testing.T) {
	for _, secret := range []string{"", fuzzSecret} {
		api, pub := &fuzzAPI{}, &fuzzPub{}
		svc := New(Config{Source: "fuzz", Secret: secret, Now: func() time.Time { return fuzzNow }, ReadBackAttempts: 1},
			api, pub, &fuzzKV{m: map[string][]byte{}})
		r := httptest.NewRequest(http.MethodGet, CallbackPath, nil)
		r.URL.RawQuery = fuzzSandboxQuery(secret, "RES1943140879", "captured", "51.00", "visa", fuzzNow.Add(-time.Minute))
		rec := httptest.NewRecorder()
		svc.Handler().ServeHTTP(rec, r)
		svc.Close()
		if rec.Code != http.StatusAccepted || api.count() != 1 || len(pub.msgs) != 1 {
			t.Fatalf("secret %q: %d %s, %d reads, %d events", secret, rec.Code, rec.Body, api.count(), len(pub.msgs))
		}
	}
}
