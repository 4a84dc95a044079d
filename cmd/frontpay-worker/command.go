package main

import (
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
		ID:              schemas.NewID(),
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
