package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// newCommand wraps data in a command event of op. An empty key leaves idempotencykey out, so
// that the id is the key.
func newCommand(op frontpay.Operation, source, key, correlation string, data any) (schemas.Event, []byte, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return schemas.Event{}, nil, fmt.Errorf("encode data: %w", err)
	}
	ev := schemas.Event{
		SpecVersion:     "1.0",
		ID:              newID(),
		Source:          source,
		Type:            schemas.CommandSubject("", op),
		Time:            time.Now().UTC().Format(time.RFC3339),
		DataContentType: "application/json",
		IdempotencyKey:  key,
		CorrelationID:   correlation,
		Data:            raw,
	}
	b, err := json.Marshal(ev)
	return ev, b, err
}

// newID returns a random (version 4) UUID.
func newID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
