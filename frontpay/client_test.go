package frontpay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// token is the bearer token of every test client and sandbox: recognisable, so that a test can
// tell that it never shows in an error or a log line.
const token = "tok-SECRET-123"

// unknown is a well-formed reservation or order uuid that no sandbox hands out.
const unknown = "RES1000000000"

// t0 is where every clock starts; due is a payment-link due date a day later.
var (
	t0  = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	due = strconv.FormatInt(t0.Add(24*time.Hour).Unix(), 10)
)

// statusMessages are the documented status_message values, written out here so that the tests do
// not take them from the code under test.
var statusMessages = map[int]string{
	400: "Conflict of Business Logic", 401: "Unauthorized", 404: "Not Found", 417: "Client Error",
	429: "Too Many Requests", 500: "Internal Dependency Error", 510: "Execution Exception Occurred",
}

// clock is the time of a sandbox and its clients; a test moves it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// seen is one request as it reached the server.
type seen struct {
	Method, Path string
	Header       http.Header
	Body         string
}

// recorder notes every request and hands it on to the sandbox.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []seen
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.reqs = append(r.reqs, seen{req.Method, req.URL.EscapedPath(), req.Header.Clone(), string(body)})
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// world is a sandbox (token, seed 1, clock at t0) behind a recorder and a real HTTP server on
// loopback. It needs no *testing.T, so that examples use it too.
type world struct {
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	rec   *recorder
	clock *clock
}

func start() *world {
	clk := &clock{now: t0}
	sb := sandbox.New(sandbox.Options{Token: token, Clock: clk.Now, Seed: 1})
	rec := &recorder{next: sb}
	return &world{sb: sb, srv: httptest.NewServer(rec), rec: rec, clock: clk}
}

func (w *world) close() {
	w.srv.Close()
	w.sb.Close()
}

// client returns a client of the world's API with the token, on the world's clock; opts come
// after those defaults.
func (w *world) client(opts ...frontpay.Option) *frontpay.Client {
	c, err := frontpay.New(w.srv.URL, token, append([]frontpay.Option{frontpay.WithClock(w.clock.Now)}, opts...)...)
	if err != nil {
		panic(err)
	}
	return c
}

// reserve submits req and has the customer pay it; it returns the reservation's uuid.
func (w *world) reserve(c *frontpay.Client, req *frontpay.SubmitReservationRequest) (string, error) {
	res, err := c.SubmitReservation(context.Background(), req)
	if err != nil {
		return "", err
	}
	return res.Data.ReservationUUID, w.sb.Pay(res.Data.ReservationUUID)
}

// effects lists the ledger's effects of op.
func (w *world) effects(op frontpay.Operation) []sandbox.Effect {
	var out []sandbox.Effect
	for _, f := range w.sb.Ledger() {
		if f.Op == string(op) {
			out = append(out, f)
		}
	}
	return out
}

// env is a world for one test, with a client c.
type env struct {
	*world
	t *testing.T
	c *frontpay.Client
}

// setup starts a world that ends with the test; opts configure e.c.
func setup(t *testing.T, opts ...frontpay.Option) *env {
	t.Helper()
	w := start()
	t.Cleanup(w.close)
	return &env{world: w, t: t, c: w.client(opts...)}
}

// ok fails the test on err.
func (e *env) ok(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// errOf is the error of a call, for tables of calls.
func errOf[T any](_ T, err error) error { return err }

// twoLines are reservation products of 5.00 and 50.00: in a fresh sandbox they get the product
// ids 298 and 299 that capture.json names.
func twoLines() (frontpay.Lines[frontpay.ReservationProduct], *frontpay.ReservationSummary) {
	return frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Wash", Rate: frontpay.Num("5"), Tax: frontpay.Str("0"), Amount: frontpay.Num("5")},
			{Name: "Cut", Rate: frontpay.Num("50"), Tax: frontpay.Str("0"), Amount: frontpay.Num("50")},
		}, &frontpay.ReservationSummary{
			SubTotal: frontpay.Num("55"), TotalTax: frontpay.Num("0"), GrandTotal: frontpay.Num("55"),
		}
}

// readSeed decodes testdata/file into v, refusing members that v has no field for.
func readSeed(t *testing.T, file string, v any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return raw
}

