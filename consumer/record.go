package consumer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
	"go.opentelemetry.io/otel/trace"
)

// state is a step of the idempotency state machine; see the package documentation.
type state string

const (
	stateNone      state = ""          // no record yet
	stateClaimed   state = "claimed"   // a worker owns the key; no request of this generation is out
	stateSending   state = "sending"   // a request may be at Front Payment; its outcome is not known
	stateSucceeded state = "succeeded" // the outcome is known and the success event is recorded
	stateFailed    state = "failed"    // the outcome is known and the failure event is recorded
)

// transitions is the one table of the state machine's edges: the states a record in each state
// may be written in next. claim.move checks every write against it.
//
//   - none → sending: the first request is about to leave (baseline read and rate limit first).
//   - none → failed: the command failed before any request of its own (its baseline read was
//     refused: the reservation does not exist).
//   - claimed → claimed, sending → sending: another worker takes the key over after the lease,
//     or the owner records a read that failed.
//   - claimed → sending: a retry is about to leave.
//   - sending → claimed: nothing was sent (no connection, 429), sending again is harmless, or a
//     read-back proved the request absent.
//   - claimed → failed: the attempts are spent and nothing is in flight.
//   - sending → succeeded | failed: the answer, or a read-back's verdict.
//   - failed → claimed: a replay of the failure the key ended with starts a new generation.
//   - failed → sending: a replay of an unknown outcome starts a new generation that reads back
//     before it sends anything, as from any sending record (and may end failed again with no
//     call).
var transitions = map[state][]state{
	stateNone:      {stateSending, stateFailed},
	stateClaimed:   {stateClaimed, stateSending, stateFailed},
	stateSending:   {stateSending, stateClaimed, stateSucceeded, stateFailed},
	stateFailed:    {stateClaimed, stateSending},
	stateSucceeded: nil,
}

// errTransition means a write that the state machine does not allow: a bug, never an outcome.
var errTransition = errors.New("state machine: transition not allowed")

// allowed reports whether a record in state from may be written in state to.
func allowed(from, to state) bool { return slices.Contains(transitions[from], to) }

