package frontpay

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// seedNow is a moment before every due date in the seed documents' examples, so that they
// validate as the documents say they do.
var seedNow = time.Unix(1700000000, 0)

// newRequest returns an empty request of the type that a testdata file holds.
func newRequest(file string) Validator {
	switch file {
	case "submit.json":
		return new(SubmitReservationRequest)
	case "session.json":
		return new(CreateSessionRequest)
	case "capture.json":
		return new(CaptureRequest)
	case "charge.json":
		return new(ChargeRequest)
	case "cancel.json", "complete.json":
		return new(NoteRequest)
	case "refund.json":
		return new(RefundRequest)
	case "resend.json":
		return new(ResendRequest)
	case "order.json":
		return new(CreateOrderRequest)
	}
	panic("no request type for " + file)
}

// seed reads a testdata example as a generic JSON tree, to be changed by a test.
func seed(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

// set changes the value at a dotted path; a nil value deletes the member.
func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

// null is a JSON null in a test table (nil deletes the member).
type null struct{}

func (null) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func validateTree(t *testing.T, file string, m map[string]any) error {
	t.Helper()
	b, _ := json.Marshal(m)
	req := newRequest(file)
	if err := json.Unmarshal(b, req); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return req.Validate(seedNow)
}

func TestSeedExamplesValidate(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"submit.json", "session.json", "capture.json", "charge.json", "cancel.json",
		"complete.json", "refund.json", "resend.json", "order.json"} {
		if err := validateTree(t, file, seed(t, file)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

func TestSeedExamplesRoundTrip(t *testing.T) {
	t.Parallel()
	// Numbers keep their form: "tax": "0" stays a string, "rate": 1 a number, "51.00" its decimals.
	for file, want := range map[string][]string{
		"submit.json":  {`"tax":"0"`, `"rate":1,`, `"uuid":""`, `"referenceNo":null`},
		"order.json":   {`"quantity":"1"`, `"subTotal":"51.00"`, `"rate":51`},
		"session.json": {`"subTotal":1000.00`},
		"refund.json":  {`"products":[{"id":510,"amount":15}]`},
	} {
		b, _ := os.ReadFile("testdata/" + file)
		req := newRequest(file)
		if err := json.Unmarshal(b, req); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(req)
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: %s not in %s", file, w, out)
			}
		}
	}
}

func TestValidationRules(t *testing.T) {
	t.Parallel()
	past := "1600000000"
	cases := []struct {
		file, path string
		value      any
		field      string
		also       map[string]any // further changes, where one rule needs two
	}{
		{"submit.json", "customerDetails", nil, "customerDetails", nil},
		{"submit.json", "customerDetails.type", "company", "customerDetails.type", nil},
		{"submit.json", "customerDetails.countryCode", "", "customerDetails.countryCode", nil},
		{"submit.json", "customerDetails.countryCode", "47", "customerDetails.countryCode", nil},
		{"submit.json", "customerDetails.msisdn", nil, "customerDetails.msisdn", nil},
		{"submit.json", "customerDetails.email", "nafees@", "customerDetails.email", nil},
		{"submit.json", "customerDetails.email", "Nafees <n@yopmail.com>", "customerDetails.email", nil},
		{"submit.json", "customerDetails.name", "", "customerDetails.name", nil},
		{"submit.json", "customerDetails.preferredLanguage", "fr", "customerDetails.preferredLanguage", nil},
		{"submit.json", "customerDetails.personalNumber", "1963546452", "customerDetails.personalNumber", nil},
		{"submit.json", "customerDetails.personalNumber", "1963546452x", "customerDetails.personalNumber", nil},
		{"submit.json", "customerDetails.type", "corporate", "customerDetails.organizationId", nil},
		{"submit.json", "customerDetails.organizationId", "12 345", "customerDetails.organizationId", nil},
		{"submit.json", "customerDetails.address", nil, "customerDetails.address", nil},
		{"submit.json", "customerDetails.address.street", "", "customerDetails.address.street", nil},
		{"submit.json", "customerDetails.address.zip", nil, "customerDetails.address.zip", nil},
		{"submit.json", "customerDetails.address.city", "", "customerDetails.address.city", nil},
		{"submit.json", "customerDetails.address.country", "NOR", "customerDetails.address.country", nil},
		{"submit.json", "customerDetails.address.country", "XX", "customerDetails.address.country", nil},
		{"submit.json", "orderDate", "yesterday", "orderDate", nil},
		{"submit.json", "dueDateForPaymentLink", past, "dueDateForPaymentLink", nil},
		{"submit.json", "dueDateForPaymentLink", nil, "dueDateForPaymentLink", nil},
		{"submit.json", "sendOrderBy.sms", nil, "sendOrderBy.sms", nil},
		{"submit.json", "sendOrderBy", nil, "sendOrderBy", nil},
		{"submit.json", "products", map[string]any{}, "products", nil},
		{"submit.json", "products.0.name", "", "products.0.name", nil},
		{"submit.json", "products.0.rate", nil, "products.0.rate", nil},
		{"submit.json", "products.0.tax", "125", "products.0.tax", nil},
		{"submit.json", "products.0.amount", -1, "products.0.amount", nil},
		{"submit.json", "products.0.amount", "1.005", "products.0.amount", nil},
		{"submit.json", "orderSummary.grandTotal", 0, "orderSummary.grandTotal", nil},
		{"submit.json", "orderSummary", nil, "orderSummary", nil},
		{"submit.json", "chargeValidity", "5m", "chargeValidity", nil},
		{"submit.json", "callback.callbackUrl", "wp.frontpayment.no", "callback.callbackUrl", nil},
		{"session.json", "submitPayment.via", "amex", "submitPayment.via", nil},
		{"session.json", "submitPayment", nil, "submitPayment", nil},
		{"session.json", "callback.failure", "ftp://x", "callback.failure", nil},
		{"session.json", "customerDetails.preferredLanguage", "", "customerDetails.preferredLanguage", nil},
		{"capture.json", "products.0.id", nil, "products.0.id", nil},
		{"capture.json", "products.0.id", "2.5", "products.0.id", nil},
		{"capture.json", "products.1.amount", nil, "products.1.amount", nil},
		{"capture.json", "grandTotal", 56, "grandTotal", nil},
		{"capture.json", "grandTotal", nil, "grandTotal", nil},
		{"capture.json", "products", nil, "products", nil},
		{"charge.json", "grandTotal", 149, "grandTotal", nil},
		{"charge.json", "products.0.name", nil, "products.0.name", nil},
		{"charge.json", "products.0.tax", nil, "products.0.tax", nil},
		{"refund.json", "type", "order", "type", nil},
		{"refund.json", "source", "reserved", "source", nil},
		{"refund.json", "reference", "", "reference", nil},
		{"refund.json", "grandTotal", 16, "grandTotal", nil},
		{"refund.json", "grandTotal", -15, "grandTotal", nil},
		{"cancel.json", "note", "", "note", nil},
		{"complete.json", "note", nil, "note", nil},
		{"resend.json", "email", "nope", "email", nil},
		{"resend.json", "msisdn", null{}, "msisdn", nil},
		{"resend.json", "countryCode", "0047", "countryCode", nil},
		{"order.json", "products.0.quantity", "0", "products.0.quantity", nil},
		{"order.json", "products.0.discount", "-1", "products.0.discount", nil},
		{"order.json", "orderSummary.totalDiscount", nil, "orderSummary.totalDiscount", nil},
		{"order.json", "orderDate", "", "orderDate", nil},
		{"order.json", "dueDateForPaymentLink", past, "dueDateForPaymentLink", nil},
		{"order.json", "sendOrderBy.invoice", nil, "sendOrderBy.invoice", nil},
		{"order.json", "isCreditCheckAvailable", nil, "isCreditCheckAvailable", nil},
		{"order.json", "invoiceAsPaymentOption", nil, "invoiceAsPaymentOption", nil},
		{"order.json", "sendOrderBy.sms", true, "customerDetails.msisdn", nil},
		{"order.json", "sendOrderBy.email", true, "customerDetails.email", map[string]any{"customerDetails.email": null{}}},
		{"order.json", "customerDetails.msisdn", "+4746567468", "customerDetails.msisdn", nil},
		{"order.json", "customerDetails.organizationId", "1234567890", "customerDetails.organizationId", nil},
		{"order.json", "customerDetails.type", "corporate", "customerDetails.organizationId", nil},
		{"order.json", "customerDetails.address.country", "no", "customerDetails.address.country", nil},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".json")+"/"+c.path, func(t *testing.T) {
			t.Parallel()
			m := seed(t, c.file)
			set(m, c.path, c.value)
			for p, v := range c.also {
				set(m, p, v)
			}
			err := validateTree(t, c.file, m)
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("%s = %#v: got %v, want a validation error on %s", c.path, c.value, err, c.field)
			}
			if !ve.Has(c.field) {
				t.Fatalf("%s = %#v: errors %v do not name %s", c.path, c.value, ve.Map(), c.field)
			}
			if len(ve.Fields) != 1 {
				t.Errorf("one broken rule gave %d errors: %v", len(ve.Fields), ve)
			}
		})
	}
}

