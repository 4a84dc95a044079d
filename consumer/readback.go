package consumer

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Read-back: deciding whether a request whose answer never came took effect.
//
// Before the first request of a capture, charge, refund, cancel or complete, the worker reads the
// reservation (details with payment history) and records a baseline. After an unknown outcome
// (timeout or cut connection after sending, a 5xx, a worker killed in state sending) it reads the
// reservation again and compares. Because commands of one reservation run one at a time, in
// publish order, no other command of this worker can have changed the reservation in between:
//
//   - capture / charge: no new captured (charged) entry → not applied; exactly one new entry, of
//     the command's grand total → applied, and its reference is the uuid the API would have
//     answered; anything else (two new entries, another amount) → undecided.
//   - refund: no new refund entry → not applied; exactly one new entry, from the command's
//     reference and of its grand total → applied; anything else → undecided.
//   - cancel / complete: the status became CANCELLED (COMPLETED) → applied; the status is
//     unchanged → not applied; it changed to anything else → undecided.
//
// Submit, session and order.create create a new resource whose identifier only the lost answer
// held, so there is nothing to read back: their unknown outcomes are undecided. Resend, details
// and history move no money; they are simply sent again.

// verdict is what a read-back proved.
type verdict int

const (
	notApplied verdict = iota
	applied
	undecided
)

func (v verdict) String() string {
	return [...]string{"not_applied", "applied", "undecided"}[v]
}

// baseline is what the read-back compares with: the reservation before the first request.
type baseline struct {
	Status   string       `json:"status"`
	Captured []string     `json:"captured,omitempty"`
	Charged  []string     `json:"charged,omitempty"`
	Refunds  []refundMark `json:"refunds,omitempty"`
}

// refundMark identifies a refund entry; refunds have no identifier of their own.
type refundMark struct {
	Reference string `json:"reference"`
	Amount    string `json:"amount"`
	At        string `json:"at"`
}

// needsBaseline reports whether op's unknown outcomes are decided by reading the reservation.
func needsBaseline(op frontpay.Operation) bool {
	switch op {
	case frontpay.ReservationCapture, frontpay.ReservationCharge, frontpay.ReservationRefund,
		frontpay.ReservationCancel, frontpay.ReservationComplete:
		return true
	}
	return false
}

// resendable reports whether sending op again after an unknown outcome is harmless.
func resendable(op frontpay.Operation) bool {
	switch op {
	case frontpay.ReservationDetails, frontpay.ReservationHistory, frontpay.ReservationResend, frontpay.OrderResend:
		return true
	}
	return false
}

func baselineOf(r *frontpay.Reservation) *baseline {
	b := &baseline{Status: r.Status}
	if h := r.PaymentHistory; h != nil {
		for _, p := range h.Captured {
			b.Captured = append(b.Captured, p.Reference)
		}
		for _, p := range h.Charged {
			b.Charged = append(b.Charged, p.Reference)
		}
		for _, p := range h.Refunded {
			b.Refunds = append(b.Refunds, markOf(p))
		}
	}
	return b
}

func markOf(p frontpay.HistoryRefund) refundMark {
	return refundMark{Reference: p.Reference, Amount: centsText(p.Amount), At: string(p.At)}
}

// centsText normalises an amount so that 15, "15" and 15.00 compare equal.
func centsText(n frontpay.Number) string {
	c, err := n.Cents()
	if err != nil {
		return n.String()
	}
	return frontpay.FromCents(c).String()
}

// readBack compares the reservation now with the baseline for the command's body. It returns the
// verdict and, when applied, the data member the API's answer would have carried.
func readBack(op frontpay.Operation, body frontpay.Validator, base *baseline, now *frontpay.Reservation) (verdict, json.RawMessage) {
	h := now.PaymentHistory
	if h == nil {
		h = &frontpay.PaymentHistory{}
	}
	switch op {
	case frontpay.ReservationCapture:
		return newPayment(base.Captured, h.Captured, body.(*frontpay.CaptureRequest).GrandTotal)
	case frontpay.ReservationCharge:
		return newPayment(base.Charged, h.Charged, body.(*frontpay.ChargeRequest).GrandTotal)
	case frontpay.ReservationRefund:
		return newRefund(base.Refunds, h.Refunded, body.(*frontpay.RefundRequest))
	case frontpay.ReservationCancel:
		return newStatus(base.Status, now.Status, "CANCELLED")
	case frontpay.ReservationComplete:
		return newStatus(base.Status, now.Status, "COMPLETED")
	}
	return undecided, nil
}

func newPayment(before []string, now []frontpay.HistoryPayment, total frontpay.Number) (verdict, json.RawMessage) {
	var fresh []frontpay.HistoryPayment
	for _, p := range now {
		if !slices.Contains(before, p.Reference) {
			fresh = append(fresh, p)
		}
	}
	switch {
	case len(fresh) == 0:
		return notApplied, nil
	case len(fresh) == 1 && fresh[0].Amount.Cmp(total) == 0:
		b, _ := json.Marshal(frontpay.PaymentResult{UUID: fresh[0].Reference})
		return applied, b
	}
	return undecided, nil
}

func newRefund(before []refundMark, now []frontpay.HistoryRefund, req *frontpay.RefundRequest) (verdict, json.RawMessage) {
	left := append([]refundMark(nil), before...)
	var fresh []refundMark
	for _, p := range now {
		m := markOf(p)
		if i := slices.Index(left, m); i >= 0 {
			left = append(left[:i], left[i+1:]...)
			continue
		}
		fresh = append(fresh, m)
	}
	want := refundMark{Reference: req.Reference, Amount: centsText(req.GrandTotal)}
	switch {
	case len(fresh) == 0:
		return notApplied, nil
	case len(fresh) == 1 && fresh[0].Reference == want.Reference && fresh[0].Amount == want.Amount:
		return applied, json.RawMessage("null")
	}
	return undecided, nil
}

func newStatus(before, now, target string) (verdict, json.RawMessage) {
	switch {
	case strings.EqualFold(now, target) && !strings.EqualFold(before, target):
		return applied, json.RawMessage("null")
	case strings.EqualFold(now, before):
		return notApplied, nil
	}
	return undecided, nil
}

// successMessage is the documented message key of an operation's success, used for the result
// event of a command whose success was proved by read-back rather than answered.
var successMessage = map[frontpay.Operation]string{
	frontpay.ReservationCapture:  "reservationCapturedSuccessfully",
	frontpay.ReservationCharge:   "reservationChargedSuccessfully",
	frontpay.ReservationRefund:   "orderRefundedSuccessfully",
	frontpay.ReservationCancel:   "cancelledOrderSuccessfully",
	frontpay.ReservationComplete: "reservationCompletedSuccessfully",
}
