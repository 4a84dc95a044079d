package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

const testToken = "test-token"

// t0 is where every test clock starts.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one sandbox behind a real HTTP server.
type env struct {
	t     *testing.T
	sb    *Sandbox
	url   string
	clock *fakeClock
	http  *http.Client
}

// setup starts a sandbox (token testToken, clock at t0, seed 1) behind an httptest server; opts
// adjust its Options.
func setup(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	return setupWith(t, nil, opts...)
}

// setupWith is setup that hands the sandbox to before, when not nil, before it serves.
func setupWith(t *testing.T, before func(*Sandbox), opts ...func(*Options)) *env {
	t.Helper()
	clock := &fakeClock{now: t0}
	o := Options{Token: testToken, Clock: clock.Now, Seed: 1}
	for _, f := range opts {
		f(&o)
	}
	sb := New(o)
	if before != nil {
		before(sb)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() {
		srv.Close()
		sb.Close()
	})
	return &env{t: t, sb: sb, url: srv.URL, clock: clock, http: srv.Client()}
}

// reply is an answer as read off the wire.
type reply struct {
	status int
	header http.Header
	body   []byte
	env    map[string]json.RawMessage // the JSON object, if the body is one
}

// encode turns a request body given as nil, a string (sent as is) or a value (sent as JSON) into
// bytes.
func encode(t *testing.T, body any) []byte {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return []byte(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		return raw
	}
}

// try sends one request; authorization is sent when non-empty.
func (e *env) try(ctx context.Context, method, path string, body []byte, authorization string) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		return reply{}, err
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: raw}
	_ = json.Unmarshal(raw, &r.env)
	return r, nil
}

// send sends one request and fails the test on a transport error.
func (e *env) send(method, path string, body any, authorization string) reply {
	e.t.Helper()
	r, err := e.try(context.Background(), method, path, encode(e.t, body), authorization)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// path fills an operation's path placeholders in order.
func path(op frontpay.Operation, params ...string) string {
	ep := op.Endpoint()
	p := ep.Path
	for i, name := range ep.Params {
		p = strings.Replace(p, "{"+name+"}", params[i], 1)
	}
	return p
}

// api calls an operation with the right token.
func (e *env) api(op frontpay.Operation, body any, params ...string) reply {
	e.t.Helper()
	return e.apiAs(testToken, op, body, params...)
}

// apiAs calls an operation with token.
func (e *env) apiAs(token string, op frontpay.Operation, body any, params ...string) reply {
	e.t.Helper()
	return e.send(op.Endpoint().Method, path(op, params...), body, "Bearer "+token)
}

// statusMessages are the documents' status_message values, written out again so that the tests
// do not read them from the code under test.
var wantStatusMessages = map[int]string{
	200: "OK", 201: "OK", 202: "OK",
	400: "Conflict of Business Logic", 401: "Unauthorized", 404: "Not Found",
	417: "Client Error", 429: "Too Many Requests",
	500: "Internal Dependency Error", 503: "Internal Dependency Error", 510: "Execution Exception Occurred",
}

// expect checks the envelope: the HTTP status is status_code, status_message and message are as
// documented, and exactly the members of sh are there with its flag (and null payload where sh
// says false).
func (r reply) expect(t *testing.T, status int, message string, sh shape) {
	t.Helper()
	if r.status != status || r.env == nil {
		t.Fatalf("got HTTP %d %s, want %d %s", r.status, r.body, status, message)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	flag, payload := "is_data", "data"
	if sh == shapeErrorFalse || sh == shapeErrorTrue {
		flag, payload = "is_error", "errors"
	}
	want := map[string]string{
		"status_code":    strconv.Itoa(status),
		"status_message": strconv.Quote(wantStatusMessages[status]),
		"message":        strconv.Quote(message),
		flag:             strconv.FormatBool(sh == shapeDataTrue || sh == shapeErrorTrue),
	}
	if sh == shapeDataFalse || sh == shapeErrorFalse {
		want[payload] = "null"
	}
	for k, v := range want {
		if got := string(r.env[k]); got != v {
			t.Errorf("%s = %s, want %s (body %s)", k, got, v, r.body)
		}
	}
	if _, ok := r.env[payload]; !ok || len(r.env) != 5 {
		t.Errorf("members of %s: want status_code, status_message, message, %s, %s", r.body, flag, payload)
	}
}

// data decodes the envelope's data (or errors) member into v.
func (r reply) data(t *testing.T, v any) {
	t.Helper()
	raw, ok := r.env["data"]
	if !ok {
		raw = r.env["errors"]
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}

func ptr[T any](v T) *T { return &v }

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// submitRequest is a valid submit: two products of 100.00 and 50.00, grand total 150.00, due in
// a day. mods adjust it.
func (e *env) submitRequest(mods ...func(*frontpay.SubmitReservationRequest)) *frontpay.SubmitReservationRequest {
	q := &frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			UUID: ptr(""), Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "kari@example.com",
			Name: "Kari Nordmann", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "Storgata 1", Zip: "0155", City: "Oslo", Country: "NO"},
		},
		OrderDate:             unix(e.clock.Now()),
		DueDateForPaymentLink: unix(e.clock.Now().Add(24 * time.Hour)),
		SendOrderBy:           &frontpay.SendOrderBy{SMS: ptr(false), Email: ptr(true)},
		Products: frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Tent", Rate: frontpay.Num("100"), Tax: frontpay.Str("25"), Amount: frontpay.Num("100.00")},
			{Name: "Stove", ProductID: ptr("ST-1"), Rate: frontpay.Num("50"), Tax: frontpay.Str("25"), Amount: frontpay.Num("50")},
		},
		OrderSummary: &frontpay.ReservationSummary{SubTotal: frontpay.Num("120"), TotalTax: frontpay.Num("30"), GrandTotal: frontpay.Num("150.00")},
	}
	for _, m := range mods {
		m(q)
	}
	return q
}