// record is what the state bucket holds per idempotency key.
type record struct {
	State state              `json:"state"`
	Op    frontpay.Operation `json:"op"`
	// Fingerprint is the command's data's; with Op it tells a duplicate from a conflict.
	Fingerprint string `json:"fingerprint"`
	// CommandID is the id of the command whose attempt this is (a replay's id after a replay).
	CommandID string `json:"commandId"`
	Resource  string `json:"resource,omitempty"`
	// Gen counts replays: a replay of the failure this key ended with starts generation Gen+1,
	// whose result events get new ids (derived from the replay's replayof) and whose requests a
	// read-back marker of their own.
	Gen int `json:"gen"`
	// Attempts counts the HTTP attempts of the operation's own call in this generation.
	Attempts int `json:"attempts"`
	// Owner and Lease fence the key: another worker may take it over only after Lease.
	Owner string    `json:"owner,omitempty"`
	Lease time.Time `json:"lease"`
	// Marker is the read-back marker the request in flight carries in its additionalText
	// (capture, charge); "" when it carries none.
	Marker string `json:"marker,omitempty"`
	// Baseline is the reservation as read before the request, for a read-back without a marker
	// (refund; capture and charge where the marker does not fit or is off).
	Baseline *baseline `json:"baseline,omitempty"`
	// SentAt is when the request in flight (state sending) was sent, FirstSentAt when the first
	// request of the generation was.
	SentAt      time.Time `json:"sentAt"`
	FirstSentAt time.Time `json:"firstSentAt,omitzero"`
	// ReadBackFailures counts reads of the reservation (the baseline, then read-backs) that could
	// not be made (the API did not answer); it starts again once one is made.
	ReadBackFailures int `json:"readBackFailures,omitempty"`
	// LastAnswer is the API's error answer to the last attempt, nil when none came: what an
	// upstream_unavailable failure names when a later delivery finds the attempts spent.
	LastAnswer *lastAnswer `json:"lastAnswer,omitempty"`
	// OK says whether the recorded result is a success, Reason why it failed; Subject and Event
	// are the result event as published, byte for byte.
	OK      bool            `json:"ok,omitempty"`
	Reason  schemas.Reason  `json:"reason,omitempty"`
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

func (r *record) done() bool { return r.State == stateSucceeded || r.State == stateFailed }

// unknownOutcome reports whether the key ended with outcome_unknown: a request that may have
// taken effect. Records written before the reason was recorded say so in their event.
func (r *record) unknownOutcome() bool {
	if r.State != stateFailed {
		return false
	}
	if r.Reason != "" {
		return r.Reason == schemas.OutcomeUnknown
	}
	var ev struct {
		Data struct {
			Reason schemas.Reason `json:"reason"`
		} `json:"data"`
	}
	return json.Unmarshal(r.Event, &ev) == nil && ev.Data.Reason == schemas.OutcomeUnknown
}

// UnmarshalJSON reads a record, also one written by a worker that marked records "published"
// once their event was out: that is the state its event records.
func (r *record) UnmarshalJSON(b []byte) error {
	type plain record
	if err := json.Unmarshal(b, (*plain)(r)); err != nil {
		return err
	}
	if r.State == "published" {
		r.State = stateFailed
		if r.OK {
			r.State = stateSucceeded
		}
	}
	return nil
}

// errCorrupt means a record that cannot be decoded: no retry can mend it.
var errCorrupt = errors.New("idempotency record cannot be read")

// errLost means another worker changed the record first: this one must stop working on the
// command without side effects and look at the record again.
var errLost = errors.New("idempotency record changed by another worker")

// claim is a record this worker has read or written, with the revision its next write must
// match (0: the key has no record). Its move is the only writer of records, one method per
// transition calls it, and a lost compare-and-swap (errLost) leaves it unchanged.
type claim struct {
	key   string
	rec   record
	rev   uint64
	store *store
}

// move writes the record in state to, changed by edit, when the table allows it.
func (c *claim) move(ctx context.Context, to state, edit func(*record)) error {
	if !allowed(c.rec.State, to) {
		return fmt.Errorf("%w: %q → %q", errTransition, c.rec.State, to)
	}
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "frontpay.record "+string(to))
	defer span.End()
	next := c.rec
	if edit != nil {
		edit(&next)
	}
	next.State = to
	var rev uint64
	var err error
	if c.rev == 0 {
		rev, err = c.store.create(ctx, c.key, &next)
	} else {
		rev, err = c.store.update(ctx, c.key, &next, c.rev)
	}
	if err != nil {
		return err
	}
	c.rec, c.rev = next, rev
	return nil
}

// send records that a request is about to leave, owned by owner until lease: the first one of a
// generation, a retry, or the one after a read-back proved the last absent.
func (c *claim) send(ctx context.Context, owner, commandID string, now, lease time.Time, marker string, base *baseline) error {
	return c.move(ctx, stateSending, func(r *record) {
		if r.Attempts == 0 {
			r.FirstSentAt = now
		}
		r.Attempts++
		r.CommandID, r.Owner, r.Lease, r.SentAt, r.Updated = commandID, owner, lease, now, now
		r.Marker, r.Baseline = marker, base
	})
}

// replay starts a new generation after the failure the key ended with, for the replay with id
// commandID: nothing of the last generation is in doubt, so it starts afresh, claimed.
func (c *claim) replay(ctx context.Context, owner, commandID string, now, lease time.Time) error {
	return c.move(ctx, stateClaimed, func(r *record) {
		r.newGeneration(commandID)
		r.Owner, r.Lease, r.Updated = owner, lease, now
		r.Marker, r.Baseline = "", nil
	})
}

// reopen starts a replay's new generation after an unknown outcome: the record stays as the
// last request left it (marker, baseline, when it was sent), in sending, so that the new
// generation reads back before anything is sent.
func (c *claim) reopen(ctx context.Context, owner, commandID string, now, lease time.Time) error {
	return c.move(ctx, stateSending, func(r *record) {
		r.newGeneration(commandID)
		r.Owner, r.Lease, r.Updated = owner, lease, now
	})
}

