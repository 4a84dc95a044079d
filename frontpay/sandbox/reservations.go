package sandbox

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Answers of the reservation handlers. Each runs with s.mu held.

func cents(n frontpay.Number) int64 {
	c, _ := n.Cents() // validated before
	return c
}

func unixTime(s string) time.Time {
	sec, _ := strconv.ParseInt(s, 10, 64) // validated before
	return time.Unix(sec, 0).UTC()
}

// submit creates a reservation: POST /reservations/submit.
func (s *Sandbox) submit(c *call) answer {
	var q frontpay.SubmitReservationRequest
	if a, ok := c.decode(&q); !ok {
		return a
	}
	r := s.open(c, &q, "visa", s.newID("RES"))
	return success(201, "Reservation Submitted Successfully", true, frontpay.SubmitReservationResult{
		CustomerUUID: r.customerUUID, ReservationUUID: r.uuid, CheckoutURL: c.base + "/checkout/" + r.uuid,
	})
}

// session creates a reservation with its payment session: POST /reservations/create.
func (s *Sandbox) session(c *call) answer {
	var q frontpay.CreateSessionRequest
	if a, ok := c.decode(&q); !ok {
		return a
	}
	var common frontpay.SubmitReservationRequest // the members both calls share
	_ = json.Unmarshal(c.body, &common)
	r := s.open(c, &common, q.SubmitPayment.Via, s.newID("RES"))
	sessionID := fmt.Sprintf("%016x%016x", s.idRng.Uint64(), s.idRng.Uint64())
	return success(201, "Reservation Submitted Successfully", true, frontpay.SessionResult{
		CustomerUUID: r.customerUUID, ReservationUUID: r.uuid,
		PaymentURL: c.base + "/checkout/" + r.uuid + "?session=" + url.QueryEscape(sessionID),
	})
}

// open stores a new SENT reservation with the UUID given from a validated submit or session body.
func (s *Sandbox) open(c *call, q *frontpay.SubmitReservationRequest, via, uuid string) *reservation {
	r := &reservation{
		uuid:           uuid,
		token:          c.token,
		status:         StatusSent,
		paymentMethod:  via,
		customer:       q.CustomerDetails,
		orderDate:      unixTime(q.OrderDate),
		due:            unixTime(q.DueDateForPaymentLink),
		referenceNo:    q.ReferenceNo,
		customerRef:    q.CustomerReference,
		sendOrderBy:    q.SendOrderBy,
		chargeValidity: q.ChargeValidity,
		customerNotes:  q.CustomerNotes,
		tnc:            q.TNC,
		settings:       q.Settings,
		grandTotal:     cents(q.OrderSummary.GrandTotal),
		refundedFrom:   map[string]int64{},
	}
	if u := q.CustomerDetails.UUID; u != nil && *u != "" {
		r.customerUUID = *u
	} else {
		r.customerUUID = s.newID("CSRT")
	}
	if q.Callback != nil {
		r.callbackURL = q.Callback.CallbackURL
	}
	for _, p := range q.Products {
		r.lines = append(r.lines, &line{
			id: s.lineID(), name: p.Name, productID: p.ProductID,
			rate: cents(p.Rate), tax: frontpay.Num(p.Tax.String()), amount: cents(p.Amount),
		})
	}
	c.acct.reservations[r.uuid] = r
	cust := q.CustomerDetails
	c.acct.addEvent(historyEvent{uuid: r.uuid, title: "reservation-sent", at: c.now, amount: r.grandTotal,
		sentTo: contact(&cust.Email, &cust.CountryCode, &cust.MSISDN)})
	s.record(c, r.uuid, "", r.grandTotal)
	return r
}

// target decodes the body into q and finds the reservation the path names; notFound is the key
// the operation's document gives its 404.
func (s *Sandbox) target(c *call, q frontpay.Validator, notFound string) (*reservation, answer, bool) {
	if a, ok := c.decode(q); !ok {
		return nil, a, false
	}
	r := c.acct.lookup(c.params[0], c.now)
	if r == nil {
		return nil, c.refuse(notFound), false
	}
	return r, answer{}, true
}

