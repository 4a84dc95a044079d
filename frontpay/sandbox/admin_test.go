package sandbox

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// control sends a test control request (no token) and checks its status.
func (e *env) control(method, path string, body any, status int) reply {
	e.t.Helper()
	r := e.send(method, path, body, "")
	if r.status != status {
		e.t.Fatalf("%s %s: HTTP %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.submit()
	page := string(e.control("GET", "/checkout/"+uuid, nil, 200).body)
	if !strings.Contains(page, `<form method="post" action="/checkout/`+uuid+`">`) || !strings.Contains(page, "Pay</button>") {
		t.Errorf("checkout page:\n%s", page)
	}
	e.control("POST", "/checkout/"+uuid, "", 200)
	if d := e.details(uuid); d.Status != StatusReserved {
		t.Errorf("status %s", d.Status)
	}
	if page = string(e.control("POST", "/checkout/"+uuid, "", 409).body); strings.Contains(page, "<form") {
		t.Errorf("a paid reservation offers to pay again:\n%s", page)
	}
	e.control("GET", "/checkout/RES1000000001", nil, 404)

	order := e.createOrder()
	e.control("POST", "/checkout/"+order, "", 200)
	if o := e.sb.Orders(); o[0].Status != StatusPaid {
		t.Errorf("order %+v", o[0])
	}
}

func TestControls(t *testing.T) {
	t.Parallel()
	e := setup(t)

	// Orders and their payment.
	order := e.createOrder()
	var orders []OrderInfo
	if err := json.Unmarshal(e.control("GET", "/sandbox/orders", nil, 200).body, &orders); err != nil {
		t.Fatal(err)
	}
	if len(orders) != 1 || orders[0].UUID != order || orders[0].Status != StatusSent || orders[0].GrandTotalCents != 5100 || !orders[0].CreatedAt.Equal(t0) {
		t.Errorf("orders %+v", orders)
	}
	r := e.control("POST", "/sandbox/orders/"+order+"/pay", nil, 200)
	if string(r.env["status"]) != `"PAID"` {
		t.Errorf("pay order: %s", r.body)
	}
	e.control("POST", "/sandbox/orders/"+order+"/pay", nil, 409)
	e.control("POST", "/sandbox/orders/ODR1000000000/pay", nil, 404)

	// Reservation payment.
	uuid := e.submit()
	r = e.control("POST", "/sandbox/reservations/"+uuid+"/pay", nil, 200)
	if string(r.env["status"]) != `"RESERVED"` {
		t.Errorf("pay reservation: %s", r.body)
	}
	e.control("POST", "/sandbox/reservations/"+uuid+"/pay", nil, 409)
	e.control("POST", "/sandbox/reservations/"+unknown+"/pay", nil, 404)

	// Faults.
	faults := "/sandbox/faults/" + string(frontpay.ReservationDetails)
	e.control("PUT", faults, `{"errorShare": 1, "errorStatus": 500, "latency": "1ms"}`, 204)
	e.api(frontpay.ReservationDetails, nil, uuid).expect(t, 500, "internalErrorOccurredPleaseTryAgainLater", shapeErrorTrue)
	e.control("PUT", faults, `{}`, 204)
	e.details(uuid)
	e.control("PUT", faults, `{"errorShare": 1, "times": 1, "latency": 1000}`, 204)
	e.api(frontpay.ReservationDetails, nil, uuid).expect(t, 503, "internalErrorOccurredPleaseTryAgainLater", shapeErrorTrue)
	e.details(uuid)
	e.control("PUT", "/sandbox/faults/reservation.nothing", `{}`, 404)
	e.control("PUT", faults, `{"errorShare": 2}`, 400)
	e.control("PUT", faults, `{"latency": "soon"}`, 400)

	// Rate limit: a new limit starts a fresh window.
	e.control("PUT", "/sandbox/ratelimit", `{"perMinute": 1}`, 204)
	e.details(uuid)
	e.api(frontpay.ReservationDetails, nil, uuid).expect(t, 429, "tooManyAttempts", shapeErrorTrue)
	e.control("PUT", "/sandbox/ratelimit", `{"perMinute": -1}`, 204)
	e.details(uuid)
	e.control("PUT", "/sandbox/ratelimit", `{}`, 400)

	// Ledger.
	var ledger []Effect
	if err := json.Unmarshal(e.control("GET", "/sandbox/ledger", nil, 200).body, &ledger); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, f := range ledger {
		ops = append(ops, f.Op)
	}
	if got := strings.Join(ops, " "); got != "order.create order.pay reservation.submit customer.pay" {
		t.Errorf("ledger ops: %s", got)
	}
	if ledger[0].UUID != order || ledger[0].Cents != 5100 || len(ledger[0].Body) == 0 || ledger[3].Seq != 4 {
		t.Errorf("ledger %+v", ledger)
	}
}

// TestReserve seeds a reservation under a chosen UUID: it is RESERVED, can be captured through
// the API, and the UUID is never handed out twice.
func TestReserve(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const uuid = "RES0000000001"
	if err := e.sb.Reserve(uuid, e.submitRequest()); err != nil {
		t.Fatal(err)
	}
	d := e.details(uuid)
	if d.Status != StatusReserved || len(d.ProductList) != 2 {
		t.Fatalf("seeded reservation: status %s, %d lines", d.Status, len(d.ProductList))
	}
	ids := e.ids(uuid)
	e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 4000}))
	if got := strings.Join(e.effects(), " "); got != "reservation.submit customer.pay reservation.capture" {
		t.Errorf("ledger %s", got)
	}
	if err := e.sb.Reserve(uuid, e.submitRequest()); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("the same UUID again: %v", err)
	}
	if err := e.sb.Reserve("RES/1", e.submitRequest()); err == nil {
		t.Error("a UUID with a slash was accepted")
	}
	past := e.submitRequest(func(q *frontpay.SubmitReservationRequest) { q.DueDateForPaymentLink = unix(t0.Add(-time.Hour)) })
	if err := e.sb.Reserve("RES0000000002", past); err == nil {
		t.Error("a submit the API would refuse was accepted")
	}
}
