package schemas

import (
	"cmp"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Event is a CloudEvents 1.0 structured-mode event with the contract's extensions.
type Event struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
	IdempotencyKey  string `json:"idempotencykey,omitempty"`
	CorrelationID   string `json:"correlationid,omitempty"`
	CausationID     string `json:"causationid,omitempty"`
	ReplayOf        string `json:"replayof,omitempty"`
	// Traceparent and Tracestate are the CloudEvents distributed-tracing extension: on a
	// command, the trace its work continues; on a result or status event, the span of the work.
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`
	// Merchant names the merchant of a result or status event in a deployment of several
	// (CONTRACT.md section 9); absent in a one-merchant deployment.
	Merchant string          `json:"merchant,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// Reason says why a command failed; CONTRACT.md section 3 lists when each applies.
type Reason string

// The reasons of failure events.
const (
	InvalidCommand      Reason = "invalid_command"
	Validation          Reason = "validation"
	BusinessRule        Reason = "business_rule"
	NotFound            Reason = "not_found"
	Unauthorized        Reason = "unauthorized"
	UpstreamUnavailable Reason = "upstream_unavailable"
	OutcomeUnknown      Reason = "outcome_unknown"
	IdempotencyConflict Reason = "idempotency_conflict"
)

// Reasons lists every reason, for checking a --reason flag.
func Reasons() []Reason {
	return []Reason{InvalidCommand, Validation, BusinessRule, NotFound, Unauthorized,
		UpstreamUnavailable, OutcomeUnknown, IdempotencyConflict}
}

// Success is the data of a succeeded event.
type Success struct {
	HTTPStatus int    `json:"httpStatus"`
	Message    string `json:"message"`
	// Response is the API's data member as returned; nil is written as null.
	Response json.RawMessage `json:"response"`
}

// Failure is the data of a failed event.
type Failure struct {
	Reason     Reason `json:"reason"`
	Retryable  bool   `json:"retryable"`
	HTTPStatus int    `json:"httpStatus"` // 0 when no HTTP answer was read
	Message    string `json:"message"`
	// Errors is the API's errors member (field errors of a 417), or the InvalidError's fields.
	Errors json.RawMessage `json:"errors"`
	// Attempts is the number of HTTP attempts made for the command.
	Attempts int `json:"attempts"`
	// Command is the command event exactly as received; it must be JSON.
	Command json.RawMessage `json:"command"`
}

// StatusChange is the data of a status.changed event.
type StatusChange struct {
	UUID   string `json:"uuid"`
	Status string `json:"status"`
	Amount string `json:"amount"`
	// PaymentMethod is left out unless the API confirmed it (the history's entry): a callback's
	// is covered by neither the read-back nor the checksum (CONTRACT.md section 8).
	PaymentMethod string `json:"paymentMethod,omitempty"`
	// At is when the change happened, RFC 3339. The callback and the history poll must write the
	// same change the same way, since the event's id derives from it.
	At string `json:"at"`
	// Source is "callback" or "history".
	Source string `json:"source"`
}

// Origin is what a result event carries over from the command that caused it.
type Origin struct {
	Op            frontpay.Operation
	CommandID     string // the command's id: the result's causationid
	Key           string // the idempotency key
	CorrelationID string
	// ReplayOf is the replayof of a replayed command, which makes its results new events.
	ReplayOf string
	// Resource is the reservation or order UUID, the result's subject; "" where there is none.
	Resource string
	// Merchant is the merchant whose command it is ("" in a one-merchant deployment): its
	// results carry it, and their ids are the merchant's own.
	Merchant string
}

// OriginOf reads what it can of a command that ParseCommand refused with an *InvalidError, for
// its failure event. Attributes that are missing or not strings are left empty, except that the
// id falls back to "sha256:" and the hex SHA-256 of raw, and the key to the id, so the failure of
// the same bytes always has the same id and two commands without an id never share one.
func OriginOf(op frontpay.Operation, raw []byte) Origin {
	var attrs map[string]json.RawMessage
	_ = json.Unmarshal(raw, &attrs)
	str := func(v json.RawMessage) string {
		var s string
		_ = json.Unmarshal(v, &s)
		return s
	}
	o := Origin{Op: op, CommandID: str(attrs["id"]), CorrelationID: str(attrs["correlationid"]), ReplayOf: str(attrs["replayof"])}
	if name := resourceParam(op); name != "" {
		var data map[string]json.RawMessage
		_ = json.Unmarshal(attrs["data"], &data)
		if id := str(data[name]); frontpay.ValidateUUID(name, id) == nil {
			o.Resource = id
		}
	}
	if o.CommandID == "" {
		sum := sha256.Sum256(raw)
		o.CommandID = "sha256:" + hex.EncodeToString(sum[:])
	}
	o.Key = cmp.Or(str(attrs["idempotencykey"]), o.CommandID)
	return o
}

// ResultID derives the id of the result event of the command with idempotency key key from its
// outcome (succeeded, or failed for reason), so that a result published again after a crash is
// the same event and JetStream drops the copy. It is a name-based (version 5) UUID.
func ResultID(key string, ok bool, reason Reason) string {
	if ok {
		return nameUUID("result", key, "succeeded")
	}
	return nameUUID("result", key, "failed", string(reason))
}

// resultID is ResultID, with a replayed command's replayof added to its key: a replay that fails
// again is a new event, not a copy that JetStream would drop. An invalid_command failure is named
// by the command's own id instead of its key (CONTRACT.md section 3): an invalid command never
// takes its key, so two different invalid commands sharing one each get their failure.
func (o Origin) resultID(ok bool, reason Reason) string {
	key := MerchantKey(o.Merchant, o.Key)
	if !ok && reason == InvalidCommand {
		key = MerchantKey(o.Merchant, nameUUID("invalid", o.CommandID))
	}
	if o.ReplayOf != "" {
		key = nameUUID("replay", key, o.ReplayOf)
	}
	return ResultID(key, ok, reason)
}

// MerchantKey is an idempotency key in the key space of a merchant: the key itself in a
// one-merchant deployment (merchant ""), so that its ids and records are those of before.
// The same key at two merchants is two keys (CONTRACT.md section 9).
func MerchantKey(merchant, key string) string {
	if merchant == "" {
		return key
	}
	return nameUUID("merchant", merchant, key)
}

// StatusID derives the id of a status.changed event of a merchant ("" in a one-merchant
// deployment) from the UUID, status and time of the change, so that the same change seen by the
// callback and by the history poll is one event.
func StatusID(merchant, uuid, status, at string) string {
	if merchant == "" {
		return nameUUID("status", uuid, status, at)
	}
	return nameUUID("status", merchant, uuid, status, at)
}

// namespace is the UUID namespace of the worker's event ids.
var namespace = [16]byte{0x5b, 0x0e, 0x6c, 0x1d, 0x2a, 0x47, 0x4f, 0x1e, 0x9c, 0x3b, 0x71, 0x0d, 0x8e, 0x52, 0xa4, 0xf6}

// nameUUID is the version 5 UUID (RFC 9562) of the parts, each length-prefixed so that no two
// lists of parts give the same name.
func nameUUID(parts ...string) string {
	h := sha1.New()
	h.Write(namespace[:])
	for _, part := range parts {
		h.Write(binary.AppendUvarint(nil, uint64(len(part))))
		h.Write([]byte(part))
	}
	return formatUUID(h.Sum(nil)[:16], 5)
}

// NewID returns a random (version 4) UUID: the id of a new command event.
func NewID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	return formatUUID(u[:], 4)
}

