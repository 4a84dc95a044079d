package sandbox

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// shape is which members an envelope carries: is_data/data or is_error/errors, and the flag's
// value. The documents differ from answer to answer; each refusal below uses its document's.
type shape int

const (
	shapeDataTrue   shape = iota // "is_data": true, "data": …
	shapeDataFalse               // "is_data": false, "data": null
	shapeErrorFalse              // "is_error": false, "errors": null
	shapeErrorTrue               // "is_error": true, "errors": …
)

// answer is one API answer before it is written.
type answer struct {
	status  int
	message string
	shape   shape
	payload any // data or errors; nil is null
}

// statusMessages are the documented status_message values.
var statusMessages = map[int]string{
	http.StatusOK:                  "OK",
	http.StatusCreated:             "OK",
	http.StatusAccepted:            "OK",
	http.StatusBadRequest:          "Conflict of Business Logic",
	http.StatusUnauthorized:        "Unauthorized",
	http.StatusNotFound:            "Not Found",
	http.StatusMethodNotAllowed:    "Method Not Allowed",
	http.StatusExpectationFailed:   "Client Error",
	http.StatusTooManyRequests:     "Too Many Requests",
	http.StatusNotExtended:         "Execution Exception Occurred",
	http.StatusInternalServerError: "Internal Dependency Error",
}

func statusMessage(status int) string {
	if m, ok := statusMessages[status]; ok {
		return m
	}
	if status >= 500 {
		return statusMessages[http.StatusInternalServerError]
	}
	return http.StatusText(status)
}

type dataEnvelope struct {
	StatusCode    int    `json:"status_code"`
	StatusMessage string `json:"status_message"`
	Message       string `json:"message"`
	IsData        bool   `json:"is_data"`
	Data          any    `json:"data"`
}

type errorEnvelope struct {
	StatusCode    int    `json:"status_code"`
	StatusMessage string `json:"status_message"`
	Message       string `json:"message"`
	IsError       bool   `json:"is_error"`
	Errors        any    `json:"errors"`
}

// writeAnswer writes the envelope; the HTTP status is its status_code.
func writeAnswer(w http.ResponseWriter, a answer) {
	msg := statusMessage(a.status)
	var body any
	switch a.shape {
	case shapeDataTrue, shapeDataFalse:
		body = dataEnvelope{a.status, msg, a.message, a.shape == shapeDataTrue, a.payload}
	default:
		body = errorEnvelope{a.status, msg, a.message, a.shape == shapeErrorTrue, a.payload}
	}
	writeJSON(w, a.status, body)
}

// success is a 2xx answer.
func success(status int, message string, isData bool, data any) answer {
	if isData {
		return answer{status: status, message: message, shape: shapeDataTrue, payload: data}
	}
	return answer{status: status, message: message, shape: shapeDataFalse}
}

// refusal is an answer without payload.
func refusal(status int, message string, sh shape) answer {
	return answer{status: status, message: message, shape: sh}
}

// refusals are the documented error keys with their status and envelope shape.
var refusals = keyed(
	refusal(404, "reservationNotFound", shapeDataFalse),
	refusal(404, "orderNotFound", shapeErrorFalse),
	refusal(404, "paymentCardNotFound", shapeDataFalse),
	refusal(400, "requestedCaptureAmountExceedAvailableCaptureRunway", shapeDataFalse),
	refusal(400, "reservationStatusAlreadyCancelled", shapeDataFalse),
	refusal(400, "reservationStatusAlreadyCompleted", shapeDataFalse),
	refusal(400, "paymentCaptureDeadlineExceed", shapeDataFalse),
	refusal(400, "requestProductIdNotAvailable", shapeDataFalse),
	refusal(400, "paymentChargeRunwayExceed", shapeDataFalse),
	refusal(400, "paymentChargeDeadlineExceed", shapeDataFalse),
	refusal(400, "prerequisiteFailedToCancelReservation", shapeErrorFalse),
	refusal(400, "prerequisiteFailedToCompleteReservation", shapeDataFalse),
	refusal(400, "orderStatusAlreadyCompleted", shapeErrorFalse),
	refusal(400, "orderStatusAlreadyCancelled", shapeErrorFalse),
	refusal(400, "orderStatusAlreadyPaid", shapeErrorFalse),
	refusal(400, "refundRejectionForRefundRequestGreaterThanOrderAmount", shapeErrorFalse),
	refusal(400, "refundRejectionForProductAmountExceed", shapeErrorTrue),
	refusal(400, "refundRejectionForRequestAmountThresholdExceed", shapeErrorTrue),
)

