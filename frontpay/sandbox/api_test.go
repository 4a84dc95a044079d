package sandbox

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

func TestAuthAndRouting(t *testing.T) {
	t.Parallel()
	e := setup(t)
	details := path(frontpay.ReservationDetails, "RES1000000000")
	const unauthenticated = `{"status_code":401,"status_message":"Unauthorized","message":"unauthenticated","is_error":true,"errors":null}`
	for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, "Bearer"} {
		r := e.send("GET", details, nil, auth)
		if r.status != 401 || strings.TrimSpace(string(r.body)) != unauthenticated {
			t.Errorf("auth %q: HTTP %d %s", auth, r.status, r.body)
		}
	}
	e.send("GET", details, nil, "Bearer "+testToken).expect(t, 404, "reservationNotFound", shapeDataFalse)
	e.send("GET", details, nil, "bearer "+testToken).expect(t, 404, "reservationNotFound", shapeDataFalse)

	r := e.send("GET", "/api/v1/connect/reservations/nothing", nil, "Bearer "+testToken)
	if r.status != 404 || string(r.env["message"]) != `"routeNotFound"` {
		t.Errorf("unknown path: HTTP %d %s", r.status, r.body)
	}
	r = e.send("POST", details, "{}", "Bearer "+testToken)
	if r.status != 405 || r.header.Get("Allow") != "GET" || string(r.env["status_code"]) != "405" {
		t.Errorf("wrong method: HTTP %d %v %s", r.status, r.header, r.body)
	}
	if n := len(e.sb.Ledger()); n != 0 {
		t.Errorf("ledger has %d effects", n)
	}
}

// TestSuccessEnvelopes walks every endpoint's success answer.
func TestSuccessEnvelopes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	digits := func(prefix string) *regexp.Regexp { return regexp.MustCompile(`^` + prefix + `[1-9][0-9]{9}$`) }

	order := e.createOrder()
	if !digits("ODR").MatchString(order) {
		t.Errorf("order uuid %q", order)
	}
	e.api(frontpay.OrderResend, resend, order).expect(t, 202, "resentOrderSuccessfully", shapeDataTrue)

	r := e.api(frontpay.ReservationSubmit, e.submitRequest())
	r.expect(t, 201, "Reservation Submitted Successfully", shapeDataTrue)
	var sub frontpay.SubmitReservationResult
	r.data(t, &sub)
	if !digits("RES").MatchString(sub.ReservationUUID) || !digits("CSRT").MatchString(sub.CustomerUUID) ||
		sub.CheckoutURL != e.url+"/checkout/"+sub.ReservationUUID {
		t.Errorf("submit data %+v", sub)
	}
	if r.header.Get("x-ratelimit-limit") != "240" || r.header.Get("x-ratelimit-remaining") == "" {
		t.Errorf("rate limit headers %v", r.header)
	}

	r = e.api(frontpay.ReservationSession, e.sessionRequest("mastercard"))
	r.expect(t, 201, "Reservation Submitted Successfully", shapeDataTrue)
	var ses frontpay.SessionResult
	r.data(t, &ses)
	if !digits("RES").MatchString(ses.ReservationUUID) || !strings.HasPrefix(ses.PaymentURL, e.url+"/checkout/"+ses.ReservationUUID+"?session=") {
		t.Errorf("session data %+v", ses)
	}

	uuid := sub.ReservationUUID
	if err := e.sb.Pay(uuid); err != nil {
		t.Fatal(err)
	}
	d := e.details(uuid)
	if d.ReservationUUID != uuid || d.Status != StatusReserved || len(d.ProductList) != 2 {
		t.Errorf("details %+v", d)
	}
	ids := e.ids(uuid)
	capture := e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 1000}))
	charge := e.pay(frontpay.ReservationCharge, uuid, chargeReq(500))
	if !digits("CAP").MatchString(capture) || !digits("CHG").MatchString(charge) {
		t.Errorf("payment uuids %q %q", capture, charge)
	}
	e.api(frontpay.ReservationRefund, refundReq("captured", capture, item{ids[0], 100}), uuid).
		expect(t, 202, "orderRefundedSuccessfully", shapeDataTrue)
	e.api(frontpay.ReservationResend, resend, uuid).expect(t, 202, "resentOrderSuccessfully", shapeDataTrue)
	e.api(frontpay.ReservationComplete, note, uuid).expect(t, 202, "reservationCompletedSuccessfully", shapeDataFalse)
	e.api(frontpay.ReservationCancel, note, ses.ReservationUUID).expect(t, 202, "cancelledOrderSuccessfully", shapeDataFalse)

	r = e.api(frontpay.ReservationHistory, nil, unix(t0), unix(t0))
	r.expect(t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
	var events []frontpay.HistoryEvent
	r.data(t, &events)
	if len(events) != 9 {
		t.Errorf("history has %d events, want 9: %s", len(events), r.body)
	}

	want := []string{"order.create", "order.resend", "reservation.submit", "reservation.session", "customer.pay",
		"reservation.capture", "reservation.charge", "reservation.refund", "reservation.resend",
		"reservation.complete", "reservation.cancel"}
	if got := e.effects(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ledger\n got %v\nwant %v", got, want)
	}
}

