package schemas

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// opSpec is how the data of one operation's commands is read, besides its path fields.
type opSpec struct {
	// body returns a new request body to decode into; nil for an operation without one.
	body func() frontpay.Validator
	// undocumented are members that a frontpay request type shared by two operations has, but
	// that the seed documents show for the other one only. They are refused like unknown members.
	undocumented []string
}

var specs = map[frontpay.Operation]opSpec{
	frontpay.OrderCreate: {body: newBody[frontpay.CreateOrderRequest]},
	frontpay.OrderResend: {body: newBody[frontpay.ResendRequest]},
	frontpay.ReservationSubmit: {body: newBody[frontpay.SubmitReservationRequest],
		undocumented: []string{"sendOrderBy.invoice", "callback.success", "callback.failure"}},
	frontpay.ReservationSession: {body: newBody[frontpay.CreateSessionRequest],
		undocumented: []string{"customerDetails.uuid", "sendOrderBy.invoice"}},
	frontpay.ReservationDetails:  {},
	frontpay.ReservationCapture:  {body: newBody[frontpay.CaptureRequest]},
	frontpay.ReservationCharge:   {body: newBody[frontpay.ChargeRequest]},
	frontpay.ReservationCancel:   {body: newBody[frontpay.NoteRequest]},
	frontpay.ReservationComplete: {body: newBody[frontpay.NoteRequest]},
	frontpay.ReservationResend:   {body: newBody[frontpay.ResendRequest]},
	frontpay.ReservationRefund:   {body: newBody[frontpay.RefundRequest]},
	frontpay.ReservationHistory:  {},
}

func newBody[T any, P interface {
	*T
	frontpay.Validator
}]() frontpay.Validator {
	return P(new(T))
}

// resourceParam is the path field naming the reservation or order of op, "" when there is none.
func resourceParam(op frontpay.Operation) string {
	if params := op.Endpoint().Params; len(params) == 1 {
		return params[0]
	}
	return ""
}

// data checks a command's data and returns the path values and the typed body.
func (p *parser) data(data map[string]any) (params []string, body frontpay.Validator) {
	names := p.op.Endpoint().Params
	if p.op == frontpay.ReservationHistory {
		params = p.history(data)
	} else {
		for _, name := range names {
			params = append(params, p.pathValue(name, data[name]))
		}
	}
	rest := maps.Clone(data)
	for _, name := range names {
		delete(rest, name)
	}
	spec := specs[p.op]
	if spec.body == nil {
		for _, name := range sortedKeys(rest) {
			p.unknown("data." + name)
		}
		return params, nil
	}
	body = spec.body()
	before := len(p.errs)
	p.shape("data", rest, reflect.TypeOf(body).Elem())
	if len(p.errs) > before {
		return params, nil
	}
	if err := json.Unmarshal(canonical(rest), body); err != nil {
		p.fail("data", "json", err.Error()) // shape accepted rest, so this does not happen
		return params, nil
	}
	p.validation("data.", body.Validate(p.now))
	return params, body
}

func (p *parser) unknown(field string) {
	p.fail(field, "unknown", "is not a field of "+string(p.op))
}

// pathValue checks a reservation or order UUID.
func (p *parser) pathValue(name string, v any) string {
	s, ok := v.(string)
	if v != nil && !ok {
		p.fail("data."+name, "string", "must be a string, got "+kindOf(v))
		return ""
	}
	p.validation("", frontpay.ValidateUUID("data."+name, s))
	return s
}

var (
	// unixDigits is a Unix time in seconds written as a string, up to the year 5138.
	unixDigits = regexp.MustCompile(`^[0-9]{1,11}$`)
	maxUnix    = big.NewRat(99999999999, 1)
)

// history reads the optional start and end of a history command and returns the path values,
// defaulted as frontpay.HistoryParams does.
func (p *parser) history(data map[string]any) []string {
	start, okStart := p.unixSeconds("data.start", data["start"])
	end, okEnd := p.unixSeconds("data.end", data["end"])
	params := frontpay.HistoryParams(start, end, p.now)
	from, _ := strconv.ParseInt(params[0], 10, 64)
	to, _ := strconv.ParseInt(params[1], 10, 64)
	if okStart && okEnd && from > to {
		p.fail("data.start", "before_or_equal", "must not be after end (which defaults to now)")
	}
	return params
}

