package frontpay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Class says what the caller may do after a call, whatever its cause.
type Class int

const (
	// Success: the API answered 2xx with a readable envelope.
	Success Class = iota
	// Permanent: the API refused the request (400 business rule, 401/403, 404, 417, other 4xx) or it
	// failed validation before being sent. Sending it again gives the same answer.
	Permanent
	// Retryable: the request never reached the API (no connection could be made, the rate limiter
	// gave up before sending, or the API answered 429 Too Many Requests, which it does before doing
	// anything). Sending it again is safe; RetryAfter says when.
	Retryable
	// Ambiguous: the request was sent and no usable answer came (timeout or cut connection after
	// sending, a 5xx, an unreadable 2xx). The effect may or may not have happened: for an operation
	// that is not ReadOnly, find out by reading the reservation back before sending it again.
	Ambiguous
)

func (c Class) String() string {
	switch c {
	case Success:
		return "success"
	case Permanent:
		return "permanent"
	case Retryable:
		return "retryable"
	case Ambiguous:
		return "ambiguous"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Error is a failed call: either the API's error envelope (HTTPStatus > 0) or a transport failure
// (Err set). It never holds the bearer token.
type Error struct {
	Op Operation
	// HTTPStatus is the status of the HTTP answer, 0 when none was read.
	HTTPStatus int
	// StatusMessage is the envelope's `status_message`, such as "Conflict of Business Logic".
	StatusMessage string
	// Message is the envelope's `message` key, such as "requestedCaptureAmountExceedAvailableCaptureRunway".
	Message string
	// Errors is the envelope's `errors` member as sent (field errors for a 417), or nil.
	Errors json.RawMessage
	// RetryAfter is the wait the API asked for with a 429's Retry-After header, at most
	// WithRetryAfterMax; the client pauses every call of its own for it.
	RetryAfter time.Duration
	// Sent reports whether any part of the request may have reached the API.
	Sent bool
	// Err is the transport or decoding failure, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "frontpay %s", e.Op)
	if e.HTTPStatus > 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
		if e.StatusMessage != "" {
			fmt.Fprintf(&b, " %s", e.StatusMessage)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", e.Message)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Class classifies the failure; see the Class constants.
func (e *Error) Class() Class {
	switch {
	case e.HTTPStatus == http.StatusTooManyRequests:
		return Retryable
	case e.HTTPStatus >= 500:
		return Ambiguous
	case e.HTTPStatus >= 400:
		return Permanent
	case !e.Sent:
		return Retryable
	default:
		// Sent, and either no answer or a 1xx/2xx/3xx that could not be read.
		return Ambiguous
	}
}

// Classify returns the class of any error a Client method returned: Success for nil, Permanent for
// a *ValidationError, and for an *Error its Class. Anything else (a cancelled context before the
// call) is Retryable only when nothing can have been sent, which Client guarantees by wrapping every
// post-send failure in *Error.
func Classify(err error) Class {
	if err == nil {
		return Success
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return Permanent
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Class()
	}
	return Retryable
}

// ValidationError lists every rule a request breaks, field by field. The client returns it before
// sending anything; the sandbox answers 417 payloadValidationErrors with the same fields.
type ValidationError struct {
	Fields []FieldError
}

// FieldError is one broken rule. Field is the dotted path, such as "customerDetails.email" or
// "products.0.amount".
type FieldError struct {
	Field   string
	Rule    string // required, email, in, digits, numeric, url, …
	Message string
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + " " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// fieldError is a ValidationError of one field.
func fieldError(field, rule, message string) *ValidationError {
	return &ValidationError{Fields: []FieldError{{Field: field, Rule: rule, Message: message}}}
}

// Map returns the errors as the API's 417 body carries them: field → messages.
func (e *ValidationError) Map() map[string][]string {
	m := make(map[string][]string, len(e.Fields))
	for _, f := range e.Fields {
		m[f.Field] = append(m[f.Field], f.Message)
	}
	return m
}

// Has reports whether field breaks a rule.
func (e *ValidationError) Has(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}
