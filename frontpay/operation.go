package frontpay

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Operation names one call of the Connect API as `<resource>.<action>`, the name the worker's
// command subjects use.
type Operation string

// The twelve operations of the Connect API that the worker drives.
const (
	OrderCreate         Operation = "order.create"
	OrderResend         Operation = "order.resend"
	ReservationSubmit   Operation = "reservation.submit"
	ReservationSession  Operation = "reservation.session"
	ReservationDetails  Operation = "reservation.details"
	ReservationCapture  Operation = "reservation.capture"
	ReservationCharge   Operation = "reservation.charge"
	ReservationCancel   Operation = "reservation.cancel"
	ReservationComplete Operation = "reservation.complete"
	ReservationResend   Operation = "reservation.resend"
	ReservationRefund   Operation = "reservation.refund"
	ReservationHistory  Operation = "reservation.history"
)

// Endpoint is the documented method and path of an operation. Path holds placeholders such as
// {reservationUuid} that come from the command's data.
type Endpoint struct {
	Method string
	Path   string
	// Params are the path placeholders in order.
	Params []string
}

var endpoints = map[Operation]Endpoint{
	OrderCreate:         {http.MethodPost, "/api/v1/connect/orders/invoice/create", nil},
	OrderResend:         {http.MethodPost, "/api/v1/connect/orders/resend/{orderUuid}", []string{"orderUuid"}},
	ReservationSubmit:   {http.MethodPost, "/api/v1/connect/reservations/submit", nil},
	ReservationSession:  {http.MethodPost, "/api/v1/connect/reservations/create", nil},
	ReservationDetails:  {http.MethodGet, "/api/v1/connect/reservations/details/{reservationUuid}", []string{"reservationUuid"}},
	ReservationCapture:  {http.MethodPost, "/api/v1/connect/reservations/capture/{reservationUuid}", []string{"reservationUuid"}},
	ReservationCharge:   {http.MethodPost, "/api/v1/connect/reservations/charge/{reservationUuid}", []string{"reservationUuid"}},
	ReservationCancel:   {http.MethodGet, "/api/v1/connect/reservations/cancel/{reservationUuid}", []string{"reservationUuid"}},
	ReservationComplete: {http.MethodPost, "/api/v1/connect/reservations/complete/{reservationUuid}", []string{"reservationUuid"}},
	ReservationResend:   {http.MethodPost, "/api/v1/connect/reservations/resend/{reservationUuid}", []string{"reservationUuid"}},
	ReservationRefund:   {http.MethodPost, "/api/v1/connect/reservations/refund/{reservationUuid}", []string{"reservationUuid"}},
	ReservationHistory:  {http.MethodGet, "/api/v1/connect/reservations/history/{start}/{end}", []string{"start", "end"}},
}

// Operations lists every operation in a fixed order.
func Operations() []Operation {
	return []Operation{
		OrderCreate, OrderResend,
		ReservationSubmit, ReservationSession, ReservationDetails, ReservationCapture,
		ReservationCharge, ReservationCancel, ReservationComplete, ReservationResend,
		ReservationRefund, ReservationHistory,
	}
}

// Valid reports whether op is one of the twelve operations.
func (op Operation) Valid() bool {
	_, ok := endpoints[op]
	return ok
}

// Endpoint returns the operation's documented method and path.
func (op Operation) Endpoint() Endpoint { return endpoints[op] }

// Recovery is what may follow a request of an operation whose outcome is unknown: the request
// may have reached Front Payment, but no answer says what it did.
type Recovery int

const (
	// Resend: sending the request again is harmless (details, history, the resends).
	Resend Recovery = iota
	// ReadBack: the reservation is read to find out whether the request took effect (capture,
	// charge, refund, cancel, complete); only a request proved absent is sent again.
	ReadBack
	// Unknown: the request creates something whose identifier only the lost answer held
	// (submit, session, order.create); nothing can be read back, so it is never sent again.
	Unknown
)

// Recovery returns the operation's policy after an unknown outcome: the one place that decides
// which calls may be repeated, which are read back and which end outcome_unknown.
func (op Operation) Recovery() Recovery {
	switch op {
	case ReservationCapture, ReservationCharge, ReservationRefund, ReservationCancel, ReservationComplete:
		return ReadBack
	case ReservationSubmit, ReservationSession, OrderCreate:
		return Unknown
	}
	return Resend
}

// Resource returns "order" or "reservation".
func (op Operation) Resource() string {
	r, _, _ := strings.Cut(string(op), ".")
	return r
}

// path fills the endpoint's placeholders, escaping each value as one path segment.
func (e Endpoint) path(params ...string) (string, error) {
	if len(params) != len(e.Params) {
		return "", fieldError("path", "size", fmt.Sprintf("wants %d values, got %d", len(e.Params), len(params)))
	}
	p := e.Path
	for i, name := range e.Params {
		if params[i] == "" {
			return "", fieldError(name, "required", "is required")
		}
		p = strings.Replace(p, "{"+name+"}", url.PathEscape(params[i]), 1)
	}
	return p, nil
}
