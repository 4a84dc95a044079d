package schemas

import (
	"testing"

	"github.com/nordpay/frontpay-worker/frontpay"
)

func TestSubjects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ got, want string }{
		{CommandSubject("", rc), "reservation.capture.requested"},
		{CommandSubject("shop1.", oc), "shop1.order.create.requested"},
		{ResultSubject("shop1.", rc, true), "shop1.reservation.capture.succeeded"},
		{ResultSubject("", rf, false), "reservation.refund.failed"},
		{StatusSubject("shop1.", "reservation"), "shop1.reservation.status.changed"},
		{DeadLetterSubject("shop1.", "shop1.reservation.capture.requested"), "shop1.frontpay.deadletter.shop1.reservation.capture.requested"},
		{DeadLetterSubject("", "order.create.requested"), "frontpay.deadletter.order.create.requested"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestOpFromSubject(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "shop1.", "eu.shop1."} {
		for _, op := range frontpay.Operations() {
			if got, ok := OpFromSubject(prefix, CommandSubject(prefix, op)); !ok || got != op {
				t.Errorf("OpFromSubject(%q, %q) = %q, %v", prefix, CommandSubject(prefix, op), got, ok)
			}
		}
	}
	for _, tt := range []struct{ prefix, subject string }{
		{"shop1.", "reservation.capture.requested"},
		{"", "shop1.reservation.capture.requested"},
		{"", "reservation.capture.succeeded"},
		{"", "reservation.capture"},
		{"", "reservation.bogus.requested"},
		{"", ".requested"},
		{"shop1.", "shop1."},
		{"", "frontpay.deadletter.reservation.capture.requested"},
	} {
		if op, ok := OpFromSubject(tt.prefix, tt.subject); ok {
			t.Errorf("OpFromSubject(%q, %q) = %q", tt.prefix, tt.subject, op)
		}
	}
}