// seedInto decodes testdata/file into v and moves its due date, if it has one, to due. It returns
// the example as a JSON tree with that due date.
func seedInto(t *testing.T, file string, v any) any {
	t.Helper()
	ex := tree(t, readSeed(t, file, v)).(map[string]any)
	if _, ok := ex["dueDateForPaymentLink"]; ok {
		ex["dueDateForPaymentLink"] = due
		if err := json.Unmarshal([]byte(`{"dueDateForPaymentLink":"`+due+`"}`), v); err != nil {
			t.Fatal(err)
		}
	}
	return ex
}

// seed is seedInto a new T.
func seed[T any](t *testing.T, file string) *T {
	t.Helper()
	v := new(T)
	seedInto(t, file, v)
	return v
}

// submitReq is submit.json with twoLines and no callback.
func submitReq(t *testing.T) *frontpay.SubmitReservationRequest {
	t.Helper()
	q := seed[frontpay.SubmitReservationRequest](t, "submit.json")
	q.Products, q.OrderSummary = twoLines()
	q.Callback = nil
	return q
}

// captureReq is capture.json naming the ids of lines, in order, instead of the document's.
func captureReq(t *testing.T, lines []frontpay.DetailsProduct) *frontpay.CaptureRequest {
	t.Helper()
	q := seed[frontpay.CaptureRequest](t, "capture.json")
	for i := range q.Products {
		q.Products[i].ID = lines[i].ID
	}
	return q
}

// chargeReq is charge.json for amount.
func chargeReq(t *testing.T, amount string) *frontpay.ChargeRequest {
	t.Helper()
	q := seed[frontpay.ChargeRequest](t, "charge.json")
	q.Products[0].Rate, q.Products[0].Amount, q.GrandTotal = frontpay.Num(amount), frontpay.Num(amount), frontpay.Num(amount)
	return q
}

// refundReq is refund.json returning amount of product id from the payment reference of source.
func refundReq(t *testing.T, source, reference string, id frontpay.Number, amount string) *frontpay.RefundRequest {
	t.Helper()
	q := seed[frontpay.RefundRequest](t, "refund.json")
	q.Source, q.Reference, q.GrandTotal = source, reference, frontpay.Num(amount)
	q.Products[0].ID, q.Products[0].Amount = id, frontpay.Num(amount)
	return q
}

// answered returns a check of a call's answer: no error, the HTTP status and the message key. Use
// it as e.answered(202, key)(e.c.Refund(…)).
func (e *env) answered(status int, message string) func(*frontpay.Response, error) *frontpay.Response {
	return func(res *frontpay.Response, err error) *frontpay.Response {
		e.t.Helper()
		e.ok(err)
		if res.HTTPStatus != status || res.Message != message {
			e.t.Fatalf("answered HTTP %d %q, want %d %q", res.HTTPStatus, res.Message, status, message)
		}
		return res
	}
}

// expect is answered for a typed call; it returns the answer's data.
func expect[T any](e *env, status int, message string) func(*frontpay.Result[T], error) T {
	return func(res *frontpay.Result[T], err error) T {
		e.t.Helper()
		e.ok(err)
		e.answered(status, message)(&res.Response, nil)
		return res.Data
	}
}

// submit submits submitReq and checks the answer.
func (e *env) submit() string {
	e.t.Helper()
	res := expect[frontpay.SubmitReservationResult](e, 201, "Reservation Submitted Successfully")(
		e.c.SubmitReservation(e.t.Context(), submitReq(e.t)))
	uuid := res.ReservationUUID
	fields(e.t,
		field{"reservationUuid is a RES", strings.HasPrefix(uuid, "RES"), true},
		field{"checkoutUrl", res.CheckoutURL, e.srv.URL + "/checkout/" + uuid},
		field{"customerUuid is a CSRT", strings.HasPrefix(res.CustomerUUID, "CSRT"), true},
	)
	return uuid
}

// details reads a reservation back.
func (e *env) details(uuid string) frontpay.Reservation {
	e.t.Helper()
	d := expect[frontpay.Reservation](e, 200, "reservationRetrievedSuccessfully")(e.c.Details(e.t.Context(), uuid))
	fields(e.t, field{"reservationUuid", d.ReservationUUID, uuid})
	return d
}

