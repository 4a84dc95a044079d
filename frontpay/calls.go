package frontpay

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// CreateOrder creates an invoice order (POST /orders/invoice/create). The documented answer is 201
// orderAddedSuccessfully with data null.
func (c *Client) CreateOrder(ctx context.Context, req *CreateOrderRequest) (*Result[*CreateOrderResult], error) {
	resp, err := c.Do(ctx, OrderCreate, nil, req)
	return decode[*CreateOrderResult](OrderCreate, resp, err)
}

// ResendOrder sends an order's payment link again, by SMS or e-mail (POST /orders/resend/{uuid}).
func (c *Client) ResendOrder(ctx context.Context, orderUUID string, req *ResendRequest) (*Response, error) {
	return c.Do(ctx, OrderResend, []string{orderUUID}, req)
}

// SubmitReservation creates a reservation and its payment link (POST /reservations/submit).
func (c *Client) SubmitReservation(ctx context.Context, req *SubmitReservationRequest) (*Result[SubmitReservationResult], error) {
	resp, err := c.Do(ctx, ReservationSubmit, nil, req)
	return decode[SubmitReservationResult](ReservationSubmit, resp, err)
}

// CreateSession creates a reservation with a payment session and returns its paymentUrl
// (POST /reservations/create).
func (c *Client) CreateSession(ctx context.Context, req *CreateSessionRequest) (*Result[SessionResult], error) {
	resp, err := c.Do(ctx, ReservationSession, nil, req)
	return decode[SessionResult](ReservationSession, resp, err)
}

// Details reads a reservation, with its product ids, payment details and payment history
// (GET /reservations/details/{uuid}).
func (c *Client) Details(ctx context.Context, reservationUUID string) (*Result[Reservation], error) {
	resp, err := c.Do(ctx, ReservationDetails, []string{reservationUUID}, nil)
	return decode[Reservation](ReservationDetails, resp, err)
}

// Capture turns reserved money into a payment, in full or in part
// (POST /reservations/capture/{uuid}). The result's uuid is the reference a refund names.
func (c *Client) Capture(ctx context.Context, reservationUUID string, req *CaptureRequest) (*Result[PaymentResult], error) {
	resp, err := c.Do(ctx, ReservationCapture, []string{reservationUUID}, req)
	return decode[PaymentResult](ReservationCapture, resp, err)
}

// Charge takes a merchant-initiated payment from the customer's stored card
// (POST /reservations/charge/{uuid}).
func (c *Client) Charge(ctx context.Context, reservationUUID string, req *ChargeRequest) (*Result[PaymentResult], error) {
	resp, err := c.Do(ctx, ReservationCharge, []string{reservationUUID}, req)
	return decode[PaymentResult](ReservationCharge, resp, err)
}

// Cancel voids a reservation that is not yet captured or charged. As documented, it is a GET with
// a JSON body (GET /reservations/cancel/{uuid}).
func (c *Client) Cancel(ctx context.Context, reservationUUID string, req *NoteRequest) (*Response, error) {
	return c.Do(ctx, ReservationCancel, []string{reservationUUID}, req)
}

// Complete finalises a reservation once some of it is captured or charged
// (POST /reservations/complete/{uuid}).
func (c *Client) Complete(ctx context.Context, reservationUUID string, req *NoteRequest) (*Response, error) {
	return c.Do(ctx, ReservationComplete, []string{reservationUUID}, req)
}

// ResendReservation sends a reservation's payment link again (POST /reservations/resend/{uuid}).
func (c *Client) ResendReservation(ctx context.Context, reservationUUID string, req *ResendRequest) (*Response, error) {
	return c.Do(ctx, ReservationResend, []string{reservationUUID}, req)
}

// Refund returns captured or charged money, in full or in part (POST /reservations/refund/{uuid}).
func (c *Client) Refund(ctx context.Context, reservationUUID string, req *RefundRequest) (*Response, error) {
	return c.Do(ctx, ReservationRefund, []string{reservationUUID}, req)
}

// History lists reservation events between start and end (GET /reservations/history/{start}/{end}).
// A zero end is now; a zero start is 24 hours before end, as the API's own default.
func (c *Client) History(ctx context.Context, start, end time.Time) (*Result[[]HistoryEvent], error) {
	params := HistoryParams(start, end, c.now())
	resp, err := c.Do(ctx, ReservationHistory, params, nil)
	return decode[[]HistoryEvent](ReservationHistory, resp, err)
}

// HistoryParams returns the {start} and {end} path values: Unix seconds, end defaulting to now and
// start to 24 hours before end.
func HistoryParams(start, end, now time.Time) []string {
	if end.IsZero() {
		end = now
	}
	if start.IsZero() {
		start = end.Add(-24 * time.Hour)
	}
	return []string{strconv.FormatInt(start.Unix(), 10), strconv.FormatInt(end.Unix(), 10)}
}

// Decode reads a Response's data into v, for callers of Do.
func (r *Response) Decode(v any) error { return json.Unmarshal(r.Raw, v) }
