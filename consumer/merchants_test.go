package consumer

import (
	"strings"
	"testing"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// atMerchant publishes the command on a merchant's subject.
func atMerchant(c command, merchant string) command {
	c.Merchant = merchant
	return c
}

// startMerchant creates a merchant's consumer and runs its worker.
func (h *harness) startMerchant(t *testing.T, merchant string) *runner {
	t.Helper()
	if err := h.topo.EnsureMerchant(t.Context(), h.js, h.kv, merchant); err != nil {
		t.Fatal(err)
	}
	return h.start("worker-"+merchant, func(c *Config) { c.Merchant = merchant })
}

// startUnknownMerchants runs the answerer of unknown merchants' commands until the test ends.
func (h *harness) startUnknownMerchants(t *testing.T) {
	t.Helper()
	u := NewUnknownMerchants(h.topo, testSource, h.js, h.kv, publisher.New(h.js, nil, 2*testworld.Patience), nil, testLogger("unknown"))
	done := make(chan error, 1)
	go func() { done <- u.Run(t.Context()) }() // t.Context ends as the test does, before its cleanup
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("unknown merchants: %v", err)
		}
	})
}

// TestMerchantsKeySpaces: the same idempotency key at two merchants is two keys: two captures,
// two results, each on its merchant's subject with the extension merchant.
func TestMerchantsKeySpaces(t *testing.T) {
	t.Parallel()
	h := setup(t, withMerchants())
	h.startMerchant(t, "shop1")
	h.startMerchant(t, "shop2")
	r1, r2 := h.paid(t), h.paid(t)
	c1 := h.send(t, atMerchant(newCommand(t, frontpay.ReservationCapture, captureData(r1, 300, "shop1"), client.Key("same-key")), "shop1"), "")
	c2 := h.send(t, atMerchant(newCommand(t, frontpay.ReservationCapture, captureData(r2, 300, "shop2"), client.Key("same-key")), "shop2"), "")
	res1, res2 := h.await(t, byCause(c1.ID), "shop1's result"), h.await(t, byCause(c2.ID), "shop2's result")
	success(t, res1)
	success(t, res2)
	if res1.Subject != "p.shop1.reservation.capture.succeeded" || res1.Event.Merchant != "shop1" ||
		res2.Subject != "p.shop2.reservation.capture.succeeded" || res2.Event.Merchant != "shop2" || res1.Event.ID == res2.Event.ID {
		t.Errorf("results: %s %s %s; %s %s %s", res1.Subject, res1.Event.Merchant, res1.Event.ID, res2.Subject, res2.Event.Merchant, res2.Event.ID)
	}
	if e1, e2 := h.effects(frontpay.ReservationCapture, r1.UUID), h.effects(frontpay.ReservationCapture, r2.UUID); len(e1) != 1 || len(e2) != 1 {
		t.Errorf("captures: %+v, %+v", e1, e2)
	}
}

// TestUnknownMerchant: a command of a merchant without a consumer is answered invalid_command /
// unknownMerchant on its merchant's result subject, with no call; once the merchant is added it is
// not run, but replay --merchant selects it, and its replay runs, once.
func TestUnknownMerchant(t *testing.T) {
	t.Parallel()
	h := setup(t, withMerchants())
	h.startUnknownMerchants(t)
	r := h.paid(t)
	data := captureData(r, 300, "unknown")
	c := h.send(t, atMerchant(newCommand(t, frontpay.ReservationCapture, data, client.Key("k1")), "shop9"), "")
	got := h.await(t, byCause(c.ID), "the unknown merchant's answer")
	f := checkFailure(t, c, got, schemas.InvalidCommand, 0, 0)
	if f.Message != "unknownMerchant" || got.Subject != "p.shop9.reservation.capture.failed" || got.Event.Merchant != "shop9" {
		t.Errorf("answered %s on %s, merchant %q", f.Message, got.Subject, got.Event.Merchant)
	}
	if n := h.calls.Count("", r.UUID); n != 1 { // the test's own details read
		t.Errorf("%d API calls", n)
	}
	other := h.send(t, atMerchant(newCommand(t, frontpay.ReservationCapture, data, client.Key("k1")), "shop8"), "")
	h.await(t, byCause(other.ID), "the other unknown merchant's answer")

	h.startMerchant(t, "shop9")
	next := h.send(t, atMerchant(newCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}), "shop9"), "")
	success(t, h.resultOf(t, next))
	if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 0 {
		t.Fatalf("the command answered as unknown ran once the merchant was added: %+v", e)
	}
	selected := func(merchant string) []FailureEvent {
		t.Helper()
		sel, err := h.topo.SelectReplays(t.Context(), h.js, ReplayFilter{Merchant: merchant}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sel.Selected
	}
	if all := selected(""); len(all) != 2 {
		t.Errorf("every merchant: %d failures selected, want shop8's and shop9's", len(all))
	}
	sel := selected("shop9")
	if len(sel) != 1 || sel[0].Event.ID != got.Event.ID || sel[0].Merchant != "shop9" {
		t.Fatalf("shop9: selected %+v", sel)
	}
	id, err := h.topo.Replay(t.Context(), h.js, sel[0])
	if err != nil {
		t.Fatal(err)
	}
	success(t, h.await(t, byCause(id), "the replay's result"))
	if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 1 {
		t.Errorf("after the replay: %+v", e)
	}
	if again := selected("shop9"); len(again) != 0 {
		t.Errorf("after the replay succeeded, selected again: %+v", again)
	}
}

// TestMerchantAddedMidStream publishes commands of a merchant while it is added: every command
// gets exactly one answer, an unknown merchant's failure or its success, never both, never none.
func TestMerchantAddedMidStream(t *testing.T) {
	t.Parallel()
	h := setup(t, withMerchants())
	h.startUnknownMerchants(t)
	rs := h.paidN(t, 40)
	var cmds []command
	for i, r := range rs {
		if i == len(rs)/2 {
			h.startMerchant(t, "shop8")
		}
		cmds = append(cmds, h.send(t, atMerchant(newCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}), "shop8"), ""))
	}
	var unknown, ran int
	for _, c := range cmds {
		r := h.resultOf(t, c)
		switch {
		case strings.HasSuffix(r.Event.Type, ".succeeded"):
			ran++
		case failure(t, r, schemas.InvalidCommand).Message == "unknownMerchant":
			unknown++
		}
	}
	testworld.WaitFor(t, func() bool {
		return h.consumerIdleOf(t, ConsumerFor("shop8")) && h.consumerIdleOf(t, UnknownMerchantsConsumer)
	},
		"both consumers to settle")
	for _, c := range cmds {
		if n := len(h.results.find(byCause(c.ID))); n != 1 {
			t.Errorf("%s: %d results", c, n)
		}
	}
	t.Logf("%d answered as an unknown merchant's, %d run", unknown, ran)
	if ran == 0 {
		t.Error("no command ran once the merchant was added")
	}
	if unknown == 0 {
		t.Errorf("no command before the merchant was added was answered as unknown (%d run)", ran)
	}
}