// reserved submits a reservation that the customer pays; it returns the uuid and product lines.
func (e *env) reserved() (string, []frontpay.DetailsProduct) {
	e.t.Helper()
	uuid, err := e.reserve(e.c, submitReq(e.t))
	e.ok(err)
	return uuid, e.details(uuid).ProductList
}

// paidSession creates session.json's reservation (NOK 1000, partial refunds of charges allowed),
// without its callback, and has the customer pay it.
func (e *env) paidSession() string {
	e.t.Helper()
	q := seed[frontpay.CreateSessionRequest](e.t, "session.json")
	q.Callback = nil
	res := expect[frontpay.SessionResult](e, 201, "Reservation Submitted Successfully")(e.c.CreateSession(e.t.Context(), q))
	uuid := res.ReservationUUID
	fields(e.t, field{"paymentUrl", strings.HasPrefix(res.PaymentURL, e.srv.URL+"/checkout/"+uuid+"?session="), true})
	e.ok(e.sb.Pay(uuid))
	return uuid
}

// payment returns a check of a capture's or charge's answer; the check returns the payment's
// uuid, which starts with prefix.
func (e *env) payment(prefix, message string) func(*frontpay.Result[frontpay.PaymentResult], error) string {
	check := expect[frontpay.PaymentResult](e, 202, message)
	return func(res *frontpay.Result[frontpay.PaymentResult], err error) string {
		e.t.Helper()
		uuid := check(res, err).UUID
		fields(e.t, field{"payment uuid " + uuid + " is a " + prefix, strings.HasPrefix(uuid, prefix), true})
		return uuid
	}
}

// capture captures everything of a reserved reservation with capture.json; it returns the
// capture's uuid.
func (e *env) capture(uuid string, lines []frontpay.DetailsProduct) string {
	e.t.Helper()
	return e.payment("CAP", "reservationCapturedSuccessfully")(e.c.Capture(e.t.Context(), uuid, captureReq(e.t, lines)))
}

// charge charges amount on a paid reservation with charge.json; it returns the charge's uuid.
func (e *env) charge(uuid, amount string) string {
	e.t.Helper()
	return e.payment("CHG", "reservationChargedSuccessfully")(e.c.Charge(e.t.Context(), uuid, chargeReq(e.t, amount)))
}

// history reads the events of the last 24 hours of the clock.
func (e *env) history() []frontpay.HistoryEvent {
	e.t.Helper()
	res, err := e.c.History(e.t.Context(), time.Time{}, time.Time{})
	e.ok(err)
	return res.Data
}

// field is one value of a test's answer and what it should be.
type field struct {
	name      string
	got, want any
}

// fields checks each got against its want, compared as text.
func fields(t *testing.T, fs ...field) {
	t.Helper()
	for _, f := range fs {
		if g, w := text(f.got), text(f.want); g != w {
			t.Errorf("%s = %s, want %s", f.name, g, w)
		}
	}
}

