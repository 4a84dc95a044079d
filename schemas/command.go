package schemas

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Limits on a command, checked before its attributes are read.
const (
	// MaxCommandBytes is the size of the largest command accepted: 256 KiB. A failure event
	// carries its command, and must still fit NATS's default 1 MiB message limit.
	MaxCommandBytes = 256 << 10
	// MaxDepth is the deepest nesting accepted, the command object itself being level 1.
	MaxDepth = 32
)

// ErrNotObject means a message is not a JSON object at all: not JSON, not UTF-8, or another JSON
// value. It is no command, and no failure event could carry it, so the worker copies it to the
// dead-letter subject. JSON nested deeper than encoding/json reads (10000 levels) counts as not
// JSON for the same reason.
var ErrNotObject = errors.New("schemas: message is not a JSON object")

// InvalidError means a message is a JSON object but not a valid command: the worker publishes an
// invalid_command failure, with the message (valid JSON, as this error promises) as its command.
// Fields names each problem: envelope attributes by name ("specversion", "type"), data members by
// dotted path ("data.products.0.amount"), the command as a whole by "" (size, depth).
type InvalidError struct {
	Fields []frontpay.FieldError
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = strings.TrimSpace(f.Field + " " + f.Message)
	}
	return "invalid command: " + strings.Join(parts, "; ")
}

// Failure returns the data of the invalid_command failure event of the command raw: its errors
// are field → messages, as the API's 417 answer carries them.
func (e *InvalidError) Failure(raw []byte) Failure {
	errs, _ := json.Marshal((&frontpay.ValidationError{Fields: e.Fields}).Map())
	return Failure{Reason: InvalidCommand, Message: e.Error(), Errors: errs, Command: raw}
}

// Command is a decoded, valid command.
type Command struct {
	// Event is the command as received; Data is its data member byte for byte.
	Event
	Op frontpay.Operation
	// Key is the idempotency key: idempotencykey, or id when absent.
	Key string
	// Params are the path values in the endpoint's order. For history they are start and end in
	// Unix seconds, defaulting to the 24 hours before the time given to ParseCommand.
	Params []string
	// Body is the request body, such as *frontpay.CaptureRequest; nil for details and history.
	Body frontpay.Validator
	// Resource is the reservation or order UUID, "" for submit, session, order.create and history.
	Resource string
	// Fingerprint is the hex SHA-256 of data in canonical form (members sorted, no white space,
	// numbers as written), so the same data written otherwise has the same fingerprint.
	Fingerprint string
}

// Origin is what a result event carries over from the command that caused it.
func (c *Command) Origin() Origin {
	return Origin{Op: c.Op, CommandID: c.ID, Key: c.Key, CorrelationID: c.CorrelationID, ReplayOf: c.ReplayOf, Resource: c.Resource}
}

var (
	// attributeName is what CloudEvents allows as an attribute name. It also catches a misspelt
	// extension such as "idempotencyKey", which would otherwise be ignored.
	attributeName = regexp.MustCompile(`^[a-z0-9]+$`)
	// timePattern is RFC 3339 as the contract takes it: upper-case T and Z, a dot before fractions.
	timePattern = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
	// jsonMediaType is a datacontenttype that says data is JSON.
	jsonMediaType = regexp.MustCompile(`^application/([a-z0-9.-]+\+)?json( *;.*)?$`)
)

// requiredAttributes are the context attributes a command must carry besides data.
var requiredAttributes = []string{"specversion", "id", "source", "type"}

// stringAttributes are the context attributes that Event holds, all strings.
var stringAttributes = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Event]()
	for i := range t.NumField() {
		if f := t.Field(i); f.Type.Kind() == reflect.String {
			m[jsonName(f)] = true
		}
	}
	return m
}()