// unixSeconds reads an optional Unix time in seconds: an integer or a string of digits.
func (p *parser) unixSeconds(field string, v any) (time.Time, bool) {
	n, ok := p.number(field, v)
	if !ok || n.IsZero() {
		return time.Time{}, ok
	}
	r := n.Rat()
	if _, quoted := v.(string); quoted && !unixDigits.MatchString(n.String()) ||
		!quoted && (r == nil || !r.IsInt() || r.Sign() < 0 || r.Cmp(maxUnix) > 0) {
		p.fail(field, "digits", "must be a Unix time in seconds, at most 11 digits")
		return time.Time{}, false
	}
	return time.Unix(r.Num().Int64(), 0), true
}

// number reads a numeric member as frontpay.Number does, which also bounds how it may be written
// (frontpay.MaxNumberText characters, an exponent of two digits).
func (p *parser) number(field string, v any) (frontpay.Number, bool) {
	var n frontpay.Number
	raw, _ := json.Marshal(v)
	if err := n.UnmarshalJSON(raw); err != nil {
		p.fail(field, "numeric", err.Error())
		return n, false
	}
	return n, true
}

var (
	numberType      = reflect.TypeFor[frontpay.Number]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// shape checks that v has the JSON shape of t, the Go type encoding/json will decode it into:
// member names matched exactly (encoding/json would take "grandtotal" for grandTotal), no unknown
// member at any level (frontpay.Lines decodes its items without DisallowUnknownFields), null only
// where t allows it, and every problem named by its dotted path.
func (p *parser) shape(path string, v any, t reflect.Type) {
	switch kind := t.Kind(); {
	case t == numberType:
		p.number(path, v)
	case kind == reflect.Pointer:
		if v != nil {
			p.shape(path, v, t.Elem())
		}
	case kind == reflect.Struct:
		p.object(path, v, t)
	case kind == reflect.Slice:
		p.list(path, v, t)
	case kind == reflect.String:
		if _, ok := v.(string); !ok {
			p.fail(path, "string", "must be a string, got "+kindOf(v))
		}
	case kind == reflect.Bool:
		if _, ok := v.(bool); !ok {
			p.fail(path, "boolean", "must be true or false, got "+kindOf(v))
		}
	default:
		panic(fmt.Sprintf("schemas: no JSON shape for %s", t))
	}
}

// object checks a JSON object against the struct type t.
func (p *parser) object(path string, v any, t reflect.Type) {
	obj, ok := v.(map[string]any)
	if !ok {
		p.fail(path, "object", "must be an object, got "+kindOf(v))
		return
	}
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		fields[jsonName(t.Field(i))] = t.Field(i).Type
	}
	undocumented := specs[p.op].undocumented
	for _, name := range sortedKeys(obj) {
		field := join(path, name)
		if ft, ok := fields[name]; ok && !slices.Contains(undocumented, strings.TrimPrefix(field, "data.")) {
			p.shape(field, obj[name], ft)
		} else {
			p.unknown(field)
		}
	}
}

// list checks a JSON array against the slice type t, or an object keyed "0", "1", … where t
// reads one (frontpay.Lines).
func (p *parser) list(path string, v any, t reflect.Type) {
	switch x := v.(type) {
	case nil:
	case []any:
		for i, item := range x {
			p.shape(join(path, strconv.Itoa(i)), item, t.Elem())
		}
	case map[string]any:
		if !reflect.PointerTo(t).Implements(unmarshalerType) {
			p.fail(path, "array", "must be an array, got an object")
			return
		}
		for _, key := range sortedKeys(x) {
			p.shape(join(path, key), x[key], t.Elem())
		}
	default:
		p.fail(path, "array", "must be an array, got "+kindOf(v))
	}
}

// jsonName is the member name encoding/json gives a struct field.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return cmp.Or(name, f.Name)
}