func TestResendAlternatives(t *testing.T) {
	t.Parallel()
	s := func(v string) *string { return &v }
	if err := (&ResendRequest{Email: s("a@example.no")}).Validate(seedNow); err != nil {
		t.Errorf("e-mail alone: %v", err)
	}
	if err := (&ResendRequest{CountryCode: s("+47"), MSISDN: s("46567468")}).Validate(seedNow); err != nil {
		t.Errorf("SMS alone: %v", err)
	}
	err := (&ResendRequest{}).Validate(seedNow)
	if ve, ok := err.(*ValidationError); !ok || !ve.Has("email") {
		t.Errorf("nothing to send to: %v", err)
	}
}

func TestValidateUUID(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"RES1943140879", "ODR-1_a"} {
		if err := ValidateUUID("reservationUuid", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "RES/../orders", "RES 1", strings.Repeat("A", 65), "RES%2F"} {
		if err := ValidateUUID("reservationUuid", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDoRefusesProgrammingErrors(t *testing.T) {
	t.Parallel()
	c, err := New("http://127.0.0.1:1", "tok")
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"nil body":        func() error { _, err := c.Cancel(t.Context(), "RES1", nil); return err },
		"unknown op":      func() error { _, err := c.Do(t.Context(), "reservation.nothing", nil, nil); return err },
		"path values":     func() error { _, err := c.Do(t.Context(), ReservationDetails, nil, nil); return err },
		"empty path uuid": func() error { _, err := c.Details(t.Context(), ""); return err },
	} {
		var ve *ValidationError
		if err := call(); !errors.As(err, &ve) || Classify(err) != Permanent {
			t.Errorf("%s: got %v (%s), want a permanent validation error", name, err, Classify(err))
		}
	}
}