// text writes v as a test compares it: as JSON, a Number or a Class as the JSON string of its text.
func text(v any) string {
	if s, ok := v.(interface{ String() string }); ok {
		v = s.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// titles lists the titles and amounts of events of one reservation.
func titles(events []frontpay.HistoryEvent, uuid string) []string {
	var out []string
	for _, ev := range events {
		if ev.UUID == uuid {
			out = append(out, ev.Title+" "+ev.Amount.String())
		}
	}
	return out
}

func TestCaptureRefundComplete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.submit()

	d := e.details(uuid)
	fields(t,
		field{"status before payment", d.Status, "SENT"},
		field{"isPaid before payment", d.IsPaid, false},
		field{"product ids", []string{d.ProductList[0].ID.String(), d.ProductList[1].ID.String()}, []string{"298", "299"}},
		field{"product names", []string{d.ProductList[0].Name, d.ProductList[1].Name}, []string{"Wash", "Cut"}},
		field{"grandTotal", d.GrandTotal, "55.00"},
		field{"due date", d.PaymentLinkDueDate, t0.Add(24 * time.Hour).Format(time.RFC3339)},
		field{"customer", d.CustomerDetails.Email, "nafees@yopmail.com"},
		field{"merchant", d.OrganizationDetails.Name, "Sandbox Merchant AS"},
	)

	e.ok(e.sb.Pay(uuid))
	d = e.details(uuid)
	fields(t,
		field{"status after payment", d.Status, "RESERVED"},
		field{"isPaid", d.IsPaid, true},
		field{"reservedAt", d.PaymentDetails.ReservedAt, t0.Format(time.RFC3339)},
		field{"reservedAmount", d.PaymentDetails.ReservedAmount, "55.00"},
		field{"reserved per product", []string{d.ProductList[0].Reserved.String(), d.ProductList[1].Reserved.String()}, []string{"5.00", "50.00"}},
		field{"paymentHistory.reserved", len(d.PaymentHistory.Reserved), 1},
	)

	capture := e.capture(uuid, d.ProductList)
	d = e.details(uuid)
	fields(t,
		field{"status after capture", d.Status, "CAPTURED"},
		field{"capturedAmount", d.PaymentDetails.CapturedAmount, "55.00"},
		field{"captured per product", []string{d.ProductList[0].Captured.String(), d.ProductList[1].Captured.String()}, []string{"5.00", "50.00"}},
		field{"paymentHistory.captured", len(d.PaymentHistory.Captured), 1},
		field{"capture reference", d.PaymentHistory.Captured[0].Reference, capture},
		field{"capture amount", d.PaymentHistory.Captured[0].Amount, "55.00"},
		field{"capture additionalText", d.PaymentHistory.Captured[0].AdditionalText, "My additional Text for capture"},
	)

	e.answered(202, "orderRefundedSuccessfully")(e.c.Refund(t.Context(), uuid, refundReq(t, "captured", capture, d.ProductList[1].ID, "15")))
	d = e.details(uuid)
	fields(t,
		field{"amountRefunded.fromCaptured", d.PaymentDetails.AmountRefunded.FromCaptured, "15.00"},
		field{"capture refunded", d.PaymentHistory.Captured[0].Refunded, "15.00"},
		field{"capture isRefunded", d.PaymentHistory.Captured[0].IsRefunded, false},
		field{"paymentHistory.refunded", len(d.PaymentHistory.Refunded), 1},
		field{"refund reference", d.PaymentHistory.Refunded[0].Reference, capture},
		field{"refund amount", d.PaymentHistory.Refunded[0].Amount, "15.00"},
		field{"refund isPartial", d.PaymentHistory.Refunded[0].IsPartial, true},
	)

	e.answered(202, "reservationCompletedSuccessfully")(e.c.Complete(t.Context(), uuid, seed[frontpay.NoteRequest](t, "complete.json")))
	d = e.details(uuid)
	fields(t,
		field{"status after complete", d.Status, "COMPLETED"},
		field{"translationKey", d.TranslationKey, "reservation.status.completed"},
	)

	events := e.history()
	fields(t,
		field{"history", titles(events, uuid), []string{
			"reservation-sent 55.00", "reserved 55.00", "captured 55.00", "refund-sent-from-captured 15.00", "completed 55.00",
		}},
		field{"history datetime", events[0].Datetime, "21.11.2026 10:00"},
		field{"history payment method", events[2].PaymentMethod, "visa"},
		field{"capture refundable", events[2].IsRefundable, true},
	)
}

func TestSessionChargeRefund(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.paidSession()

	charge := e.charge(uuid, "150") // charge.json as it is

	d := e.details(uuid)
	line := d.ProductList[len(d.ProductList)-1]
	fields(t,
		field{"status", d.Status, "CHARGED"},
		field{"chargedAmount", d.PaymentDetails.ChargedAmount, "150.00"},
		field{"charged line", []any{len(d.ProductList), line.Name, line.Amount.String()}, []any{2, "Charge QA", "150.00"}},
		field{"paymentHistory.charged", len(d.PaymentHistory.Charged), 1},
		field{"charge reference", d.PaymentHistory.Charged[0].Reference, charge},
	)

	e.answered(202, "orderRefundedSuccessfully")(e.c.Refund(t.Context(), uuid, refundReq(t, "charged", charge, line.ID, "50")))
	d = e.details(uuid)
	fields(t,
		field{"amountRefunded.fromCharge", d.PaymentDetails.AmountRefunded.FromCharge, "50.00"},
		field{"charge refunded", d.PaymentHistory.Charged[0].Refunded, "50.00"},
		field{"refund", []any{d.PaymentHistory.Refunded[0].Reference, d.PaymentHistory.Refunded[0].Amount.String()}, []any{charge, "50.00"}},
		field{"history", titles(e.history(), uuid), []string{"reservation-sent 1000.00", "reserved 1000.00", "charged 150.00", "refund-sent-from-charged 50.00"}},
	)
}

func TestResendAndCancel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.submit()
	e.answered(202, "resentOrderSuccessfully")(e.c.ResendReservation(t.Context(), uuid, seed[frontpay.ResendRequest](t, "resend.json")))
	res := e.answered(202, "cancelledOrderSuccessfully")(e.c.Cancel(t.Context(), uuid, seed[frontpay.NoteRequest](t, "cancel.json")))
	events := e.history()
	fields(t,
		field{"cancel data", string(res.Raw), "null"},
		field{"status", e.details(uuid).Status, "CANCELLED"},
		field{"history", titles(events, uuid), []string{"reservation-sent 55.00", "payment-link-resent 55.00", "cancelled 55.00"}},
		field{"sent to", []string{events[0].SentTo, events[1].SentTo}, []string{"nafees@yopmail.com", "example-email@email.com"}},
		field{"cancel note", events[2].Note, "Your cancellation Note here"},
	)
}

func TestOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	data := expect[*frontpay.CreateOrderResult](e, 201, "orderAddedSuccessfully")(
		e.c.CreateOrder(t.Context(), seed[frontpay.CreateOrderRequest](t, "order.json")))
	orders := e.sb.Orders()
	fields(t,
		field{"create data", data, nil},
		field{"orders", len(orders), 1},
		field{"order", []any{orders[0].Status, orders[0].GrandTotalCents}, []any{"SENT", 5100}},
	)
	e.answered(202, "resentOrderSuccessfully")(e.c.ResendOrder(t.Context(), orders[0].UUID, seed[frontpay.ResendRequest](t, "resend.json")))
}

// of returns a new request of type T, for tables.
func of[T any, P interface {
	*T
	frontpay.Validator
}]() frontpay.Validator {
	return P(new(T))
}

// examples are the testdata files with the operation that sends each, its documented method and
// path (with unknown or fixed history bounds as path values) and how the sandbox takes it.
var examples = []struct {
	file   string
	newReq func() frontpay.Validator
	op     frontpay.Operation
	method string
	path   string
	want   frontpay.Class // Permanent where the unknown uuid is not found
}{
	{"order.json", of[frontpay.CreateOrderRequest], frontpay.OrderCreate, "POST", "/orders/invoice/create", frontpay.Success},
	{"resend.json", of[frontpay.ResendRequest], frontpay.OrderResend, "POST", "/orders/resend/" + unknown, frontpay.Permanent},
	{"submit.json", of[frontpay.SubmitReservationRequest], frontpay.ReservationSubmit, "POST", "/reservations/submit", frontpay.Success},
	{"session.json", of[frontpay.CreateSessionRequest], frontpay.ReservationSession, "POST", "/reservations/create", frontpay.Success},
	{"", nil, frontpay.ReservationDetails, "GET", "/reservations/details/" + unknown, frontpay.Permanent},
	{"capture.json", of[frontpay.CaptureRequest], frontpay.ReservationCapture, "POST", "/reservations/capture/" + unknown, frontpay.Permanent},
	{"charge.json", of[frontpay.ChargeRequest], frontpay.ReservationCharge, "POST", "/reservations/charge/" + unknown, frontpay.Permanent},
	{"cancel.json", of[frontpay.NoteRequest], frontpay.ReservationCancel, "GET", "/reservations/cancel/" + unknown, frontpay.Permanent},
	{"complete.json", of[frontpay.NoteRequest], frontpay.ReservationComplete, "POST", "/reservations/complete/" + unknown, frontpay.Permanent},
	{"resend.json", of[frontpay.ResendRequest], frontpay.ReservationResend, "POST", "/reservations/resend/" + unknown, frontpay.Permanent},
	{"refund.json", of[frontpay.RefundRequest], frontpay.ReservationRefund, "POST", "/reservations/refund/" + unknown, frontpay.Permanent},
	{"", nil, frontpay.ReservationHistory, "GET", "/reservations/history/1795168800/1795255200", frontpay.Success},
}

