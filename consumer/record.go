package consumer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
)

// state is a step of the idempotency state machine; see the package documentation.
type state string

const (
	stateClaimed   state = "claimed"   // a worker owns the key; no request of this generation is out
	stateSending   state = "sending"   // a request may be at Front Payment; its outcome is not known
	stateSucceeded state = "succeeded" // the outcome is known and the success event is recorded
	stateFailed    state = "failed"    // the outcome is known and the failure event is recorded
	statePublished state = "published" // the recorded event is stored on the result stream
)

// record is what the state bucket holds per idempotency key.
type record struct {
	State       state              `json:"state"`
	Op          frontpay.Operation `json:"op"`
	Fingerprint string             `json:"fingerprint"`
	// CommandID is the id of the command whose attempt this is (a replay's id after a replay).
	CommandID string `json:"commandId"`
	Resource  string `json:"resource,omitempty"`
	// Gen counts replays: a replay of the failure this key ended with starts generation Gen+1,
	// whose result events get new ids (derived from the replay's replayof).
	Gen int `json:"gen"`
	// Attempts counts the HTTP attempts of the operation's own call in this generation.
	Attempts int `json:"attempts"`
	// Owner and Lease fence the key: another worker may take it over only after Lease.
	Owner string    `json:"owner,omitempty"`
	Lease time.Time `json:"lease"`
	// Baseline is the reservation as read before the first request, for the read-back.
	Baseline *baseline `json:"baseline,omitempty"`
	// SentAt is when the request in flight (state sending) was sent.
	SentAt time.Time `json:"sentAt"`
	// ReadBackFailures counts reads of the reservation (the baseline, then read-backs) that could
	// not be made (the API did not answer); it starts again once the baseline is read.
	ReadBackFailures int `json:"readBackFailures,omitempty"`
	// LastAnswer is the API's error answer to the last attempt, nil when none came: what an
	// upstream_unavailable failure names when a later delivery finds the attempts spent.
	LastAnswer *lastAnswer `json:"lastAnswer,omitempty"`
	// OK says whether the recorded result is a success; Subject and Event are the result event
	// as published, byte for byte.
	OK      bool            `json:"ok,omitempty"`
	Subject string          `json:"subject,omitempty"`
	EventID string          `json:"eventId,omitempty"`
	Event   json.RawMessage `json:"event,omitempty"`
	Updated time.Time       `json:"updated"`
}

// lastAnswer is an API error answer as a record keeps it.
type lastAnswer struct {
	HTTPStatus int             `json:"httpStatus"`
	Message    string          `json:"message,omitempty"`
	Errors     json.RawMessage `json:"errors,omitempty"`
}

func (r *record) done() bool {
	return r.State == stateSucceeded || r.State == stateFailed || r.State == statePublished
}

// errLost means another worker changed the record first: this one must stop working on the
// command without side effects and hand it back.
var errLost = errors.New("idempotency record changed by another worker")

// store keeps records in the state bucket with compare-and-swap on every write.
type store struct {
	kv jetstream.KeyValue
}

// recordKey maps an idempotency key (any text) to a bucket key.
func recordKey(idempotencyKey string) string {
	sum := sha256.Sum256([]byte(idempotencyKey))
	return "idem." + hex.EncodeToString(sum[:20])
}

// get returns the record and its revision, or nil when there is none.
func (s *store) get(ctx context.Context, key string) (*record, uint64, error) {
	e, err := s.kv.Get(ctx, recordKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read record: %w", err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("decode record: %w", err)
	}
	return &r, e.Revision(), nil
}

// create writes the first record of a key; errLost if one exists.
func (s *store) create(ctx context.Context, key string, r *record) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, recordKey(key), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return s.confirm(ctx, key, b, err)
	}
	if err != nil {
		return 0, fmt.Errorf("create record: %w", err)
	}
	return rev, nil
}

// update replaces the record at revision rev; errLost if it changed since.
func (s *store) update(ctx context.Context, key string, r *record, rev uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	n, err := s.kv.Update(ctx, recordKey(key), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return s.confirm(ctx, key, b, err)
	}
	if err != nil {
		return 0, fmt.Errorf("update record: %w", err)
	}
	return n, nil
}

// confirm handles a failed compare-and-swap. A write whose acknowledgement was lost is retried
// by the caller and then fails against its own earlier success: if the stored value is exactly
// what was written, the write did happen.
func (s *store) confirm(ctx context.Context, key string, want []byte, cause error) (uint64, error) {
	e, err := s.kv.Get(ctx, recordKey(key))
	if err == nil && bytes.Equal(e.Value(), want) {
		return e.Revision(), nil
	}
	return 0, fmt.Errorf("%w (%v)", errLost, cause)
}