// refusalCase provokes one documented refusal: call prepares the sandbox and returns the call
// that is refused.
type refusalCase struct {
	name    string
	status  int
	message string
	shape   shape
	call    func(e *env) (frontpay.Operation, any, string)
}

// refusalErrors are the errors members that refusals carry, where the documents show one.
var refusalErrors = map[string]string{
	"refundRejectionForProductAmountExceed": `["product 298: 25.00 requested, 20.00 refundable"]`,
}

// capturedReservation is a reservation with 30.00 of its first line captured.
func (e *env) capturedReservation() (uuid string, ids []int64, capture string) {
	uuid, ids = e.reserved()
	return uuid, ids, e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 3000}))
}

// completedReservation is a captured reservation that is complete.
func (e *env) completedReservation() string {
	uuid, _, _ := e.capturedReservation()
	e.api(frontpay.ReservationComplete, note, uuid).expect(e.t, 202, "reservationCompletedSuccessfully", shapeDataFalse)
	return uuid
}

// cancelledReservation is a reservation cancelled before payment.
func (e *env) cancelledReservation() string {
	uuid := e.submit()
	e.api(frontpay.ReservationCancel, note, uuid).expect(e.t, 202, "cancelledOrderSuccessfully", shapeDataFalse)
	return uuid
}

// expiredReservation is a reservation whose payment link is past due.
func (e *env) expiredReservation() string {
	uuid := e.submit()
	e.clock.Advance(25 * time.Hour)
	return uuid
}

const unknown = "RES1000000001"