// tree decodes JSON with numbers as their text.
func tree(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRequests sends every operation through Do, as a dispatcher does, with the testdata
// examples as bodies (due dates moved to the future), and checks what reaches the server: the
// documented method and path, the bearer token, Accept, Content-Type only with a body, the example
// with its members and nesting unchanged, and no idempotency header. The sandbox takes the
// examples that need no reservation; the lifecycle tests above send the others to real ones.
func TestRequests(t *testing.T) {
	t.Parallel()
	e := setup(t)
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata: %v %v", files, err)
	}
	for _, ex := range examples {
		var body frontpay.Validator
		var example any // what the body should be
		if ex.newReq != nil {
			body = ex.newReq()
			example = seedInto(t, ex.file, body)
			files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == ex.file })
		}
		var params []string
		switch {
		case strings.HasSuffix(ex.path, unknown):
			params = []string{unknown}
		case ex.op == frontpay.ReservationHistory:
			params = []string{"1795168800", "1795255200"}
		}
		_, err := e.c.Do(t.Context(), ex.op, params, body)
		reqs := e.rec.requests()
		got := reqs[len(reqs)-1]
		var sent any
		if got.Body != "" {
			sent = tree(t, []byte(got.Body))
		}
		if !reflect.DeepEqual(sent, example) {
			t.Errorf("%s sent %s, want %s", ex.op, got.Body, text(example))
		}
		fields(t,
			field{string(ex.op) + " class", frontpay.Classify(err), ex.want},
			field{string(ex.op) + " request", []string{got.Method, got.Path}, []string{ex.method, "/api/v1/connect" + ex.path}},
			field{string(ex.op) + " headers", []string{
				got.Header.Get("Authorization"), got.Header.Get("Accept"), got.Header.Get("Content-Type"),
				got.Header.Get("Idempotency-Key") + got.Header.Get("X-Idempotency-Key"),
			}, []string{"Bearer " + token, "application/json", map[bool]string{true: "application/json"}[body != nil], ""}},
		)
	}
	if n := len(e.rec.requests()); n != len(examples) {
		t.Errorf("%d requests for %d calls", n, len(examples))
	}
	if len(files) > 0 {
		t.Errorf("no test sends %v", files)
	}
}

