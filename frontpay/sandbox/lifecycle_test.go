package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// amountIs checks a money field.
func amountIs(t *testing.T, what string, got frontpay.Number, want string) {
	t.Helper()
	if got.String() != want {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.submit()
	d := e.details(uuid)
	if d.Status != StatusSent || d.IsPaid || d.PaymentDetails.ReservedAt != "" {
		t.Fatalf("after submit: %+v", d)
	}
	ids := e.ids(uuid)
	if !slices.Equal(ids, []int64{298, 299}) {
		t.Fatalf("product ids %v, want [298 299]", ids)
	}

	e.clock.Advance(time.Hour)
	if err := e.sb.Pay(uuid); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.Pay(uuid); !errors.Is(err, ErrNotPayable) {
		t.Errorf("second Pay: %v", err)
	}
	d = e.details(uuid)
	if d.Status != StatusReserved || !d.IsPaid || string(d.PaymentDetails.ReservedAt) != "2026-11-21T11:00:00Z" {
		t.Fatalf("after pay: %+v %+v", d, d.PaymentDetails)
	}
	amountIs(t, "reservedAmount", d.PaymentDetails.ReservedAmount, "150.00")
	amountIs(t, "line 0 reserved", d.ProductList[0].Reserved, "100.00")
	amountIs(t, "line 1 reserved", d.ProductList[1].Reserved, "50.00")

	cap1 := e.pay(frontpay.ReservationCapture, uuid, captureReq(item{298, 4000}))
	cap2 := e.pay(frontpay.ReservationCapture, uuid, captureReq(item{298, 6000}, item{299, 5000}))
	e.api(frontpay.ReservationCapture, captureReq(item{298, 1}), uuid).
		expect(t, 400, "requestedCaptureAmountExceedAvailableCaptureRunway", shapeDataFalse)
	d = e.details(uuid)
	if d.Status != StatusCaptured || len(d.PaymentHistory.Captured) != 2 || d.PaymentHistory.Captured[1].Reference != cap2 {
		t.Fatalf("after captures: %+v", d.PaymentHistory)
	}
	amountIs(t, "capturedAmount", d.PaymentDetails.CapturedAmount, "150.00")
	amountIs(t, "line 0 captured", d.ProductList[0].Captured, "100.00")

	refund := func(cents int64) reply {
		return e.api(frontpay.ReservationRefund, refundReq("captured", cap1, item{298, cents}), uuid)
	}
	refund(3000).expect(t, 202, "orderRefundedSuccessfully", shapeDataTrue)
	refund(2000).expect(t, 400, "refundRejectionForRefundRequestGreaterThanOrderAmount", shapeErrorFalse)
	refund(1000).expect(t, 202, "orderRefundedSuccessfully", shapeDataTrue)
	d = e.details(uuid)
	amountIs(t, "fromCaptured", d.PaymentDetails.AmountRefunded.FromCaptured, "40.00")
	if c := d.PaymentHistory.Captured[0]; !c.IsRefunded || c.Refunded.String() != "40.00" {
		t.Errorf("capture 1 after refunds: %+v", c)
	}
	if r := d.PaymentHistory.Refunded; len(r) != 2 || r[0].Reference != cap1 || !r[0].IsPartial || r[1].Amount.String() != "10.00" {
		t.Errorf("refund history %+v", r)
	}

	e.api(frontpay.ReservationComplete, note, uuid).expect(t, 202, "reservationCompletedSuccessfully", shapeDataFalse)
	if d = e.details(uuid); d.Status != StatusCompleted {
		t.Errorf("status %s", d.Status)
	}

	ledger := e.sb.Ledger()
	var got []string
	for _, f := range ledger {
		got = append(got, f.Op+" "+frontpay.FromCents(f.Cents).String()+" "+f.Reference)
	}
	want := []string{"reservation.submit 150.00 ", "customer.pay 150.00 ", "reservation.capture 40.00 " + cap1,
		"reservation.capture 110.00 " + cap2, "reservation.refund 30.00 " + cap1, "reservation.refund 10.00 " + cap1,
		"reservation.complete 0.00 "}
	if !slices.Equal(got, want) {
		t.Errorf("ledger\n got %q\nwant %q", got, want)
	}
	if !bytes.Equal(ledger[2].Body, encode(t, captureReq(item{298, 4000}))) || ledger[2].Seq != 3 || ledger[2].UUID != uuid {
		t.Errorf("capture effect %+v body %s", ledger[2], ledger[2].Body)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid := e.submit(func(q *frontpay.SubmitReservationRequest) { q.DueDateForPaymentLink = unix(t0.Add(time.Hour)) })
	e.clock.Advance(time.Hour)
	if d := e.details(uuid); d.Status != StatusSent {
		t.Fatalf("at the due date: %s", d.Status)
	}
	e.clock.Advance(time.Second)
	if d := e.details(uuid); d.Status != StatusExpired {
		t.Fatalf("after the due date: %s", d.Status)
	}
	if err := e.sb.Pay(uuid); !errors.Is(err, ErrNotPayable) {
		t.Errorf("Pay of an expired reservation: %v", err)
	}
	events := e.history(t0.Add(time.Hour), t0.Add(time.Hour))
	if len(events) != 1 || events[0].Title != "expired" || events[0].Datetime != "21.11.2026 11:00" {
		t.Errorf("history %+v", events)
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid, _ := e.reserved(func(q *frontpay.SubmitReservationRequest) {
		q.ChargeValidity = ptr("3")
		q.Settings = &frontpay.Settings{IsChargePartiallyRefundable: ptr(true)}
	})
	chg := e.pay(frontpay.ReservationCharge, uuid, chargeReq(6000, 4000))
	d := e.details(uuid)
	if d.Status != StatusCharged || len(d.ProductList) != 4 || d.ProductList[2].ID.String() != "300" || d.ProductList[3].Name != "Extra 1" {
		t.Fatalf("after charge: %s %+v", d.Status, d.ProductList)
	}
	amountIs(t, "chargedAmount", d.PaymentDetails.ChargedAmount, "100.00")
	if c := d.PaymentHistory.Charged; len(c) != 1 || c[0].Reference != chg || c[0].Amount.String() != "100.00" {
		t.Errorf("charge history %+v", c)
	}
	e.api(frontpay.ReservationCharge, chargeReq(5001), uuid).expect(t, 400, "paymentChargeRunwayExceed", shapeDataFalse)
	e.pay(frontpay.ReservationCharge, uuid, chargeReq(5000))

	// Partly refundable: a part of a charge comes back, by the charge's own product ids.
	e.api(frontpay.ReservationRefund, refundReq("charged", chg, item{301, 1500}), uuid).expect(t, 202, "orderRefundedSuccessfully", shapeDataTrue)
	e.api(frontpay.ReservationRefund, refundReq("charged", chg, item{298, 100}), uuid).expect(t, 400, "requestProductIdNotAvailable", shapeDataFalse)
	amountIs(t, "fromCharge", e.details(uuid).PaymentDetails.AmountRefunded.FromCharge, "15.00")

	// A capture after a charge makes the reservation CAPTURED.
	e.pay(frontpay.ReservationCapture, uuid, captureReq(item{298, 100}))
	if d = e.details(uuid); d.Status != StatusCaptured {
		t.Errorf("status %s", d.Status)
	}
	e.clock.Advance(3*24*time.Hour + time.Second)
	e.api(frontpay.ReservationCharge, chargeReq(1), uuid).expect(t, 400, "paymentChargeDeadlineExceed", shapeDataFalse)
}

// history reads the history between two times.
func (e *env) history(start, end time.Time) []frontpay.HistoryEvent {
	e.t.Helper()
	r := e.api(frontpay.ReservationHistory, nil, unix(start), unix(end))
	r.expect(e.t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
	var events []frontpay.HistoryEvent
	r.data(e.t, &events)
	if events == nil {
		e.t.Errorf("history data %s, want an array", r.env["data"])
	}
	return events
}

func titles(events []frontpay.HistoryEvent) string {
	var s []string
	for _, ev := range events {
		s = append(s, ev.Title)
	}
	return strings.Join(s, " ")
}

func TestHistoryWindow(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid, ids := e.reserved()
	e.clock.Advance(time.Hour)
	e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 4000}))
	e.clock.Advance(time.Hour)
	e.api(frontpay.ReservationResend, &frontpay.ResendRequest{CountryCode: ptr("+47"), MSISDN: ptr("46567468")}, uuid).
		expect(t, 202, "resentOrderSuccessfully", shapeDataTrue)

	if got := titles(e.history(t0, t0)); got != "reservation-sent reserved" {
		t.Errorf("[t0, t0]: %s", got)
	}
	if got := titles(e.history(t0, t0.Add(2*time.Hour))); got != "reservation-sent reserved captured payment-link-resent" {
		t.Errorf("[t0, t0+2h]: %s", got)
	}
	if got := e.history(t0.Add(-time.Hour), t0.Add(-time.Second)); len(got) != 0 {
		t.Errorf("before t0: %+v", got)
	}
	events := e.history(t0.Add(time.Minute), t0.Add(2*time.Hour))
	if len(events) != 2 {
		t.Fatalf("events %+v", events)
	}
	c, r := events[0], events[1]
	if c.UUID != uuid || c.Datetime != "21.11.2026 11:00" || c.Amount.String() != "40.00" || deref(c.PaymentMethod) != "visa" ||
		!c.IsRefundable || deref(c.Note) != "parcel" {
		t.Errorf("captured event %+v", c)
	}
	if r.SentTo != "+4746567468" || r.PaymentMethod != nil {
		t.Errorf("resent event %+v", r)
	}
	raw := e.api(frontpay.ReservationHistory, nil, unix(t0.Add(time.Hour)), unix(t0.Add(time.Hour)))
	if !strings.Contains(string(raw.body), `"amount":"40.00"`) {
		t.Errorf("amount is not a string: %s", raw.body)
	}
}

// receiver is a callback endpoint that hands every query it gets to a channel.
func receiver(t *testing.T) (string, <-chan url.Values) {
	ch := make(chan url.Values, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			ch <- r.URL.Query()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/callbacks/frontpay?shop=1", ch
}

// next waits for a callback.
func next(t *testing.T, ch <-chan url.Values) url.Values {
	t.Helper()
	select {
	case q := <-ch:
		return q
	case <-time.After(5 * time.Second):
		t.Fatal("no callback came")
		return nil
	}
}

func TestCallbacks(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	e := setup(t, func(o *Options) { o.CallbackSecret = secret })
	cbURL, ch := receiver(t)
	withCallback := func(q *frontpay.SubmitReservationRequest) { q.Callback = &frontpay.Callback{CallbackURL: cbURL} }
	uuid, ids := e.reserved(withCallback)
	check := func(q url.Values, status, amount string) {
		t.Helper()
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(uuid + "|" + status + "|" + amount + "|" + unix(t0)))
		want := url.Values{"shop": {"1"}, "orderUuid": {uuid}, "status": {status}, "amount": {amount},
			"paymentMethod": {"visa"}, "timestamp": {unix(t0)}, "checksum": {hex.EncodeToString(mac.Sum(nil))}}
		if q.Encode() != want.Encode() {
			t.Errorf("callback\n got %s\nwant %s", q.Encode(), want.Encode())
		}
	}
	check(next(t, ch), "reserved", "150.00")
	e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 4000}))
	check(next(t, ch), "captured", "40.00")
	e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 1050}))
	check(next(t, ch), "captured", "10.50")
	e.pay(frontpay.ReservationCharge, uuid, chargeReq(2000))
	check(next(t, ch), "charged", "20.00")

	// A session's card scheme is the callback's paymentMethod; no callback without a URL.
	var res frontpay.SessionResult
	e.api(frontpay.ReservationSession, e.sessionRequest("mastercard", withCallback)).data(t, &res)
	noCallback := e.submit()
	for _, id := range []string{noCallback, res.ReservationUUID} {
		if err := e.sb.Pay(id); err != nil {
			t.Fatal(err)
		}
	}
	if q := next(t, ch); q.Get("orderUuid") != res.ReservationUUID || q.Get("paymentMethod") != "mastercard" {
		t.Errorf("session callback %v", q)
	}
	e.sb.Close()
	select {
	case q := <-ch:
		t.Errorf("unexpected callback %v", q)
	default:
	}
}

func TestCloseWaitsForCallbacks(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		<-release
		got.Add(1)
	}))
	defer srv.Close()
	e := setup(t)
	uuid := e.submit(func(q *frontpay.SubmitReservationRequest) { q.Callback = &frontpay.Callback{CallbackURL: srv.URL} })
	if err := e.sb.Pay(uuid); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		e.sb.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a callback was in flight")
	default:
	}
	close(release)
	<-closed
	// The callback's goroutine ends only after the receiver answered, which it does after counting.
	if got.Load() != 1 {
		t.Errorf("callbacks received when Close returned: %d", got.Load())
	}
}

func TestConcurrentCaptures(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid, ids := e.reserved()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 20 {
		wg.Go(func() {
			r, err := e.try(t.Context(), "POST", path(frontpay.ReservationCapture, uuid), encode(t, captureReq(item{ids[0], 1000})), "Bearer "+testToken)
			if err == nil && r.status == 202 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Errorf("%d captures of 10.00 out of 100.00 succeeded, want 10", ok.Load())
	}
	amountIs(t, "captured", e.details(uuid).PaymentDetails.CapturedAmount, "100.00")
}