func TestRefusals(t *testing.T) {
	t.Parallel()
	capture := captureReq(item{298, 100})
	cases := []refusalCase{
		{"details not found", 404, "reservationNotFound", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationDetails, nil, unknown
		}},
		{"capture not found", 404, "reservationNotFound", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCapture, capture, unknown
		}},
		{"charge not found", 404, "reservationNotFound", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCharge, chargeReq(100), unknown
		}},
		{"complete not found", 404, "reservationNotFound", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationComplete, note, unknown
		}},
		{"cancel not found", 404, "orderNotFound", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCancel, note, unknown
		}},
		{"resend not found", 404, "orderNotFound", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationResend, resend, unknown
		}},
		{"refund not found", 404, "orderNotFound", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationRefund, refundReq("captured", "CAP1000000000", item{298, 100}), unknown
		}},
		{"order resend not found", 404, "orderNotFound", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.OrderResend, resend, "ODR1000000000"
		}},
		{"capture cancelled", 400, "reservationStatusAlreadyCancelled", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCapture, capture, e.cancelledReservation()
		}},
		{"capture completed", 400, "reservationStatusAlreadyCompleted", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCapture, capture, e.completedReservation()
		}},
		{"capture after window", 400, "paymentCaptureDeadlineExceed", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			e.clock.Advance(7*24*time.Hour + time.Second)
			return frontpay.ReservationCapture, capture, uuid
		}},
		{"capture unknown product", 400, "requestProductIdNotAvailable", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			return frontpay.ReservationCapture, captureReq(item{9999, 100}), uuid
		}},
		{"capture before payment", 400, "requestedCaptureAmountExceedAvailableCaptureRunway", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCapture, capture, e.submit()
		}},
		{"capture expired", 400, "requestedCaptureAmountExceedAvailableCaptureRunway", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCapture, capture, e.expiredReservation()
		}},
		{"capture over line", 400, "requestedCaptureAmountExceedAvailableCaptureRunway", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids := e.reserved()
			return frontpay.ReservationCapture, captureReq(item{ids[1], 5001}), uuid
		}},
		{"charge before payment", 404, "paymentCardNotFound", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCharge, chargeReq(100), e.submit()
		}},
		{"charge over grand total", 400, "paymentChargeRunwayExceed", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			e.pay(frontpay.ReservationCharge, uuid, chargeReq(10000))
			return frontpay.ReservationCharge, chargeReq(5001), uuid
		}},
		{"charge after validity", 400, "paymentChargeDeadlineExceed", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved(func(q *frontpay.SubmitReservationRequest) { q.ChargeValidity = ptr("2") })
			e.clock.Advance(48*time.Hour + time.Second)
			return frontpay.ReservationCharge, chargeReq(100), uuid
		}},
		{"charge after default validity", 400, "paymentChargeDeadlineExceed", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			e.clock.Advance(91 * 24 * time.Hour)
			return frontpay.ReservationCharge, chargeReq(100), uuid
		}},
		{"charge completed", 400, "reservationStatusAlreadyCompleted", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCharge, chargeReq(100), e.completedReservation()
		}},
		{"cancel twice", 400, "reservationStatusAlreadyCancelled", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCancel, note, e.cancelledReservation()
		}},
		{"cancel completed", 400, "reservationStatusAlreadyCompleted", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCancel, note, e.completedReservation()
		}},
		{"cancel captured", 400, "prerequisiteFailedToCancelReservation", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _, _ := e.capturedReservation()
			return frontpay.ReservationCancel, note, uuid
		}},
		{"cancel charged", 400, "prerequisiteFailedToCancelReservation", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			e.pay(frontpay.ReservationCharge, uuid, chargeReq(100))
			return frontpay.ReservationCancel, note, uuid
		}},
		{"cancel expired", 400, "prerequisiteFailedToCancelReservation", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationCancel, note, e.expiredReservation()
		}},
		{"complete twice", 400, "reservationStatusAlreadyCompleted", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationComplete, note, e.completedReservation()
		}},
		{"complete reserved", 400, "prerequisiteFailedToCompleteReservation", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			return frontpay.ReservationComplete, note, uuid
		}},
		{"complete sent", 400, "prerequisiteFailedToCompleteReservation", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationComplete, note, e.submit()
		}},
		{"resend completed", 400, "orderStatusAlreadyCompleted", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationResend, resend, e.completedReservation()
		}},
		{"resend cancelled", 400, "orderStatusAlreadyCancelled", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			return frontpay.ReservationResend, resend, e.cancelledReservation()
		}},
		{"order resend paid", 400, "orderStatusAlreadyPaid", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			order := e.createOrder()
			if err := e.sb.PayOrder(order); err != nil {
				e.t.Fatal(err)
			}
			return frontpay.OrderResend, resend, order
		}},
		{"refund unknown reference", 400, "refundRejectionForRefundRequestGreaterThanOrderAmount", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids, _ := e.capturedReservation()
			return frontpay.ReservationRefund, refundReq("captured", "CAP1000000000", item{ids[0], 100}), uuid
		}},
		{"refund wrong source", 400, "refundRejectionForRefundRequestGreaterThanOrderAmount", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids, ref := e.capturedReservation()
			return frontpay.ReservationRefund, refundReq("charged", ref, item{ids[0], 100}), uuid
		}},
		{"refund over payment", 400, "refundRejectionForRefundRequestGreaterThanOrderAmount", shapeErrorFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids, ref := e.capturedReservation()
			return frontpay.ReservationRefund, refundReq("captured", ref, item{ids[0], 3001}), uuid
		}},
		{"refund product not in payment", 400, "requestProductIdNotAvailable", shapeDataFalse, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids, ref := e.capturedReservation()
			return frontpay.ReservationRefund, refundReq("captured", ref, item{ids[1], 100}), uuid
		}},
		{"refund over product", 400, "refundRejectionForProductAmountExceed", shapeErrorTrue, func(e *env) (frontpay.Operation, any, string) {
			uuid, ids := e.reserved()
			ref := e.pay(frontpay.ReservationCapture, uuid, captureReq(item{ids[0], 2000}, item{ids[1], 2000}))
			return frontpay.ReservationRefund, refundReq("captured", ref, item{ids[0], 2500}), uuid
		}},
		{"refund part of charge", 400, "refundRejectionForRequestAmountThresholdExceed", shapeErrorTrue, func(e *env) (frontpay.Operation, any, string) {
			uuid, _ := e.reserved()
			ref := e.pay(frontpay.ReservationCharge, uuid, chargeReq(2000))
			return frontpay.ReservationRefund, refundReq("charged", ref, item{e.ids(uuid)[2], 1000}), uuid
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			op, body, uuid := tc.call(e)
			before := len(e.sb.Ledger())
			r := e.api(op, body, uuid)
			r.expect(t, tc.status, tc.message, tc.shape)
			if want, ok := refusalErrors[tc.message]; ok && string(r.env["errors"]) != want {
				t.Errorf("errors %s, want %s", r.env["errors"], want)
			}
			if after := len(e.sb.Ledger()); after != before {
				t.Errorf("a refused call left %d effects", after-before)
			}
		})
	}
}

