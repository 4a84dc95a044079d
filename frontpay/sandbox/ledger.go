package sandbox

import (
	"encoding/json"
	"slices"
	"time"
)

// Effect is one state change the sandbox applied: the ground truth that tests compare a worker's
// results with. Reads, refused calls and 5xx/429/drop-before faults leave none; neither does a
// reservation's expiry, which no call causes.
type Effect struct {
	Seq       int             `json:"seq"`
	At        time.Time       `json:"at"`
	Token     string          `json:"token"`               // the bearer token of the call; for customer.pay and order.pay, the token that created the reservation or order
	Op        string          `json:"op"`                  // frontpay operation name, or "customer.pay", "order.pay" for simulated customer payments
	UUID      string          `json:"uuid"`                // reservation or order uuid
	Reference string          `json:"reference,omitempty"` // capture/charge uuid created, or the reference refunded
	Cents     int64           `json:"cents"`               // money moved (capture/charge/refund/pay amounts, submit/session/order grand total), 0 otherwise
	Body      json.RawMessage `json:"body,omitempty"`      // the request body exactly as received
	Dropped   bool            `json:"dropped"`             // the effect applied but the answer was dropped by a fault
}

// Ledger returns a copy of every effect so far, of every token, in order.
func (s *Sandbox) Ledger() []Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Effect, len(s.ledger))
	copy(out, s.ledger)
	for i := range out {
		out[i].Body = slices.Clone(out[i].Body)
	}
	return out
}

// record appends an effect of an API call; s.mu is held.
func (s *Sandbox) record(c *call, uuid, reference string, cents int64) {
	var body json.RawMessage
	if len(c.body) > 0 {
		body = slices.Clone(c.body)
	}
	s.appendEffect(Effect{At: c.now, Token: c.token, Op: string(c.op), UUID: uuid, Reference: reference, Cents: cents, Body: body, Dropped: c.dropped})
}

// appendEffect numbers and appends an effect; s.mu is held.
func (s *Sandbox) appendEffect(e Effect) {
	e.Seq = len(s.ledger) + 1
	s.ledger = append(s.ledger, e)
}