// closedKey is the refusal of a money movement on a cancelled or completed reservation.
func (r *reservation) closedKey() string {
	switch r.status {
	case StatusCancelled:
		return "reservationStatusAlreadyCancelled"
	case StatusCompleted:
		return "reservationStatusAlreadyCompleted"
	}
	return ""
}

// details answers GET /reservations/details/{uuid}.
func (s *Sandbox) details(c *call) answer {
	r := c.acct.lookup(c.params[0], c.now)
	if r == nil {
		return c.refuse("reservationNotFound")
	}
	return success(200, "reservationRetrievedSuccessfully", true, r.view())
}

// movable finds the reservation of a capture or charge. It refuses one that is cancelled or
// completed, one not paid yet (with the key unpaid) and one past deadline(r) (with the key late).
func (s *Sandbox) movable(c *call, q frontpay.Validator, unpaid string, deadline func(*reservation) time.Time, late string) (*reservation, answer, bool) {
	r, a, ok := s.target(c, q, "reservationNotFound")
	switch {
	case !ok:
		return nil, a, false
	case r.closedKey() != "":
		return nil, c.refuse(r.closedKey()), false
	case !r.paid():
		return nil, c.refuse(unpaid), false
	case c.now.After(deadline(r)):
		return nil, c.refuse(late), false
	}
	return r, answer{}, true
}

// captureDeadline is the last moment a capture is allowed: reservedAt plus the capture window.
func (s *Sandbox) captureDeadline(r *reservation) time.Time { return r.reservedAt.Add(s.captureWindow) }

// byProduct sums request lines by product id, in cents.
func byProduct(lines []frontpay.CaptureLine) map[int64]int64 {
	m := map[int64]int64{}
	for _, l := range lines {
		id, _ := strconv.ParseInt(l.ID.String(), 10, 64) // validated before
		m[id] += cents(l.Amount)
	}
	return m
}

// capture turns reserved money into a payment: POST /reservations/capture/{uuid}.
func (s *Sandbox) capture(c *call) answer {
	var q frontpay.CaptureRequest
	r, a, ok := s.movable(c, &q, "requestedCaptureAmountExceedAvailableCaptureRunway", s.captureDeadline, "paymentCaptureDeadlineExceed")
	if !ok {
		return a
	}
	want := byProduct(q.Products)
	for id := range want {
		if l := r.line(id); l == nil || l.reserved == 0 {
			return c.refuse("requestProductIdNotAvailable")
		}
	}
	for id, amount := range want {
		if l := r.line(id); amount > l.reserved-l.captured {
			return c.refuse("requestedCaptureAmountExceedAvailableCaptureRunway")
		}
	}
	for id, amount := range want {
		r.line(id).captured += amount
	}
	p := s.pay(c, r, sourceCaptured, cents(q.GrandTotal), q.AdditionalText, want)
	r.status = StatusCaptured
	return success(202, "reservationCapturedSuccessfully", true, frontpay.PaymentResult{UUID: p.uuid})
}

// chargeDeadline is the last moment a charge is allowed: reservedAt plus chargeValidity days.
func (r *reservation) chargeDeadline() time.Time {
	days := defaultChargeValidityDays
	if r.chargeValidity != nil {
		if d, err := strconv.Atoi(*r.chargeValidity); err == nil {
			days = min(d, 100*365)
		}
	}
	return r.reservedAt.AddDate(0, 0, days)
}

