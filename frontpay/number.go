package frontpay

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// numericPattern is what the API's Laravel `numeric` rule accepts from a JSON string, less PHP's
// leading white space and hexadecimal forms, which no document uses, and with an exponent of at
// most two digits: exact arithmetic on 1e999999 costs milliseconds to seconds per operation.
var numericPattern = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?0*\d{1,2})?$`)

// MaxNumberText is the longest numeric text a Number takes, for the same reason.
const MaxNumberText = 40

func numeric(s string) bool { return len(s) <= MaxNumberText && numericPattern.MatchString(s) }

// Number is a numeric field as the API takes it (Laravel's `numeric`): a JSON number such as 1 or
// 51.00, or a string holding one, such as "0" or "51.00". It keeps the exact text and whether it was
// quoted, so a value passes through the worker unchanged and money is never rounded through a float.
//
// The zero Number is absent: it marshals as null and fails a required rule.
type Number struct {
	text   string
	quoted bool
}

// Num returns the Number written as a bare JSON number. It panics if s is not numeric; it is meant
// for literals in code and tests. Use ParseNumber for input.
func Num(s string) Number {
	n, err := ParseNumber(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Str returns the Number written as a JSON string, as the documents send "tax": "0". It panics if s
// is not numeric.
func Str(s string) Number {
	n := Num(s)
	n.quoted = true
	return n
}

// ParseNumber reads s as a numeric value that will be written as a bare JSON number.
func ParseNumber(s string) (Number, error) {
	if !numeric(s) {
		return Number{}, fmt.Errorf("not numeric (at most %d characters, exponent of two digits)", MaxNumberText)
	}
	return Number{text: s}, nil
}

// IsZero reports whether the Number is absent (not whether its value is 0).
func (n Number) IsZero() bool { return n.text == "" }

// String returns the number's text as it was given, "" when absent.
func (n Number) String() string { return n.text }

// Rat returns the exact value; nil when absent.
func (n Number) Rat() *big.Rat {
	if n.text == "" {
		return nil
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(n.text, "+"))
	if !ok {
		return nil
	}
	return r
}

// ErrNotCents means an amount has more than two decimal places or is out of range, so it is not a
// whole number of øre (cents).
var ErrNotCents = errors.New("not a whole number of cents")

// Cents returns the value in hundredths (øre for NOK), exactly, or ErrNotCents when the value has a
// fractional part below a hundredth or does not fit in an int64.
func (n Number) Cents() (int64, error) {
	if c, ok := n.plainCents(); ok {
		return c, nil
	}
	r := n.Rat()
	if r == nil {
		return 0, ErrNotCents
	}
	r.Mul(r, big.NewRat(100, 1))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, ErrNotCents
	}
	return r.Num().Int64(), nil
}

// plainCents reads the common form of an amount, an optional sign, 1 to 16 digits and optionally a
// point and one or two decimals, in hundredths without big.Rat; ok is false for every other form,
// which Cents reads exactly the slow way.
func (n Number) plainCents() (c int64, ok bool) {
	s := n.text
	neg := s != "" && s[0] == '-'
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	whole, frac, point := strings.Cut(s, ".")
	if len(whole) == 0 || len(whole) > 16 || point && (len(frac) == 0 || len(frac) > 2) {
		return 0, false
	}
	for _, part := range [2]string{whole, frac} {
		for i := range len(part) {
			if part[i] < '0' || part[i] > '9' {
				return 0, false
			}
			c = c*10 + int64(part[i]-'0')
		}
	}
	for range 2 - len(frac) {
		c *= 10
	}
	if neg {
		c = -c
	}
	return c, true
}

// FromCents returns the amount c/100 written as a bare JSON number with two decimals.
func FromCents(c int64) Number {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return Number{text: fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)}
}

// Sign returns -1, 0 or +1; 0 also when absent.
func (n Number) Sign() int {
	if c, ok := n.plainCents(); ok {
		return cmp.Compare(c, 0)
	}
	if r := n.Rat(); r != nil {
		return r.Sign()
	}
	return 0
}

// Cmp compares n with m by value: -1, 0 or +1. Absent counts as 0.
func (n Number) Cmp(m Number) int {
	a, b := n.Rat(), m.Rat()
	if a == nil {
		a = new(big.Rat)
	}
	if b == nil {
		b = new(big.Rat)
	}
	return a.Cmp(b)
}

// MarshalJSON writes the number as it came: quoted if it was a string, bare otherwise, null when
// absent.
func (n Number) MarshalJSON() ([]byte, error) {
	switch {
	case n.text == "":
		return []byte("null"), nil
	case n.quoted:
		return json.Marshal(n.text)
	default:
		return []byte(n.text), nil
	}
}

// UnmarshalJSON accepts a JSON number, a string holding a numeric value, or null (absent). Anything
// else (a boolean, an object, a non-numeric string) is an error naming what was found.
func (n *Number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*n = Number{}
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if !numeric(s) {
			return fmt.Errorf("a string that is not numeric (at most %d characters, exponent of two digits)", MaxNumberText)
		}
		*n = Number{text: s, quoted: true}
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		if !json.Valid(b) || !numeric(string(b)) {
			return fmt.Errorf("a number of more than %d characters or with an exponent of more than two digits", MaxNumberText)
		}
		*n = Number{text: string(b)}
		return nil
	default:
		return fmt.Errorf("want a number or a numeric string, got %s", jsonKind(b))
	}
}

// Text is a string field that the API may also send as a JSON number (timestamps such as
// "reservedAt", amounts in history entries). A number is kept as its text.
type Text string

// UnmarshalJSON accepts a string, a number or null.
func (t *Text) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*t = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = Text(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*t = Text(b)
	default:
		return fmt.Errorf("want a string or a number, got %s", jsonKind(b))
	}
	return nil
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case 'n':
		return "null"
	}
	return "a number"
}