// formatUUID sets the version and variant bits of u and writes it in the 8-4-4-4-12 form.
func formatUUID(u []byte, version byte) string {
	u[6] = u[6]&0x0f | version<<4
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// NewSuccess returns the succeeded event of the command o came from. at, when not zero, is its time.
func NewSuccess(source string, o Origin, s Success, at time.Time) (Event, error) {
	return o.result(source, true, "", s, at)
}

// NewFailure returns the failed event of the command o came from. at, when not zero, is its time.
func NewFailure(source string, o Origin, f Failure, at time.Time) (Event, error) {
	return o.result(source, false, f.Reason, f, at)
}

func (o Origin) result(source string, ok bool, reason Reason, data any, at time.Time) (Event, error) {
	e := Event{
		ID:             o.resultID(ok, reason),
		Type:           ResultSubject("", o.Op, ok),
		Subject:        o.Resource,
		IdempotencyKey: o.Key,
		CorrelationID:  o.CorrelationID,
		CausationID:    o.CommandID,
		Merchant:       o.Merchant,
	}
	if !at.IsZero() {
		e.Time = at.UTC().Format(time.RFC3339Nano)
	}
	err := e.fill(source, data)
	return e, err
}

// NewStatus returns the status.changed event of a merchant's ("" in a one-merchant deployment)
// reservation or order (resource is "reservation" or "order"). Its subject is the UUID and its
// time the change's.
func NewStatus(source, merchant, resource string, c StatusChange) (Event, error) {
	switch {
	case resource != "reservation" && resource != "order":
		return Event{}, fmt.Errorf("schemas: status of %q: not a reservation or an order", resource)
	case frontpay.ValidateUUID("uuid", c.UUID) != nil || c.Status == "":
		return Event{}, fmt.Errorf("schemas: status change %q of %q: want a UUID and a status", c.Status, c.UUID)
	case !isTime(c.At):
		return Event{}, fmt.Errorf("schemas: status change at %q: not an RFC 3339 time", c.At)
	case c.Source != "callback" && c.Source != "history":
		return Event{}, fmt.Errorf("schemas: status change from %q: want callback or history", c.Source)
	}
	e := Event{ID: StatusID(merchant, c.UUID, c.Status, c.At), Type: StatusSubject("", resource), Subject: c.UUID, Time: c.At, Merchant: merchant}
	err := e.fill(source, c)
	return e, err
}

// fill sets what every event the worker publishes shares, and its data.
func (e *Event) fill(source string, data any) error {
	if source == "" {
		return fmt.Errorf("schemas: %s event without a source", e.Type)
	}
	e.SpecVersion, e.Source, e.DataContentType = "1.0", source, "application/json"
	var err error
	if e.Data, err = json.Marshal(data); err != nil {
		return fmt.Errorf("schemas: encode %s data: %w", e.Type, err)
	}
	return nil
}
