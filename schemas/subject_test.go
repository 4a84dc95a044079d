package schemas

import (
	"strings"
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

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"", "shop1.", "acme.shop-1.", "a.b.c."} {
		if err := CheckPrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"shop1", ".", ".shop1.", "shop..1.", "shop 1.", "shop*.", "shop>.", "a\n."} {
		if err := CheckPrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMerchantPrefix(t *testing.T) {
	if p, err := MerchantPrefix("acme.", "shop_1-a"); err != nil || p != "acme.shop_1-a." {
		t.Errorf("got %q, %v", p, err)
	}
	for _, bad := range []string{"", "Shop1", "-shop", "_shop", "shop.1", "shop 1", "shop*", strings.Repeat("a", 33)} {
		if _, err := MerchantPrefix("", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