// newGeneration clears what belonged to the generation that ended.
func (r *record) newGeneration(commandID string) {
	r.Gen++
	r.CommandID = commandID
	r.Attempts, r.ReadBackFailures, r.LastAnswer = 0, 0, nil
	r.OK, r.Reason, r.Subject, r.EventID, r.Event = false, "", "", "", nil
}

// unsent records that nothing of the last attempt can have taken effect, or that sending again
// is harmless: the key stays the owner's until lease. base is the baseline of the next request.
func (c *claim) unsent(ctx context.Context, now, lease time.Time, answer *lastAnswer, base *baseline) error {
	return c.move(ctx, stateClaimed, func(r *record) {
		r.Lease, r.Updated, r.LastAnswer, r.Baseline = lease, now, answer, base
	})
}

// hold keeps the state and records who owns the key until when, how many reads failed and the
// last answer: a take-over, a wait before a read-back or a retry, a read that failed.
func (c *claim) hold(ctx context.Context, owner string, now, lease time.Time, readFailures int, answer *lastAnswer) error {
	return c.move(ctx, c.rec.State, func(r *record) {
		r.Owner, r.Lease, r.Updated, r.ReadBackFailures = owner, lease, now, readFailures
		if answer != nil {
			r.LastAnswer = answer
		}
	})
}

// finish records the result event of the generation; every later delivery of the key gets
// these very bytes.
func (c *claim) finish(ctx context.Context, now time.Time, reason schemas.Reason, subject, id string, event []byte) error {
	to := stateSucceeded
	if reason != "" {
		to = stateFailed
	}
	return c.move(ctx, to, func(r *record) {
		r.OK, r.Reason, r.Subject, r.EventID, r.Event, r.Updated = reason == "", reason, subject, id, event, now
	})
}

// store keeps records in the state bucket with compare-and-swap on every write.
type store struct {
	kv       jetstream.KeyValue
	merchant string // whose key space ("" in a one-merchant deployment)
}

// recordKey maps an idempotency key (any text) of a merchant to a bucket key.
func recordKey(merchant, idempotencyKey string) string {
	sum := sha256.Sum256([]byte(schemas.MerchantKey(merchant, idempotencyKey)))
	return KeyPrefixRecord + hex.EncodeToString(sum[:20])
}

// load returns a claim of the key's record as stored (revision 0 and state none when there is
// none).
func (s *store) load(ctx context.Context, key string) (*claim, error) {
	c := &claim{key: key, store: s}
	e, err := s.kv.Get(ctx, recordKey(s.merchant, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &c.rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	c.rev = e.Revision()
	return c, nil
}

// create writes the first record of a key; errLost if one exists.
func (s *store) create(ctx context.Context, key string, r *record) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, recordKey(s.merchant, key), b)
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
	n, err := s.kv.Update(ctx, recordKey(s.merchant, key), b, rev)
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
	e, err := s.kv.Get(ctx, recordKey(s.merchant, key))
	if err == nil && bytes.Equal(e.Value(), want) {
		return e.Revision(), nil
	}
	return 0, fmt.Errorf("%w (%v)", errLost, cause)
}

// scrub removes the personal data a finished record holds, for forget (forget.go): its result
// event keeps its envelope and outcome without the command, errors or response it carried
// (redactEvent), and the last answer keeps no errors. What money safety needs stays as it was:
// state, operation, fingerprint, generation, attempts, owner and lease, marker and baseline, and
// the event's id and subject, so that a later duplicate of the key gets a result event with the
// same id, and no call. A record that named no reservation (a submit's, a session's) names the
// one its response created as its Resource, so that a later forget still finds it. scrub
// reports whether anything changed.
func (r *record) scrub() (bool, error) {
	before, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	if len(r.Event) > 0 {
		ev, names, err := redactEvent(r.Event)
		if err != nil {
			return false, err
		}
		if r.Resource == "" && len(names) > 0 {
			r.Resource = names[0]
		}
		r.Event = ev
	}
	if r.LastAnswer != nil {
		a := *r.LastAnswer
		a.Errors = nil
		r.LastAnswer = &a
	}
	after, err := json.Marshal(r)
	return !bytes.Equal(before, after), err
}
