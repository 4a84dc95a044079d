package consumer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// TestUnknownOutcomeReadBack cuts the answer of a money call (after or before its effect),
// answers it 5xx or lets it time out, once: the worker reads the reservation back and ends with exactly one effect
// and a success built from what it read.
func TestUnknownOutcomeReadBack(t *testing.T) {
	// timeout is the worker's API timeout where the call times out (a fault with latency):
	// shorter than the harness's, so that the case waits less for it, and still long for the
	// calls that must not time out (the read-back, the second request) under -race.
	const timeout = time.Second
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
		// noMarker runs the worker with FRONTPAY_READBACK_MARKER=off.
		noMarker bool
	}{
		{"capture/dropped after effect", frontpay.ReservationCapture, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 1, false},
		{"charge/dropped after effect", frontpay.ReservationCharge, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return chargeData(r, 50, "readback")
		}, 1, false},
		{"refund/dropped after effect", frontpay.ReservationRefund, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return refundData(r, h.capture(t, r, 300, "to refund"), 100)
		}, 1, false},
		{"cancel/dropped after effect", frontpay.ReservationCancel, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return noteData(r.UUID, "readback")
		}, 1, false},
		{"complete/dropped after effect", frontpay.ReservationComplete, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			h.capture(t, r, 300, "to complete")
			return noteData(r.UUID, "readback")
		}, 1, false},
		{"capture/dropped before effect", frontpay.ReservationCapture, sandbox.Fault{DropBeforeShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2, false},
		{"capture/5xx", frontpay.ReservationCapture, sandbox.Fault{ErrorShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2, false},
		{"capture/timeout", frontpay.ReservationCapture, sandbox.Fault{Latency: timeout + time.Second, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2, false},
		{"capture/marker off/dropped after effect", frontpay.ReservationCapture, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 1, true},
		{"capture/marker off/dropped before effect", frontpay.ReservationCapture, sandbox.Fault{DropBeforeShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, "readback")
		}, 2, true},
		{"charge/marker off/dropped after effect", frontpay.ReservationCharge, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return chargeData(r, 50, "readback")
		}, 1, true},
		{"capture/note too long for the marker/dropped after effect", frontpay.ReservationCapture, dropAfter, func(t *testing.T, h *harness, r reservation) any {
			return captureData(r, 300, strings.Repeat("n", MaxNoteLength-10))
		}, 1, false},
		{"charge/note too long for the marker/dropped before effect", frontpay.ReservationCharge, sandbox.Fault{DropBeforeShare: 1, Times: 1}, func(t *testing.T, h *harness, r reservation) any {
			return chargeData(r, 50, strings.Repeat("n", MaxNoteLength-15))
		}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t, withoutWorker())
			h.start("reading-back", func(c *Config) {
				c.NoMarker = tt.noMarker
				if tt.fault.Latency > 0 {
					c.APITimeout = timeout
				}
			})
			r := h.paid(t)
			data := tt.data(t, h, r)
			reads0 := h.calls.Count(frontpay.ReservationDetails, r.UUID)
			h.sb.SetFault(tt.op, tt.fault)

			c := h.publish(t, tt.op, data)
			s := success(t, h.resultOf(t, c))

			effects := h.effects(tt.op, r.UUID)
			if len(effects) != 1 {
				t.Fatalf("%d effects of %s, want 1: %+v", len(effects), tt.op, effects)
			}
			e := effects[0]
			if n := h.calls.Count(tt.op, r.UUID); n != tt.sent || e.Dropped != (tt.sent == 1) {
				t.Errorf("%s sent %d times (want %d), effect dropped %v", tt.op, n, tt.sent, e.Dropped)
			}
			// With the marker, and for cancel and complete (read back by status): only the
			// read-back. Otherwise (a refund, a note too long, the marker off): a baseline before
			// the request, then the read-back.
			var sentText string
			if b := map[string]any{}; json.Unmarshal(e.Body, &b) == nil {
				sentText, _ = b["additionalText"].(string)
			}
			withMarker := markerPattern.MatchString(sentText)
			reads := 1
			if !withMarker && tt.op != frontpay.ReservationCancel && tt.op != frontpay.ReservationComplete {
				reads = 2
			}
			if n := h.calls.Count(frontpay.ReservationDetails, r.UUID) - reads0; n != reads {
				t.Errorf("%d details reads, want %d (marker sent: %v)", n, reads, withMarker)
			}
			wantMarker := !tt.noMarker && (tt.op == frontpay.ReservationCapture || tt.op == frontpay.ReservationCharge) &&
				!strings.Contains(tt.name, "too long")
			if withMarker != wantMarker {
				t.Errorf("additionalText sent %q: marker %v, want %v", sentText, withMarker, wantMarker)
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