// keyed indexes answers by their message.
func keyed(answers ...answer) map[string]answer {
	m := make(map[string]answer, len(answers))
	for _, a := range answers {
		m[a.message] = a
	}
	return m
}

// refuse answers with a documented error key. The cancel document shows every refusal with
// is_error/errors, so cancel's answers take that shape.
func (c *call) refuse(key string) answer {
	a, ok := refusals[key]
	if !ok {
		panic("sandbox: undocumented refusal " + key)
	}
	if c.op == frontpay.ReservationCancel && a.shape == shapeDataFalse {
		a.shape = shapeErrorFalse
	}
	return a
}

// invalid is a 417 payloadValidationErrors answer.
func invalid(fields map[string][]string) answer {
	return answer{status: http.StatusExpectationFailed, message: "payloadValidationErrors", shape: shapeErrorTrue, payload: fields}
}

// serverError is the documented answer of a failure on the server side: 510 somethingWentWrong,
// any other status the 500 internalErrorOccurredPleaseTryAgainLater envelope.
func serverError(status int, at time.Time) answer {
	if status == http.StatusNotExtended {
		return answer{status: status, message: "somethingWentWrong", shape: shapeErrorTrue, payload: []string{"Something Went Wrong"}}
	}
	return answer{status: status, message: "internalErrorOccurredPleaseTryAgainLater", shape: shapeErrorTrue,
		payload: map[string]any{"happenedAt": at.UTC().Format(time.RFC3339), "internalErrorDetails": []string{"sandbox fault"}}}
}

// decode reads the call's body into v and checks its rules. It returns the 417 answer and false
// when the body does not decode or breaks a rule. An empty body counts as {}; unknown members are
// ignored.
func (c *call) decode(v frontpay.Validator) (answer, bool) {
	body := c.body
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		path, kind := badMember(body, reflect.TypeOf(v), "")
		if path == "" {
			return invalid(map[string][]string{"body": {"must be a JSON object"}}), false
		}
		return invalid(map[string][]string{path: {"must be " + kind}}), false
	}
	if err := v.Validate(c.now); err != nil {
		var ve *frontpay.ValidationError
		if errors.As(err, &ve) {
			return invalid(ve.Map()), false
		}
		return invalid(map[string][]string{"body": {err.Error()}}), false
	}
	return answer{}, true
}

var numberType = reflect.TypeFor[frontpay.Number]()

// badMember finds the deepest member of raw that does not decode into t: its dotted path and what
// it should be. The path is "" when raw itself is at fault (or nothing is).
func badMember(raw []byte, t reflect.Type, path string) (string, string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if json.Unmarshal(raw, reflect.New(t).Interface()) == nil {
		return "", ""
	}
	members := map[string]json.RawMessage{}
	switch {
	case t == numberType:
	case t.Kind() == reflect.Struct:
		if json.Unmarshal(raw, &members) != nil {
			break
		}
		for _, k := range sortedKeys(members) {
			if f, ok := fieldByJSONName(t, k); ok {
				if p, kind := badMember(members[k], f.Type, join(path, k)); p != "" {
					return p, kind
				}
			}
		}
	case t.Kind() == reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for i, item := range items {
				members[itoa(i)] = item
			}
		} else if json.Unmarshal(raw, &members) != nil {
			break
		}
		for _, k := range sortedKeys(members) {
			if p, kind := badMember(members[k], t.Elem(), join(path, k)); p != "" {
				return p, kind
			}
		}
	}
	return path, kindOf(t)
}

// kindOf says what a member of type t must be, for a 417 message.
func kindOf(t reflect.Type) string {
	switch {
	case t == numberType:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Struct:
		return "an object"
	case t.Kind() == reflect.Slice:
		return "an object or an array"
	}
	return "of another type"
}

// fieldByJSONName finds the struct field a JSON member decodes into, case-insensitively as
// encoding/json does.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" {
			tag = f.Name
		}
		if f.IsExported() && tag != "-" && strings.EqualFold(tag, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// sortedKeys returns m's keys, numerically where they are numbers.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) && isDigits(keys[i]) && isDigits(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	return keys
}
