package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// kari is the personal data submitPayload carries that the customer of testworld's
// PaidReservation does not (they share a phone number).
var kari = []string{"Kari Nordmann", "kari@example.no", "Storgata 1"}

// holdingAny returns where the stored messages hold one of values, in data or headers.
func holdingAny(msgs []rawMsg, values ...string) []string {
	var out []string
	for _, m := range msgs {
		text := fmt.Sprint(m.header) + string(m.data)
		for _, v := range values {
			if strings.Contains(text, v) {
				out = append(out, fmt.Sprintf("%s %s holds %q", m.stream, m.subject, v))
				break
			}
		}
	}
	return out
}

// TestForgetCommand drives `forget` against a running worker: a submit and a details of one
// customer's reservation, a status event of it, and a details of another reservation. Off a
// terminal it refuses without --yes, --dry-run and a "no" erase nothing, --yes erases her data
// from every stream and the bucket and leaves the other reservation's, and a second run finds
// nothing left.
func TestForgetCommand(t *testing.T) {
	sb, js := toolsWorld(t)
	api := sb.Client(t, sandboxToken)

	out, errOut, code := cliRun(t, settings{}, submitPayload(t), "publish", "--key", "submit-kari", "reservation.submit", "-")
	if code != exitOK {
		t.Fatalf("submit: exit %d\n%s%s", code, out, errOut)
	}
	var created struct {
		Data struct {
			Response frontpay.SubmitReservationResult `json:"response"`
		} `json:"data"`
	}
	if _, result, _ := strings.Cut(out, "\n"); json.Unmarshal([]byte(result), &created) != nil || created.Data.Response.ReservationUUID == "" {
		t.Fatalf("submit's result:\n%s", out)
	}
	uuid := created.Data.Response.ReservationUUID
	if err := sb.Pay(uuid); err != nil {
		t.Fatal(err)
	}
	other, _ := sb.PaidReservation(t, api)
	for _, res := range []string{uuid, other} {
		if out, errOut, code := cliRun(t, settings{}, `{"reservationUuid":"`+res+`"}`, "publish", "reservation.details", "-"); code != exitOK {
			t.Fatalf("details: exit %d\n%s%s", code, out, errOut)
		}
	}
	status, err := schemas.NewStatus("test", "", "reservation", schemas.StatusChange{
		UUID: uuid, Status: "reserved", Amount: "100.00", At: time.Now().UTC().Truncate(time.Minute).Format(time.RFC3339), Source: "history",
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(status)
	if _, err := js.Publish(t.Context(), schemas.StatusSubject("", "reservation"), b, jetstream.WithMsgID(status.ID)); err != nil {
		t.Fatal(err)
	}
	testworld.WaitFor(t, func() bool {
		c, err := js.Consumer(t.Context(), "FRONTPAY_COMMANDS", consumer.ConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "every command to be acknowledged")
	if len(holdingAny(readAllStreams(t, js), kari...)) < 3 || len(holdingAny(readAllStreams(t, js), "a@example.no")) == 0 {
		t.Fatalf("the data is not where the test expects it: %v", holdingAny(readAllStreams(t, js), append(kari, "a@example.no")...))
	}

	forget := func(set settings, in string, args ...string) (string, int) {
		t.Helper()
		out, errOut, code := cliRun(t, set, in, append([]string{"forget", "--reservation", uuid}, args...)...)
		return out + errOut, code
	}
	if out, code := forget(settings{}, ""); code != exitUsage || !strings.Contains(out, "--yes") {
		t.Fatalf("forget off a terminal without --yes: exit %d\n%s", code, out)
	}
	out, code = forget(settings{}, "", "--dry-run")
	for _, want := range []string{"would erase FRONTPAY_COMMANDS seq=1 reservation.submit.requested", "would erase FRONTPAY_RESULTS seq=",
		"would scrub frontpay_state record idem.", "(reservation.submit succeeded key=submit-kari)", "; 0 kept"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("forget --dry-run: exit %d, lacks %q\n%s", code, want, out)
		}
	}
	out, code = forget(settings{interactive: true}, "n\n")
	if code != exitOK || !strings.Contains(out, "not confirmed: nothing erased") || !strings.Contains(out, "for good? [y/N]") {
		t.Fatalf("forget answered no: exit %d\n%s", code, out)
	}
	if len(holdingAny(readAllStreams(t, js), kari...)) < 3 {
		t.Fatal("a dry run or a no erased something")
	}

	out, code = forget(settings{}, "", "--yes")
	if code != exitOK || !strings.Contains(out, "erased FRONTPAY_COMMANDS seq=1 reservation.submit.requested") ||
		!strings.Contains(out, "scrubbed frontpay_state record idem.") || !strings.Contains(out, "erased FRONTPAY_RESULTS seq=") ||
		!strings.Contains(out, "; 0 kept") {
		t.Fatalf("forget --yes: exit %d\n%s", code, out)
	}
	msgs := readAllStreams(t, js)
	for _, l := range holdingAny(msgs, kari...) {
		t.Errorf("after forget, %s", l)
	}
	// The scrubbed records name the reservation; no stream does.
	for _, l := range holdingAny(msgs, uuid) {
		if !strings.HasPrefix(l, "KV_frontpay_state ") {
			t.Errorf("after forget, %s", l)
		}
	}
	if len(holdingAny(msgs, "a@example.no")) == 0 {
		t.Error("forget erased the other reservation's details")
	}
	if out, code := forget(settings{}, "", "--yes"); code != exitOK || !strings.Contains(out, "nothing to erase") {
		t.Errorf("forget again: exit %d\n%s", code, out)
	}
}
