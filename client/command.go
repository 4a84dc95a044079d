package client

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// DefaultSource is the source of a command built without the Source option.
const DefaultSource = "frontpay-worker/client"

// Command is a command event checked with the worker's rules and ready to publish. Build it with
// one of the builders or NewCommand; it does not change afterwards.
type Command struct {
	op    frontpay.Operation
	event schemas.Event
	raw   []byte
}

// Op is the command's operation.
func (c *Command) Op() frontpay.Operation { return c.op }

// ID is the command event's id, which Publish also sends as Nats-Msg-Id.
func (c *Command) ID() string { return c.event.ID }

// Key is the idempotency key: the Key option, or the id.
func (c *Command) Key() string { return cmp.Or(c.event.IdempotencyKey, c.event.ID) }

// Event returns the command event.
func (c *Command) Event() schemas.Event { return c.event }

// JSON returns the command event as published: CloudEvents structured JSON.
func (c *Command) JSON() []byte { return slices.Clone(c.raw) }

// CommandOption sets an attribute of a command event.
type CommandOption func(*schemas.Event)

// Key sets the idempotency key (the extension idempotencykey): at most one Front Payment effect
// per key, ever. Without it the key is the command's id.
func Key(key string) CommandOption { return func(e *schemas.Event) { e.IdempotencyKey = key } }

// Correlation sets the correlation id (the extension correlationid), which the worker copies onto
// every event the command causes.
func Correlation(id string) CommandOption { return func(e *schemas.Event) { e.CorrelationID = id } }

// Source sets the event's source, DefaultSource without it.
func Source(source string) CommandOption { return func(e *schemas.Event) { e.Source = source } }

// NewCommand builds a command of op whose data is data encoded as JSON (a map, a struct,
// json.RawMessage, …): the request body's members with the path fields of the operation
// (reservationUuid, orderUuid; start and end for history). The typed builders are the same with
// the frontpay request types. The error of a command the worker would refuse wraps its
// *schemas.InvalidError.
func NewCommand(op frontpay.Operation, data any, opts ...CommandOption) (*Command, error) {
	if !op.Valid() {
		return nil, fmt.Errorf("client: %q is not an operation", op)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("client: encode %s data: %w", op, err)
	}
	now := time.Now()
	e := schemas.Event{
		SpecVersion:     "1.0",
		ID:              schemas.NewID(),
		Source:          DefaultSource,
		Type:            schemas.CommandSubject("", op),
		Time:            now.UTC().Format(time.RFC3339),
		DataContentType: "application/json",
		Data:            raw,
	}
	for _, opt := range opts {
		opt(&e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("client: encode %s command: %w", op, err)
	}
	if _, err := schemas.ParseCommand(op, b, now); err != nil {
		return nil, fmt.Errorf("client: %s: %w", op, err)
	}
	return &Command{op: op, event: e, raw: b}, nil
}

// build is NewCommand for a request body and the operation's path fields (name, value pairs).
func build(op frontpay.Operation, body any, opts []CommandOption, path ...string) (*Command, error) {
	data := map[string]any{}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("client: encode %s request: %w", op, err)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(b, &members); err != nil {
			return nil, fmt.Errorf("client: %s request: %w", op, err)
		}
		for name, v := range members {
			data[name] = v
		}
	}
	for i := 0; i+1 < len(path); i += 2 {
		data[path[i]] = path[i+1]
	}
	return NewCommand(op, data, opts...)
}

// CreateOrder builds an order.create command: an invoice order.
func CreateOrder(req *frontpay.CreateOrderRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.OrderCreate, req, opts)
}

// ResendOrder builds an order.resend command: the order's payment link sent again.
func ResendOrder(orderUUID string, req *frontpay.ResendRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.OrderResend, req, opts, "orderUuid", orderUUID)
}

// SubmitReservation builds a reservation.submit command: a reservation and its payment link.
func SubmitReservation(req *frontpay.SubmitReservationRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationSubmit, req, opts)
}

// CreateSession builds a reservation.session command: a reservation with a payment session, whose
// result carries the paymentUrl.
func CreateSession(req *frontpay.CreateSessionRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationSession, req, opts)
}

// Details builds a reservation.details command: the reservation read back.
func Details(reservationUUID string, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationDetails, nil, opts, "reservationUuid", reservationUUID)
}

// Capture builds a reservation.capture command: reserved money taken, in full or in part.
func Capture(reservationUUID string, req *frontpay.CaptureRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationCapture, req, opts, "reservationUuid", reservationUUID)
}

// Charge builds a reservation.charge command: a merchant-initiated payment on the stored card.
func Charge(reservationUUID string, req *frontpay.ChargeRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationCharge, req, opts, "reservationUuid", reservationUUID)
}

// Cancel builds a reservation.cancel command.
func Cancel(reservationUUID string, req *frontpay.NoteRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationCancel, req, opts, "reservationUuid", reservationUUID)
}

// Complete builds a reservation.complete command.
func Complete(reservationUUID string, req *frontpay.NoteRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationComplete, req, opts, "reservationUuid", reservationUUID)
}

// ResendReservation builds a reservation.resend command: the payment link sent again.
func ResendReservation(reservationUUID string, req *frontpay.ResendRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationResend, req, opts, "reservationUuid", reservationUUID)
}

// Refund builds a reservation.refund command: captured or charged money returned.
func Refund(reservationUUID string, req *frontpay.RefundRequest, opts ...CommandOption) (*Command, error) {
	return build(frontpay.ReservationRefund, req, opts, "reservationUuid", reservationUUID)
}

// History builds a reservation.history command: the reservation events between start and end. A
// zero end is the time the worker runs it, a zero start 24 hours before end.
func History(start, end time.Time, opts ...CommandOption) (*Command, error) {
	var path []string
	if !start.IsZero() {
		path = append(path, "start", strconv.FormatInt(start.Unix(), 10))
	}
	if !end.IsZero() {
		path = append(path, "end", strconv.FormatInt(end.Unix(), 10))
	}
	return build(frontpay.ReservationHistory, nil, opts, path...)
}