// sessionRequest is submitRequest as a session paid by via.
func (e *env) sessionRequest(via string, mods ...func(*frontpay.SubmitReservationRequest)) *frontpay.CreateSessionRequest {
	e.t.Helper()
	q := &frontpay.CreateSessionRequest{SubmitPayment: &frontpay.SubmitPayment{Via: via}}
	if err := json.Unmarshal(encode(e.t, e.submitRequest(mods...)), q); err != nil {
		e.t.Fatal(err)
	}
	return q
}

// submit submits a reservation and returns its uuid.
func (e *env) submit(mods ...func(*frontpay.SubmitReservationRequest)) string {
	e.t.Helper()
	return e.submitAs(testToken, mods...)
}

// submitAs submits a reservation with token and returns its uuid.
func (e *env) submitAs(token string, mods ...func(*frontpay.SubmitReservationRequest)) string {
	e.t.Helper()
	r := e.apiAs(token, frontpay.ReservationSubmit, e.submitRequest(mods...))
	r.expect(e.t, 201, "Reservation Submitted Successfully", shapeDataTrue)
	var res frontpay.SubmitReservationResult
	r.data(e.t, &res)
	return res.ReservationUUID
}

// reserved submits a reservation, has the customer pay it and returns its uuid and product ids.
func (e *env) reserved(mods ...func(*frontpay.SubmitReservationRequest)) (string, []int64) {
	e.t.Helper()
	uuid := e.submit(mods...)
	if err := e.sb.Pay(uuid); err != nil {
		e.t.Fatal(err)
	}
	return uuid, e.ids(uuid)
}

