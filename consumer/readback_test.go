package consumer

import (
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// TestUnknownOutcomeReadBack cuts the answer of a money call (after or before its effect),
// answers it 5xx or lets it time out, once: the worker reads the reservation back and ends with exactly one effect
// and a success built from what it read.
func TestUnknownOutcomeReadBack(t *testing.T) {
	t.Parallel()
	dropAfter := sandbox.Fault{DropShare: 1, Times: 1}
	tests := []struct {
		name  string
		op    frontpay.Operation
		fault sandbox.Fault
		// data prepares the reservation and returns the command's data.
		data func(t *testing.T, h *harness, r reservation) any
		// sent is how often the call reaches the API: once when the effect is read back, twice
		// when the read-back proves it absent and it is sent again.
		sent int
	}{
		{"capture/dropped after effect", frontpay.ReservationCapture, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 1},
		{"charge/dropped after effect", frontpay.ReservationCharge, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return chargeData(r, 50, "readback")
		}, 1},
		{"refund/dropped after effect", frontpay.ReservationRefund, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return refundData(r, h.capture(t, r, 300, "to refund"), 100)
		}, 1},
		{"cancel/dropped after effect", frontpay.ReservationCancel, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return noteData(r.UUID, "readback")
		}, 1},
		{"complete/dropped after effect", frontpay.ReservationComplete, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			h.capture(t, r, 300, "to complete")
			return noteData(r.UUID, "readback")
		}, 1},
		{"capture/dropped before effect", frontpay.ReservationCapture, sandbox.Fault{DropBeforeShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2},
		{"capture/5xx", frontpay.ReservationCapture, sandbox.Fault{ErrorShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2},
		{"capture/timeout", frontpay.ReservationCapture, sandbox.Fault{Latency: apiTimeout + time.Second, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t)
			r := h.paid(t)
			data := tt.data(t, h, r)
			reads := h.calls.count(frontpay.ReservationDetails, r.UUID)
			h.sb.SetFault(tt.op, tt.fault)

			c := h.publish(t, tt.op, data)
			s := success(t, h.resultOf(t, c))

			effects := h.effects(tt.op, r.UUID)
			if len(effects) != 1 {
				t.Fatalf("%d effects of %s, want 1: %+v", len(effects), tt.op, effects)
			}
			e := effects[0]
			if n := h.calls.count(tt.op, r.UUID); n != tt.sent || e.Dropped != (tt.sent == 1) {
				t.Errorf("%s sent %d times (want %d), effect dropped %v", tt.op, n, tt.sent, e.Dropped)
			}
			if n := h.calls.count(frontpay.ReservationDetails, r.UUID) - reads; n < 2 {
				t.Errorf("%d details reads: no baseline and read-back", n)
			}
			switch tt.op {
			case frontpay.ReservationCapture, frontpay.ReservationCharge:
				if got := responseUUID(t, s); got != e.Reference {
					t.Errorf("success names %s, the ledger %s", got, e.Reference)
				}
			default:
				if string(s.Response) != "null" {
					t.Errorf("response %s, want null", s.Response)
				}
			}
			if want := successMessage[tt.op]; s.Message != want || s.HTTPStatus != 202 {
				t.Errorf("success %d %q, want 202 %q", s.HTTPStatus, s.Message, want)
			}
		})
	}
}