// TestRefusals reaches each documented error key through the client: an *Error with the status,
// status message and key, classified Permanent.
func TestRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		call   func(e *env) error
		status int
		key    string
	}{
		{"details of an unknown reservation", func(e *env) error {
			return errOf(e.c.Details(e.t.Context(), unknown))
		}, 404, "reservationNotFound"},
		{"cancel of an unknown reservation", func(e *env) error {
			return errOf(e.c.Cancel(e.t.Context(), unknown, seed[frontpay.NoteRequest](e.t, "cancel.json")))
		}, 404, "orderNotFound"},
		{"resend of an unknown order", func(e *env) error {
			return errOf(e.c.ResendOrder(e.t.Context(), unknown, seed[frontpay.ResendRequest](e.t, "resend.json")))
		}, 404, "orderNotFound"},
		{"capture before the customer paid", func(e *env) error {
			uuid := e.submit()
			return errOf(e.c.Capture(e.t.Context(), uuid, captureReq(e.t, e.details(uuid).ProductList)))
		}, 400, "requestedCaptureAmountExceedAvailableCaptureRunway"},
		{"capture of more than is reserved", func(e *env) error {
			uuid, lines := e.reserved()
			q := captureReq(e.t, lines)
			q.Products[0].Amount, q.GrandTotal = frontpay.Num("6"), frontpay.Num("56")
			return errOf(e.c.Capture(e.t.Context(), uuid, q))
		}, 400, "requestedCaptureAmountExceedAvailableCaptureRunway"},
		{"capture of a product not in the reservation", func(e *env) error {
			uuid, lines := e.reserved()
			lines[0].ID = frontpay.Num("1")
			return errOf(e.c.Capture(e.t.Context(), uuid, captureReq(e.t, lines)))
		}, 400, "requestProductIdNotAvailable"},
		{"capture after cancel", func(e *env) error {
			uuid, lines := e.reserved()
			e.ok(errOf(e.c.Cancel(e.t.Context(), uuid, seed[frontpay.NoteRequest](e.t, "cancel.json"))))
			return errOf(e.c.Capture(e.t.Context(), uuid, captureReq(e.t, lines)))
		}, 400, "reservationStatusAlreadyCancelled"},
		{"capture after the capture window", func(e *env) error {
			uuid, lines := e.reserved()
			e.clock.Advance(8 * 24 * time.Hour)
			return errOf(e.c.Capture(e.t.Context(), uuid, captureReq(e.t, lines)))
		}, 400, "paymentCaptureDeadlineExceed"},
		{"cancel after capture", func(e *env) error {
			uuid, lines := e.reserved()
			e.capture(uuid, lines)
			return errOf(e.c.Cancel(e.t.Context(), uuid, seed[frontpay.NoteRequest](e.t, "cancel.json")))
		}, 400, "prerequisiteFailedToCancelReservation"},
		{"complete before capture", func(e *env) error {
			return errOf(e.c.Complete(e.t.Context(), e.submit(), seed[frontpay.NoteRequest](e.t, "complete.json")))
		}, 400, "prerequisiteFailedToCompleteReservation"},
		{"complete twice", func(e *env) error {
			uuid, lines := e.reserved()
			e.capture(uuid, lines)
			e.ok(errOf(e.c.Complete(e.t.Context(), uuid, seed[frontpay.NoteRequest](e.t, "complete.json"))))
			return errOf(e.c.Complete(e.t.Context(), uuid, seed[frontpay.NoteRequest](e.t, "complete.json")))
		}, 400, "reservationStatusAlreadyCompleted"},
		{"resend after cancel", func(e *env) error {
			uuid := e.submit()
			e.ok(errOf(e.c.Cancel(e.t.Context(), uuid, seed[frontpay.NoteRequest](e.t, "cancel.json"))))
			return errOf(e.c.ResendReservation(e.t.Context(), uuid, seed[frontpay.ResendRequest](e.t, "resend.json")))
		}, 400, "orderStatusAlreadyCancelled"},
		{"charge before the customer paid", func(e *env) error {
			return errOf(e.c.Charge(e.t.Context(), e.submit(), chargeReq(e.t, "10")))
		}, 404, "paymentCardNotFound"},
		{"charge beyond the reservation's total", func(e *env) error {
			uuid, _ := e.reserved()
			return errOf(e.c.Charge(e.t.Context(), uuid, seed[frontpay.ChargeRequest](e.t, "charge.json")))
		}, 400, "paymentChargeRunwayExceed"},
		{"refund of an unknown payment", func(e *env) error {
			uuid, lines := e.reserved()
			e.capture(uuid, lines)
			return errOf(e.c.Refund(e.t.Context(), uuid, seed[frontpay.RefundRequest](e.t, "refund.json")))
		}, 400, "refundRejectionForRefundRequestGreaterThanOrderAmount"},
		{"refund of more than was captured", func(e *env) error {
			uuid, lines := e.reserved()
			return errOf(e.c.Refund(e.t.Context(), uuid, refundReq(e.t, "captured", e.capture(uuid, lines), lines[1].ID, "60")))
		}, 400, "refundRejectionForRefundRequestGreaterThanOrderAmount"},
		{"refund of more than a product's capture", func(e *env) error {
			uuid, lines := e.reserved()
			return errOf(e.c.Refund(e.t.Context(), uuid, refundReq(e.t, "captured", e.capture(uuid, lines), lines[0].ID, "10")))
		}, 400, "refundRejectionForProductAmountExceed"},
		{"partial refund of a charge that is not partially refundable", func(e *env) error {
			uuid, _ := e.reserved()
			charge := e.charge(uuid, "20")
			line := e.details(uuid).ProductList[2]
			return errOf(e.c.Refund(e.t.Context(), uuid, refundReq(e.t, "charged", charge, line.ID, "10")))
		}, 400, "refundRejectionForRequestAmountThresholdExceed"},
		{"resend of a paid order", func(e *env) error {
			e.ok(errOf(e.c.CreateOrder(e.t.Context(), seed[frontpay.CreateOrderRequest](e.t, "order.json"))))
			order := e.sb.Orders()[0].UUID
			e.ok(e.sb.PayOrder(order))
			return errOf(e.c.ResendOrder(e.t.Context(), order, seed[frontpay.ResendRequest](e.t, "resend.json")))
		}, 400, "orderStatusAlreadyPaid"},
		{"a wrong token", func(e *env) error {
			c, err := frontpay.New(e.srv.URL, "tok-WRONG")
			e.ok(err)
			return errOf(c.Details(e.t.Context(), unknown))
		}, 401, "unauthenticated"},
		{"a due date the API finds past: the client's clock is an hour behind", func(e *env) error {
			c := e.client(frontpay.WithClock(func() time.Time { return t0.Add(-time.Hour) }))
			q := submitReq(e.t)
			q.DueDateForPaymentLink = strconv.FormatInt(t0.Add(-30*time.Minute).Unix(), 10)
			return errOf(c.SubmitReservation(e.t.Context(), q))
		}, 417, "payloadValidationErrors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			err := tc.call(e)
			fe := apiError(t, err)
			fields(t,
				field{"answer", []any{fe.HTTPStatus, fe.StatusMessage, fe.Message}, []any{tc.status, statusMessages[tc.status], tc.key}},
				field{"sent", fe.Sent, true},
				field{"class", frontpay.Classify(err), frontpay.Permanent},
			)
			switch tc.key {
			case "refundRejectionForProductAmountExceed":
				fields(t, field{"errors", string(fe.Errors), `["product 298: 10.00 requested, 5.00 refundable"]`})
			case "payloadValidationErrors":
				fields(t, field{"errors", string(fe.Errors), `{"dueDateForPaymentLink":["must be the current time or later"]}`})
			}
		})
	}
}