// ids lists the product ids of a reservation.
func (e *env) ids(uuid string) []int64 {
	e.t.Helper()
	var ids []int64
	for _, p := range e.details(uuid).ProductList {
		id, err := strconv.ParseInt(p.ID.String(), 10, 64)
		if err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// details reads a reservation.
func (e *env) details(uuid string) frontpay.Reservation {
	e.t.Helper()
	r := e.api(frontpay.ReservationDetails, nil, uuid)
	r.expect(e.t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
	var res frontpay.Reservation
	r.data(e.t, &res)
	return res
}

// item is one request line: a product id and an amount in cents.
type item struct {
	id    int64
	cents int64
}

func captureLines(items []item) (frontpay.Lines[frontpay.CaptureLine], frontpay.Number) {
	var lines frontpay.Lines[frontpay.CaptureLine]
	var sum int64
	for _, it := range items {
		lines = append(lines, frontpay.CaptureLine{ID: frontpay.Num(strconv.FormatInt(it.id, 10)), Amount: frontpay.FromCents(it.cents)})
		sum += it.cents
	}
	return lines, frontpay.FromCents(sum)
}

func captureReq(items ...item) *frontpay.CaptureRequest {
	lines, total := captureLines(items)
	return &frontpay.CaptureRequest{Products: lines, GrandTotal: total, AdditionalText: ptr("parcel")}
}

func refundReq(source, reference string, items ...item) *frontpay.RefundRequest {
	lines, total := captureLines(items)
	return &frontpay.RefundRequest{Type: "reservation", Source: source, Reference: reference, Products: lines, GrandTotal: total}
}

// chargeReq charges one product line per amount in cents.
func chargeReq(amounts ...int64) *frontpay.ChargeRequest {
	q := &frontpay.ChargeRequest{}
	var sum int64
	for i, c := range amounts {
		q.Products = append(q.Products, frontpay.ReservationProduct{
			Name: "Extra " + strconv.Itoa(i), Rate: frontpay.FromCents(c), Tax: frontpay.Num("0"), Amount: frontpay.FromCents(c),
		})
		sum += c
	}
	q.GrandTotal = frontpay.FromCents(sum)
	return q
}

var (
	note   = &frontpay.NoteRequest{Note: "by test"}
	resend = &frontpay.ResendRequest{Email: ptr("kari@example.com")}
)

// pay captures or charges and returns the new payment's uuid.
func (e *env) pay(op frontpay.Operation, uuid string, body any) string {
	e.t.Helper()
	r := e.api(op, body, uuid)
	msg := map[frontpay.Operation]string{
		frontpay.ReservationCapture: "reservationCapturedSuccessfully",
		frontpay.ReservationCharge:  "reservationChargedSuccessfully",
	}[op]
	r.expect(e.t, 202, msg, shapeDataTrue)
	var res frontpay.PaymentResult
	r.data(e.t, &res)
	return res.UUID
}

// orderReq is a valid invoice order of 51.00.
func orderReq() *frontpay.CreateOrderRequest {
	return &frontpay.CreateOrderRequest{
		Products: frontpay.Lines[frontpay.OrderProduct]{{Name: "Hair Wash", Quantity: frontpay.Str("1"), Rate: frontpay.Num("51"),
			Discount: frontpay.Num("0"), Tax: frontpay.Str("0"), Amount: frontpay.Num("51")}},
		OrderSummary: &frontpay.OrderSummary{SubTotal: frontpay.Str("51.00"), TotalTax: frontpay.Str("0.00"),
			TotalDiscount: frontpay.Str("0.00"), GrandTotal: frontpay.Str("51.00")},
		OrderDate:              "5 Dec, 2023",
		DueDateForPaymentLink:  unix(t0.Add(48 * time.Hour)),
		SendOrderBy:            &frontpay.SendOrderBy{SMS: ptr(false), Email: ptr(false), Invoice: ptr(true)},
		InvoiceAsPaymentOption: ptr(false),
		IsCreditCheckAvailable: ptr(false),
		CustomerDetails: &frontpay.OrderCustomer{Type: "private", Name: "Test", PreferredLanguage: "en", Email: ptr("test@example.com"),
			Address: &frontpay.Address{Street: "Dhaka", Zip: "3500", City: "Cumilla", Country: "NO"}},
	}
}

// createOrder creates an order and returns its uuid, found through Orders.
func (e *env) createOrder() string {
	e.t.Helper()
	e.api(frontpay.OrderCreate, orderReq()).expect(e.t, 201, "orderAddedSuccessfully", shapeDataFalse)
	orders := e.sb.Orders()
	return orders[len(orders)-1].UUID
}

// effects lists the ledger's operations.
func (e *env) effects() []string {
	var ops []string
	for _, f := range e.sb.Ledger() {
		ops = append(ops, f.Op)
	}
	return ops
}

// eventually polls cond until it holds or five seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