// ParseCommand decodes raw, received on the command subject of op, as of the time now (which
// due dates and the history's default window are measured from).
//
// It returns ErrNotObject when raw is not a JSON object, an *InvalidError listing every problem
// when it is one but not a valid command, and otherwise the command. Envelope: specversion "1.0";
// id, source and type non-empty strings, type being CommandSubject("", op); data an object; the
// other attributes strings (extensions also numbers or booleans), null counting as absent;
// data_base64 (data that is not JSON, as Structured writes a binary-mode message's) is refused
// as data that is not an object. Data:
// the path fields of op's endpoint, checked with frontpay.ValidateUUID, and the request body,
// read strictly (exact member names, no unknown member at any level, no member twice) and checked
// with its Validate.
func ParseCommand(op frontpay.Operation, raw []byte, now time.Time) (*Command, error) {
	if trimmed := bytes.TrimLeft(raw, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' || !utf8.Valid(raw) || !json.Valid(raw) {
		return nil, ErrNotObject
	}
	if len(raw) > MaxCommandBytes {
		return nil, invalid("max_size", fmt.Sprintf("the command is %d bytes, more than the %d accepted", len(raw), MaxCommandBytes))
	}
	tree, dups, err := readTree(raw)
	if errors.Is(err, errTooDeep) {
		return nil, invalid("max_depth", fmt.Sprintf("the command is nested more than %d levels deep", MaxDepth))
	} else if err != nil {
		return nil, ErrNotObject // json.Valid accepted raw, so this does not happen
	}
	p := &parser{op: op, now: now, errs: dups}
	data := p.envelope(tree.(map[string]any))
	cmd := &Command{Op: op}
	if data != nil && op.Valid() {
		cmd.Params, cmd.Body = p.data(data)
	}
	if len(p.errs) > 0 {
		return nil, &InvalidError{Fields: p.errs}
	}
	if err := json.Unmarshal(raw, &cmd.Event); err != nil {
		return nil, invalid("json", err.Error()) // every attribute is checked above, so this does not happen
	}
	cmd.Key = cmp.Or(cmd.IdempotencyKey, cmd.ID)
	if resourceParam(op) != "" {
		cmd.Resource = cmd.Params[0]
	}
	cmd.Fingerprint = fingerprint(data)
	return cmd, nil
}

// invalid is an InvalidError about the command as a whole.
func invalid(rule, msg string) *InvalidError {
	return &InvalidError{Fields: []frontpay.FieldError{{Rule: rule, Message: msg}}}
}

// parser collects the problems of one command.
type parser struct {
	op   frontpay.Operation
	now  time.Time
	errs []frontpay.FieldError
}

func (p *parser) fail(field, rule, msg string) {
	p.errs = append(p.errs, frontpay.FieldError{Field: field, Rule: rule, Message: msg})
}

// validation adds the fields of a *frontpay.ValidationError, each under prefix.
func (p *parser) validation(prefix string, err error) {
	var ve *frontpay.ValidationError
	if !errors.As(err, &ve) {
		if err != nil {
			p.fail(strings.TrimSuffix(prefix, "."), "invalid", err.Error())
		}
		return
	}
	for _, f := range ve.Fields {
		f.Field = prefix + f.Field
		p.errs = append(p.errs, f)
	}
}

// envelope checks the context attributes and returns data, nil when it is not an object.
func (p *parser) envelope(obj map[string]any) map[string]any {
	if !p.op.Valid() {
		p.fail("type", "in", fmt.Sprintf("the subject names no operation (%q)", p.op))
	}
	for _, name := range sortedKeys(obj) {
		v := obj[name]
		s, isString := v.(string)
		switch {
		case !attributeName.MatchString(name):
			p.fail(name, "attribute_name", "is not a CloudEvents attribute name (lower-case ASCII letters and digits)")
		case name == "data" || name == "data_base64":
		case stringAttributes[name] && isString:
			p.attribute(name, s)
		case stringAttributes[name] && v != nil:
			p.fail(name, "string", "must be a string, got "+kindOf(v))
		case !stringAttributes[name] && !scalar(v):
			p.fail(name, "extension", "must be a string, a number or a boolean, got "+kindOf(v))
		}
	}
	for _, name := range requiredAttributes {
		if obj[name] == nil {
			p.fail(name, "required", "is required")
		}
	}
	data, ok := obj["data"].(map[string]any)
	_, binary := obj["data_base64"]
	switch {
	case binary:
		p.fail("data", "object", "must be a JSON object, got data that is not JSON (data_base64)")
	case obj["data"] == nil:
		p.fail("data", "required", "is required")
	case !ok:
		p.fail("data", "object", "must be an object, got "+kindOf(obj["data"]))
	}
	return data
}

// attribute checks the value of a string attribute.
func (p *parser) attribute(name, s string) {
	switch {
	case s == "":
		p.fail(name, "filled", "must not be empty")
	case name == "specversion" && s != "1.0":
		p.fail(name, "in", `must be "1.0"`)
	case name == "type" && p.op.Valid() && s != CommandSubject("", p.op):
		p.fail(name, "in", fmt.Sprintf("must be %q, the subject without its prefix", CommandSubject("", p.op)))
	case name == "time" && !isTime(s):
		p.fail(name, "date_format", "must be an RFC 3339 time such as 2026-11-21T10:00:00Z")
	case name == "datacontenttype" && !jsonMediaType.MatchString(s):
		p.fail(name, "in", "must be a JSON media type such as application/json")
	}
}

// isTime reports whether s is an RFC 3339 time of a real calendar day.
func isTime(s string) bool {
	_, err := time.Parse(time.RFC3339, s)
	return err == nil && timePattern.MatchString(s)
}
