package consumer

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Read-back: deciding whether a request whose answer never came took effect.
//
// After an unknown outcome (timeout or cut connection after sending, a 5xx, a worker killed in
// state sending) the worker reads the reservation (details with payment history). Because the
// commands of one reservation run one at a time, in publish order, no other command of this
// worker changes the reservation meanwhile:
//
//   - capture / charge, with the read-back marker: every request of a key's generation carries
//     the marker " [fp:<10 hex>]" at the end of its additionalText, derived from the merchant,
//     the key and the generation (CONTRACT.md section 4), and the payment history keeps that
//     text. Exactly one captured (charged) entry with the marker, of the command's grand total →
//     applied, and its reference is the uuid the API would have answered; none with the marker →
//     not applied, unless an entry without any marker could be the effect (the same amount, not
//     clearly older than the request): the API may have dropped the text, so that is undecided;
//     anything else → undecided. No read before the request is needed.
//   - capture / charge without the marker (the note would pass 255 characters, or
//     FRONTPAY_READBACK_MARKER=off), and refund (whose history entry has no text): against the
//     baseline read before the first request. No new entry → not applied; exactly one new entry
//     of the command's grand total (a refund's: from its reference) → applied; anything else →
//     undecided.
//   - cancel / complete: the status is CANCELLED (COMPLETED) → applied; otherwise → not applied
//     (sending either again is harmless: the API refuses a second one).
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

// MaxNoteLength is the longest additionalText the API keeps: a note that would pass it with the
// read-back marker is sent without one, and read back against a baseline instead.
const MaxNoteLength = 255

// unmarkedHorizon is how much older than a request an unmarked history entry must be to be
// surely not its effect: far beyond any clock difference between the API and the worker.
const unmarkedHorizon = time.Hour

// markerPattern matches any read-back marker, the worker's or another key's.
var markerPattern = regexp.MustCompile(`\[fp:[0-9a-f]{10}\]`)

// markerOf is the read-back marker of an idempotency key's generation at a merchant.
func markerOf(merchant, key string, gen int) string {
	sum := sha256.Sum256([]byte(merchant + "\x00" + key + "\x00" + strconv.Itoa(gen)))
	return "[fp:" + hex.EncodeToString(sum[:5]) + "]"
}

// marked returns the request body with marker at the end of its additionalText, and false when
// the operation carries no note or the note would pass MaxNoteLength characters.
func marked(body frontpay.Validator, marker string) (frontpay.Validator, bool) {
	note := func(text *string) (*string, bool) {
		s := marker
		if text != nil && *text != "" {
			s = *text + " " + marker
		}
		return &s, utf8.RuneCountInString(s) <= MaxNoteLength
	}
	switch b := body.(type) {
	case *frontpay.CaptureRequest:
		c := *b
		var ok bool
		c.AdditionalText, ok = note(b.AdditionalText)
		return &c, ok
	case *frontpay.ChargeRequest:
		c := *b
		var ok bool
		c.AdditionalText, ok = note(b.AdditionalText)
		return &c, ok
	}
	return body, false
}

// baseline is what a read-back without a marker compares with: the reservation before the
// request.
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

// readBack compares the reservation now with what the request in flight left in the record:
// its marker, or its baseline. It returns the verdict and, when applied, the data member the
// API's answer would have carried.
func readBack(op frontpay.Operation, body frontpay.Validator, rec *record, now *frontpay.Reservation) (verdict, json.RawMessage) {
	h := now.PaymentHistory
	if h == nil {
		h = &frontpay.PaymentHistory{}
	}
	switch op {
	case frontpay.ReservationCapture, frontpay.ReservationCharge:
		var entries []frontpay.HistoryPayment
		var total frontpay.Number
		switch b := body.(type) {
		case *frontpay.CaptureRequest:
			entries, total = h.Captured, b.GrandTotal
		case *frontpay.ChargeRequest:
			entries, total = h.Charged, b.GrandTotal
		}
		if rec.Marker != "" {
			return markedPayment(entries, rec.Marker, total, cmp.Or(rec.FirstSentAt, rec.SentAt))
		}
		if rec.Baseline == nil {
			return undecided, nil
		}
		before := rec.Baseline.Captured
		if op == frontpay.ReservationCharge {
			before = rec.Baseline.Charged
		}
		return newPayment(before, entries, total)
	case frontpay.ReservationRefund:
		if rec.Baseline == nil {
			return undecided, nil
		}
		return newRefund(rec.Baseline.Refunds, h.Refunded, body.(*frontpay.RefundRequest))
	case frontpay.ReservationCancel:
		return hasStatus(now.Status, "CANCELLED")
	case frontpay.ReservationComplete:
		return hasStatus(now.Status, "COMPLETED")
	}
	return undecided, nil
}

// markedPayment finds the effect of a marked capture or charge among the history's entries.
func markedPayment(entries []frontpay.HistoryPayment, marker string, total frontpay.Number, sent time.Time) (verdict, json.RawMessage) {
	var ours []frontpay.HistoryPayment
	maybe := false
	for _, p := range entries {
		text := ""
		if p.AdditionalText != nil {
			text = *p.AdditionalText
		}
		switch {
		case strings.Contains(text, marker):
			ours = append(ours, p)
		case markerPattern.MatchString(text):
			// Another command's effect.
		case p.Amount.Cmp(total) == 0 && !olderThan(p.At, sent.Add(-unmarkedHorizon)):
			maybe = true
		}
	}
	switch {
	case len(ours) == 1 && ours[0].Amount.Cmp(total) == 0:
		b, _ := json.Marshal(frontpay.PaymentResult{UUID: ours[0].Reference})
		return applied, b
	case len(ours) == 0 && !maybe:
		return notApplied, nil
	}
	return undecided, nil
}

// olderThan reports whether a history time (RFC 3339 or Unix seconds) is surely before t; an
// unreadable time is not.
func olderThan(at frontpay.Text, t time.Time) bool {
	s := strings.TrimSpace(string(at))
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).Before(t)
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05"} {
		if v, err := time.Parse(layout, s); err == nil {
			return v.Before(t)
		}
	}
	return false
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

// hasStatus decides a cancel or complete by the status alone.
func hasStatus(now, target string) (verdict, json.RawMessage) {
	if strings.EqualFold(now, target) {
		return applied, json.RawMessage("null")
	}
	return notApplied, nil
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