// charge takes a merchant-initiated payment from the stored card: POST /reservations/charge/{uuid}.
func (s *Sandbox) charge(c *call) answer {
	var q frontpay.ChargeRequest
	r, a, ok := s.movable(c, &q, "paymentCardNotFound", (*reservation).chargeDeadline, "paymentChargeDeadlineExceed")
	if !ok {
		return a
	}
	amount := cents(q.GrandTotal)
	if r.total(sourceCharged)+amount > r.grandTotal {
		return c.refuse("paymentChargeRunwayExceed")
	}
	lines := map[int64]int64{}
	for _, p := range q.Products {
		l := &line{id: s.lineID(), name: p.Name, productID: p.ProductID,
			rate: cents(p.Rate), tax: frontpay.Num(p.Tax.String()), amount: cents(p.Amount)}
		r.lines = append(r.lines, l)
		lines[l.id] = l.amount
	}
	p := s.pay(c, r, sourceCharged, amount, q.AdditionalText, lines)
	if r.status != StatusCaptured {
		r.status = StatusCharged
	}
	return success(202, "reservationChargedSuccessfully", true, frontpay.PaymentResult{UUID: p.uuid})
}

// pay records a capture or charge: the payment, its history event, its effect and its callback.
func (s *Sandbox) pay(c *call, r *reservation, source string, amount int64, text *string, lines map[int64]int64) *payment {
	prefix := map[string]string{sourceCaptured: "CAP", sourceCharged: "CHG"}[source]
	p := &payment{uuid: s.newID(prefix), source: source, at: c.now, amount: amount, additionalText: text,
		lines: lines, refunded: map[int64]int64{}}
	r.payments = append(r.payments, p)
	c.acct.addEvent(historyEvent{uuid: r.uuid, title: source, at: c.now, amount: amount, note: text,
		paymentMethod: &r.paymentMethod, refundable: true})
	s.record(c, r.uuid, p.uuid, amount)
	s.notify(c.acct, r, source, amount, c.now)
	return p
}

// cancel voids a reservation not yet captured or charged: GET /reservations/cancel/{uuid}.
func (s *Sandbox) cancel(c *call) answer {
	var q frontpay.NoteRequest
	r, a, ok := s.target(c, &q, "orderNotFound")
	if !ok {
		return a
	}
	switch r.status {
	case StatusSent, StatusReserved:
	case StatusCancelled, StatusCompleted:
		return c.refuse(r.closedKey())
	default:
		return c.refuse("prerequisiteFailedToCancelReservation")
	}
	s.settle(c, r, StatusCancelled, r.grandTotal, q.Note)
	return success(202, "cancelledOrderSuccessfully", false, nil)
}

// complete finalises a captured or charged reservation: POST /reservations/complete/{uuid}.
func (s *Sandbox) complete(c *call) answer {
	var q frontpay.NoteRequest
	r, a, ok := s.target(c, &q, "reservationNotFound")
	if !ok {
		return a
	}
	switch r.status {
	case StatusCaptured, StatusCharged:
	case StatusCompleted:
		return c.refuse("reservationStatusAlreadyCompleted")
	default:
		return c.refuse("prerequisiteFailedToCompleteReservation")
	}
	s.settle(c, r, StatusCompleted, r.total(sourceCaptured)+r.total(sourceCharged), q.Note)
	return success(202, "reservationCompletedSuccessfully", false, nil)
}

// settle moves a reservation to its final status (CANCELLED or COMPLETED).
func (s *Sandbox) settle(c *call, r *reservation, status string, amount int64, note string) {
	r.status = status
	c.acct.addEvent(historyEvent{uuid: r.uuid, title: map[string]string{StatusCancelled: "cancelled", StatusCompleted: "completed"}[status],
		at: c.now, amount: amount, note: &note})
	s.record(c, r.uuid, "", 0)
}

// resendReservation sends the payment link again: POST /reservations/resend/{uuid}.
func (s *Sandbox) resendReservation(c *call) answer {
	var q frontpay.ResendRequest
	r, a, ok := s.target(c, &q, "orderNotFound")
	if !ok {
		return a
	}
	switch r.status {
	case StatusCompleted:
		return c.refuse("orderStatusAlreadyCompleted")
	case StatusCancelled:
		return c.refuse("orderStatusAlreadyCancelled")
	}
	c.acct.addEvent(historyEvent{uuid: r.uuid, title: "payment-link-resent", at: c.now, amount: r.grandTotal,
		sentTo: contact(q.Email, q.CountryCode, q.MSISDN)})
	s.record(c, r.uuid, "", 0)
	return success(202, "resentOrderSuccessfully", true, nil)
}

