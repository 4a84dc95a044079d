package client

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Result is a command's success: the data of its <op>.succeeded event.
type Result struct {
	Op frontpay.Operation
	// Event is the result event; Raw is the event as published.
	Event schemas.Event
	Raw   json.RawMessage
	// HTTPStatus and Message are the API's answer, such as 202 reservationCapturedSuccessfully.
	HTTPStatus int
	Message    string
	// Response is the API's data member as returned.
	Response json.RawMessage
	// Value is Response decoded into the frontpay type of the operation:
	//   - reservation.submit: *frontpay.SubmitReservationResult
	//   - reservation.session: *frontpay.SessionResult
	//   - reservation.details: *frontpay.Reservation
	//   - reservation.capture, reservation.charge: *frontpay.PaymentResult
	//   - reservation.history: []frontpay.HistoryEvent
	//   - order.create: *frontpay.CreateOrderResult (nil when the API answers null, as documented)
	// It is nil for the operations whose answer carries no data (cancel, complete, refund and the
	// resends).
	Value any
}

// Failure is a command's failure, the error Await returns for an <op>.failed event. Its
// embedded schemas.Failure holds Reason, Retryable, HTTPStatus, Message, Errors, Attempts and the
// failed Command; CONTRACT.md section 3 says when each reason applies.
type Failure struct {
	Op frontpay.Operation
	// Event is the failure event; Raw is the event as published.
	Event schemas.Event
	Raw   json.RawMessage
	schemas.Failure
}

func (f *Failure) Error() string {
	s := fmt.Sprintf("%s failed: %s", f.Op, f.Reason)
	switch {
	case f.HTTPStatus != 0 && f.Message != "":
		s += fmt.Sprintf(" (%d %s)", f.HTTPStatus, f.Message)
	case f.Message != "":
		s += " (" + f.Message + ")"
	}
	return s
}

// newValue returns a new value of the frontpay result type of op, nil where there is none.
func newValue(op frontpay.Operation) any {
	switch op {
	case frontpay.ReservationSubmit:
		return new(frontpay.SubmitReservationResult)
	case frontpay.ReservationSession:
		return new(frontpay.SessionResult)
	case frontpay.ReservationDetails:
		return new(frontpay.Reservation)
	case frontpay.ReservationCapture, frontpay.ReservationCharge:
		return new(frontpay.PaymentResult)
	case frontpay.ReservationHistory:
		return new([]frontpay.HistoryEvent)
	case frontpay.OrderCreate:
		return new(*frontpay.CreateOrderResult)
	}
	return nil
}

// outcome decodes a result event of op: a *Result, or a *Failure as the error.
func outcome(op frontpay.Operation, raw []byte) (*Result, error) {
	var e schemas.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("client: decode %s result: %w", op, err)
	}
	if strings.HasSuffix(e.Type, ".failed") {
		f := &Failure{Op: op, Event: e, Raw: raw}
		if err := json.Unmarshal(e.Data, &f.Failure); err != nil {
			return nil, fmt.Errorf("client: decode %s failure: %w", op, err)
		}
		return nil, f
	}
	var s schemas.Success
	if err := json.Unmarshal(e.Data, &s); err != nil {
		return nil, fmt.Errorf("client: decode %s success: %w", op, err)
	}
	r := &Result{Op: op, Event: e, Raw: raw, HTTPStatus: s.HTTPStatus, Message: s.Message, Response: s.Response}
	if v := newValue(op); v != nil {
		if err := json.Unmarshal(s.Response, v); err != nil {
			return r, fmt.Errorf("client: decode %s response: %w", op, err)
		}
		switch v := v.(type) {
		case *[]frontpay.HistoryEvent:
			r.Value = *v
		case **frontpay.CreateOrderResult:
			if *v != nil {
				r.Value = *v
			}
		default:
			r.Value = v
		}
	}
	return r, nil
}