// apiError returns err as an *Error, failing the test when it is not one.
func apiError(t *testing.T, err error) *frontpay.Error {
	t.Helper()
	var fe *frontpay.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a *frontpay.Error", err, err)
	}
	noSecret(t, fe)
	return fe
}

// TestValidationBeforeSending shows that a request breaking a documented rule fails with a
// *ValidationError naming the field, and that nothing reaches the API.
func TestValidationBeforeSending(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		field string
		call  func() error
	}{
		{"grandTotal", func() error {
			q := seed[frontpay.CaptureRequest](t, "capture.json")
			q.GrandTotal = frontpay.Num("56")
			return errOf(e.c.Capture(t.Context(), unknown, q))
		}},
		{"note", func() error {
			return errOf(e.c.Cancel(t.Context(), unknown, &frontpay.NoteRequest{}))
		}},
		{"dueDateForPaymentLink", func() error {
			q := submitReq(t)
			q.DueDateForPaymentLink = strconv.FormatInt(t0.Add(-time.Hour).Unix(), 10)
			return errOf(e.c.SubmitReservation(t.Context(), q))
		}},
		{"customerDetails.email", func() error {
			q := seed[frontpay.CreateSessionRequest](t, "session.json")
			q.CustomerDetails.Email = "nafees@"
			return errOf(e.c.CreateSession(t.Context(), q))
		}},
		{"reservationUuid", func() error {
			return errOf(e.c.Details(t.Context(), "../orders/x"))
		}},
		{"reference", func() error {
			q := seed[frontpay.RefundRequest](t, "refund.json")
			q.Reference = ""
			return errOf(e.c.Refund(t.Context(), unknown, q))
		}},
	} {
		err := tc.call()
		var ve *frontpay.ValidationError
		if !errors.As(err, &ve) || !ve.Has(tc.field) {
			t.Errorf("%s: error %v, want a *ValidationError of that field", tc.field, err)
		}
		fields(t, field{tc.field + " class", frontpay.Classify(err), frontpay.Permanent})
	}
	fields(t,
		field{"requests seen", len(e.rec.requests()), 0},
		field{"ledger", len(e.sb.Ledger()), 0},
	)
}