// refund returns captured or charged money: POST /reservations/refund/{uuid}.
func (s *Sandbox) refund(c *call) answer {
	var q frontpay.RefundRequest
	r, a, ok := s.target(c, &q, "orderNotFound")
	if !ok {
		return a
	}
	p := r.payment(q.Reference, q.Source)
	if p == nil {
		return c.refuse("refundRejectionForRefundRequestGreaterThanOrderAmount")
	}
	want := byProduct(q.Products)
	for id := range want {
		if _, ok := p.lines[id]; !ok {
			return c.refuse("requestProductIdNotAvailable")
		}
	}
	amount := cents(q.GrandTotal)
	if amount > p.amount-p.refundedTotal {
		return c.refuse("refundRejectionForRefundRequestGreaterThanOrderAmount")
	}
	var over []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if left := p.lines[id] - p.refunded[id]; want[id] > left {
			over = append(over, fmt.Sprintf("product %d: %s requested, %s refundable", id, money(want[id]), money(left)))
		}
	}
	if over != nil {
		a := c.refuse("refundRejectionForProductAmountExceed")
		a.payload = over
		return a
	}
	if p.source == sourceCharged && amount != p.amount && !r.partiallyRefundable() {
		return c.refuse("refundRejectionForRequestAmountThresholdExceed")
	}
	for id, v := range want {
		p.refunded[id] += v
	}
	p.refundedTotal += amount
	r.refundedFrom[p.source] += amount
	r.refunds = append(r.refunds, refundEntry{at: c.now, amount: amount, reference: p.uuid, partial: amount < p.amount})
	c.acct.addEvent(historyEvent{uuid: r.uuid, title: "refund-sent-from-" + p.source, at: c.now, amount: amount})
	s.record(c, r.uuid, p.uuid, amount)
	return success(202, "orderRefundedSuccessfully", true, nil)
}

// partiallyRefundable is settings.isChargePartiallyRefundable; absent means fully refundable only.
func (r *reservation) partiallyRefundable() bool {
	return r.settings != nil && r.settings.IsChargePartiallyRefundable != nil && *r.settings.IsChargePartiallyRefundable
}

// history lists the events of the account's reservations in [start, end]: GET /reservations/history/{start}/{end}.
func (s *Sandbox) history(c *call) answer {
	start, errStart := strconv.ParseInt(c.params[0], 10, 64)
	end, errEnd := strconv.ParseInt(c.params[1], 10, 64)
	fields := map[string][]string{}
	if errStart != nil || !isDigits(c.params[0]) {
		fields["start"] = []string{"must be a Unix timestamp in seconds"}
	}
	if errEnd != nil || !isDigits(c.params[1]) {
		fields["end"] = []string{"must be a Unix timestamp in seconds"}
	} else if errStart == nil && end < start {
		fields["end"] = []string{"must not be before start"}
	}
	if len(fields) > 0 {
		return invalid(fields)
	}
	c.acct.expireAll(c.now)
	var picked []historyEvent
	for _, e := range c.acct.events {
		if t := e.at.Unix(); t >= start && t <= end {
			picked = append(picked, e)
		}
	}
	slices.SortStableFunc(picked, func(a, b historyEvent) int { return a.at.Compare(b.at) })
	out := make([]frontpay.HistoryEvent, 0, len(picked))
	for _, e := range picked {
		out = append(out, frontpay.HistoryEvent{
			UUID: e.uuid, Title: e.title, Datetime: e.at.UTC().Format("02.01.2006 15:04"), SentTo: e.sentTo,
			Note: e.note, PaymentMethod: e.paymentMethod, IsRefundable: e.refundable,
			Amount: frontpay.Str(money(e.amount).String()),
		})
	}
	return success(200, "reservationRetrievedSuccessfully", true, out)
}