// TestValidation checks 417 answers: field errors from the request types' rules, undecodable
// bodies, and that validation comes before the lookup.
func TestValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cases := []struct {
		op     frontpay.Operation
		body   any
		params []string
		fields []string
	}{
		{frontpay.ReservationSubmit, "{}", nil, []string{"customerDetails", "orderDate", "dueDateForPaymentLink", "sendOrderBy", "products", "orderSummary"}},
		{frontpay.ReservationSubmit, e.submitRequest(func(q *frontpay.SubmitReservationRequest) {
			q.CustomerDetails.Email = "not-an-email"
			q.DueDateForPaymentLink = unix(t0.Add(-time.Hour))
		}), nil, []string{"customerDetails.email", "dueDateForPaymentLink"}},
		{frontpay.ReservationSession, e.submitRequest(), nil, []string{"submitPayment"}},
		{frontpay.OrderCreate, `{"products": []}`, nil, []string{"products", "orderSummary"}},
		{frontpay.ReservationCapture, `{"products":{"0":{"id":298,"amount":5}},"grandTotal":6}`, []string{unknown}, []string{"grandTotal"}},
		{frontpay.ReservationCapture, `{"products":{"0":{"id":true,"amount":5}},"grandTotal":5}`, []string{unknown}, []string{"products.0.id"}},
		{frontpay.ReservationCapture, `{"products":[{"id":298,"amount":5}],"grandTotal":"five"}`, []string{unknown}, []string{"grandTotal"}},
		{frontpay.ReservationCapture, `{"products":[{"id":298,"amount":5}],"grandTotal":5,"additionalText":7}`, []string{unknown}, []string{"additionalText"}},
		{frontpay.ReservationCapture, `[1]`, []string{unknown}, []string{"body"}},
		{frontpay.ReservationCapture, `{"products":`, []string{unknown}, []string{"body"}},
		{frontpay.ReservationCharge, `{"products":{"0":{"name":"x","rate":1,"tax":"0","amount":1.001}},"grandTotal":1.001}`, []string{unknown}, []string{"products.0.amount", "grandTotal"}},
		{frontpay.ReservationCancel, `{}`, []string{unknown}, []string{"note"}},
		{frontpay.ReservationComplete, `{"note": ""}`, []string{unknown}, []string{"note"}},
		{frontpay.ReservationRefund, `{"type":"order","source":"invoice","reference":"","products":[],"grandTotal":1}`, []string{unknown}, []string{"type", "source", "reference", "products"}},
		{frontpay.ReservationResend, `{}`, []string{unknown}, []string{"email"}},
		{frontpay.OrderResend, `{"countryCode":"+47"}`, []string{"ODR1000000000"}, []string{"msisdn"}},
		{frontpay.ReservationHistory, nil, []string{"abc", "10"}, []string{"start"}},
		{frontpay.ReservationHistory, nil, []string{"10", "5"}, []string{"end"}},
	}
	for _, tc := range cases {
		r := e.api(tc.op, tc.body, tc.params...)
		r.expect(t, 417, "payloadValidationErrors", shapeErrorTrue)
		var errs map[string][]string
		r.data(t, &errs)
		for _, f := range tc.fields {
			if len(errs[f]) == 0 {
				t.Errorf("%s %v: no error for %s in %s", tc.op, tc.body, f, r.body)
			}
		}
	}
	if n := len(e.sb.Ledger()); n != 0 {
		t.Errorf("ledger has %d effects", n)
	}

	// Unknown members are ignored, as Laravel does.
	uuid, ids := e.reserved()
	body := `{"products":{"0":{"id":` + jsonInt(ids[0]) + `,"amount":"1.50","colour":"red"}},"grandTotal":1.5,"extra":{"a":1}}`
	e.api(frontpay.ReservationCapture, body, uuid).expect(t, 202, "reservationCapturedSuccessfully", shapeDataTrue)
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
