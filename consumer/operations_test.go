package consumer

import (
	"encoding/json"
	"testing"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// TestEveryOperationSucceeds drives each of the twelve operations through the worker and holds
// its result event to CONTRACT.md section 3.
func TestEveryOperationSucceeds(t *testing.T) {
	t.Parallel()
	h := setup(t)

	// ok runs one command and checks the envelope and data of its success.
	ok := func(op frontpay.Operation, data any, subject string, status int, message string) schemas.Success {
		t.Helper()
		c := h.publish(t, op, data)
		r := h.resultOf(t, c)
		e := r.Event
		switch {
		case e.Type != string(op)+".succeeded", e.Source != testSource, e.SpecVersion != "1.0":
			t.Errorf("%s: type %q, source %q, specversion %q", op, e.Type, e.Source, e.SpecVersion)
		case e.Subject != subject:
			t.Errorf("%s: subject %q, want %q", op, e.Subject, subject)
		case e.CausationID != c.ID || e.IdempotencyKey != c.Key || e.CorrelationID != "corr-"+c.ID:
			t.Errorf("%s: causationid %q, idempotencykey %q, correlationid %q; command %s", op, e.CausationID, e.IdempotencyKey, e.CorrelationID, c)
		case e.ID != schemas.ResultID(c.Key, true, ""):
			t.Errorf("%s: id %s is not derived from the key", op, e.ID)
		}
		s := success(t, r)
		if s.HTTPStatus != status || s.Message != message {
			t.Errorf("%s: data %d %q, want %d %q", op, s.HTTPStatus, s.Message, status, message)
		}
		return s
	}
	decode := func(s schemas.Success, v any) {
		t.Helper()
		if err := json.Unmarshal(s.Response, v); err != nil {
			t.Fatalf("response %s: %v", s.Response, err)
		}
	}
	null := func(op frontpay.Operation, s schemas.Success) {
		t.Helper()
		if string(s.Response) != "null" {
			t.Errorf("%s: response %s, want null (the API's data)", op, s.Response)
		}
	}

	var submitted frontpay.SubmitReservationResult
	decode(ok(frontpay.ReservationSubmit, submitData("ops-submit"), "", 201, "Reservation Submitted Successfully"), &submitted)
	if len(h.marked("ops-submit")) != 1 || submitted.ReservationUUID == "" || submitted.CheckoutURL == "" {
		t.Fatalf("submit: response %+v, ledger %+v", submitted, h.marked("ops-submit"))
	}
	uuid := submitted.ReservationUUID
	if err := h.sb.Pay(uuid); err != nil {
		t.Fatal(err)
	}

	var d frontpay.Reservation
	decode(ok(frontpay.ReservationDetails, map[string]any{"reservationUuid": uuid}, uuid, 200, "reservationRetrievedSuccessfully"), &d)
	if d.ReservationUUID != uuid || d.Status != "RESERVED" || len(d.ProductList) != 2 {
		t.Fatalf("details: %+v", d)
	}
	r := reservation{UUID: uuid, Lines: []frontpay.Number{d.ProductList[0].ID, d.ProductList[1].ID}}

	captured := responseUUID(t, ok(frontpay.ReservationCapture, captureData(r, 300, "ops-capture"), uuid, 202, "reservationCapturedSuccessfully"))
	if e := h.marked("ops-capture"); len(e) != 1 || e[0].Reference != captured || e[0].Cents != 30000 {
		t.Errorf("capture answered %s; ledger %+v", captured, e)
	}
	null(frontpay.ReservationRefund, ok(frontpay.ReservationRefund, refundData(r, captured, 100), uuid, 202, "orderRefundedSuccessfully"))
	if e := h.effects(frontpay.ReservationRefund, uuid); len(e) != 1 || e[0].Reference != captured || e[0].Cents != 10000 {
		t.Errorf("refund: ledger %+v", e)
	}
	charged := responseUUID(t, ok(frontpay.ReservationCharge, chargeData(r, 50, "ops-charge"), uuid, 202, "reservationChargedSuccessfully"))
	if e := h.marked("ops-charge"); len(e) != 1 || e[0].Reference != charged {
		t.Errorf("charge answered %s; ledger %+v", charged, e)
	}
	null(frontpay.ReservationComplete, ok(frontpay.ReservationComplete, noteData(uuid, "ops-complete"), uuid, 202, "reservationCompletedSuccessfully"))

	var session frontpay.SessionResult
	decode(ok(frontpay.ReservationSession, sessionData("ops-session"), "", 201, "Reservation Submitted Successfully"), &session)
	if session.ReservationUUID == "" || session.PaymentURL == "" || len(h.marked("ops-session")) != 1 {
		t.Fatalf("session: %+v", session)
	}
	if err := h.sb.Pay(session.ReservationUUID); err != nil {
		t.Fatal(err)
	}
	null(frontpay.ReservationCancel, ok(frontpay.ReservationCancel, noteData(session.ReservationUUID, "ops-cancel"), session.ReservationUUID, 202, "cancelledOrderSuccessfully"))
	if got := h.details(t, session.ReservationUUID).Status; got != "CANCELLED" {
		t.Errorf("cancelled reservation is %s", got)
	}

	unpaid := h.submitted(t)
	ok(frontpay.ReservationResend, map[string]any{"reservationUuid": unpaid.UUID, "email": "resend@example.no"}, unpaid.UUID, 202, "resentOrderSuccessfully")
	if len(h.marked("resend@example.no")) != 1 {
		t.Errorf("resend: ledger %+v", h.effects(frontpay.ReservationResend, unpaid.UUID))
	}

	null(frontpay.OrderCreate, ok(frontpay.OrderCreate, orderData("ops-order"), "", 201, "orderAddedSuccessfully"))
	orders := h.sb.Orders()
	if len(orders) != 1 || len(h.marked("ops-order")) != 1 {
		t.Fatalf("orders %+v", orders)
	}
	ok(frontpay.OrderResend, map[string]any{"orderUuid": orders[0].UUID, "email": "order@example.no"}, orders[0].UUID, 202, "resentOrderSuccessfully")

	var history []frontpay.HistoryEvent
	decode(ok(frontpay.ReservationHistory, map[string]any{}, "", 200, "reservationRetrievedSuccessfully"), &history)
	titles := map[string]bool{}
	for _, e := range history {
		if e.UUID == uuid {
			titles[e.Title] = true
		}
	}
	for _, want := range []string{"reservation-sent", "reserved", "captured", "charged", "completed"} {
		if !titles[want] {
			t.Errorf("history of %s lacks %q: %+v", uuid, want, titles)
		}
	}
	for _, op := range frontpay.Operations() {
		if h.calls.Count(op, "") == 0 {
			t.Errorf("no call of %s reached the API", op)
		}
	}
}
