package schemas

import (
	"strings"
	"testing"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// dataCase is one data payload of the corpus: an operation's example with edits, the field that
// ParseCommand must name for it ("" when it is valid) and, for a rule that JSON Schema cannot
// express, the rule's name as the schema's $comment lists it.
type dataCase struct {
	op    frontpay.Operation
	edits []string // pairs of dotted path and JSON value, applied to examples[op]
	field string   // relative to data
	tag   string
}

func (c dataCase) name() string {
	var b strings.Builder
	b.WriteString(string(c.op))
	for i := 0; i+1 < len(c.edits); i += 2 {
		v := c.edits[i+1]
		if v == deleted {
			v = "(deleted)"
		}
		b.WriteString(" " + c.edits[i] + "=" + v)
	}
	return b.String()
}

func (c dataCase) data(t testing.TB) string { return edit(t, examples[c.op], c.edits...) }

// because marks a case whose rule the schema cannot express.
func (c dataCase) because(tag string) dataCase {
	c.tag = tag
	return c
}

// valid is the example of op with edits, which keep it valid.
func valid(op frontpay.Operation, edits ...string) dataCase { return dataCase{op: op, edits: edits} }

// bad is the example of op with edits that make ParseCommand name field.
func bad(op frontpay.Operation, field string, edits ...string) dataCase {
	return dataCase{op: op, edits: edits, field: field}
}

// set is the example of op with the member at path set to value (or deleted), which
// ParseCommand must name.
func set(op frontpay.Operation, path, value string) dataCase { return bad(op, path, path, value) }

const (
	oc = frontpay.OrderCreate
	or = frontpay.OrderResend
	rs = frontpay.ReservationSubmit
	ss = frontpay.ReservationSession
	rd = frontpay.ReservationDetails
	rc = frontpay.ReservationCapture
	rh = frontpay.ReservationCharge
	rx = frontpay.ReservationCancel
	rp = frontpay.ReservationComplete
	rr = frontpay.ReservationResend
	rf = frontpay.ReservationRefund
	hi = frontpay.ReservationHistory
)

// long is a JSON number of more than 40 characters with the value 5.
const long = `5.0000000000000000000000000000000000000000`

// corpus has the seed examples, valid variants (numbers as strings, arrays for objects, null for
// optional members), and at least one invalid case for every rule of every operation.
var corpus = []dataCase{
	valid(oc),
	valid(oc, "products", `[{"name": "Hair Wash", "quantity": 1, "rate": "51", "tax": 0, "amount": "51.00"}]`),
	valid(oc, "products.0.discount", `null`),
	valid(oc, "products.0.discount", deleted, "products.0.productId", deleted),
	valid(oc, "customerDetails.type", `"corporate"`, "customerDetails.organizationId", `"123456789"`),
	valid(oc, "customerDetails.countryCode", `null`, "customerDetails.msisdn", `null`, "customerDetails.email", `null`),
	valid(oc, "sendOrderBy.sms", `true`, "sendOrderBy.email", `true`),
	valid(oc, "invoiceReferences", `null`, "internalReferences", deleted),
	valid(oc, "customerDetails.name", `"Ærlig Østby 山田"`),
	valid(oc, "products.0.amount", `"5.1e1"`, "products.0.tax", `"2.5e1"`),
	set(oc, "products", deleted),
	set(oc, "products", `{}`),
	set(oc, "products", `"Hair Wash"`),
	set(oc, "products.0.name", `"  "`),
	set(oc, "products.0.name", `null`),
	set(oc, "products.0.quantity", `0`),
	set(oc, "products.0.quantity", `"-1"`),
	set(oc, "products.0.quantity", deleted),
	set(oc, "products.0.rate", `-51`),
	set(oc, "products.0.rate", `"51.001"`),
	set(oc, "products.0.rate", `true`),
	set(oc, "products.0.rate", `"51e100"`),
	set(oc, "products.0.discount", `"-1"`),
	set(oc, "products.0.tax", `101`),
	set(oc, "products.0.tax", `"100.5"`),
	set(oc, "products.0.tax", `"-0.5"`),
	set(oc, "products.0.tax", `"abc"`),
	set(oc, "products.0.amount", deleted),
	set(oc, "products.0.price", `1`),
	set(oc, "products.0.productId", `5`),
	set(oc, "orderSummary", deleted),
	set(oc, "orderSummary.subTotal", `"x"`),
	set(oc, "orderSummary.totalTax", deleted),
	set(oc, "orderSummary.totalDiscount", `0.001`),
	set(oc, "orderSummary.grandTotal", `0`),
	set(oc, "orderSummary.grandTotal", `"-0"`),
	set(oc, "orderSummary.grandtotal", `51`),
	set(oc, "orderDate", deleted),
	set(oc, "orderDate", `" "`),
	set(oc, "dueDateForPaymentLink", `"tomorrow"`),
	set(oc, "dueDateForPaymentLink", `1795860000`),
	set(oc, "sendOrderBy", deleted),
	set(oc, "sendOrderBy.invoice", deleted),
	set(oc, "sendOrderBy.email", deleted),
	set(oc, "isCreditCheckAvailable", deleted),
	set(oc, "invoiceAsPaymentOption", `"false"`),
	set(oc, "customerDetails", deleted),
	set(oc, "customerDetails.type", `"company"`),
	set(oc, "customerDetails.name", deleted),
	set(oc, "customerDetails.preferredLanguage", `"fr"`),
	set(oc, "customerDetails.personalNumber", `"1234"`),
	set(oc, "customerDetails.organizationId", `"1234567890"`),
	set(oc, "customerDetails.organizationId", `"12a"`),
	bad(oc, "customerDetails.organizationId", "customerDetails.type", `"corporate"`),
	set(oc, "customerDetails.address", deleted),
	set(oc, "customerDetails.address.country", `"XX"`),
	set(oc, "customerDetails.address.country", `"no"`),
	set(oc, "customerDetails.address.street", `""`),
	set(oc, "customerDetails.address.floor", `"2"`),
	set(oc, "customerDetails.countryCode", `"47"`),
	set(oc, "customerDetails.msisdn", `"12"`),
	set(oc, "customerDetails.msisdn", `" "`),
	set(oc, "customerDetails.email", `"nope"`),
	set(oc, "customerDetails.customerUuid", `5`),
	bad(oc, "customerDetails.msisdn", "sendOrderBy.sms", `true`, "customerDetails.msisdn", `null`),
	bad(oc, "customerDetails.msisdn", "sendOrderBy.sms", `true`, "customerDetails.countryCode", `""`),
	bad(oc, "customerDetails.email", "sendOrderBy.email", `true`, "customerDetails.email", `""`),
	set(oc, "invoiceReferences.extra", `"x"`),
	set(oc, "internalReferences.notes", `3500`),
	set(oc, "grandtotal", `51`),
	set(oc, "dueDateForPaymentLink", `"1756871295"`).because("due-date"),
	set(oc, "dueDateForPaymentLink", `"99999999999999999999"`).because("unix-range"),
	set(oc, "customerDetails.email", `"a@@yopmail.com"`).because("email-rfc5322"),
	set(oc, "products.0.rate", `"1.2345e1"`).because("cents-exponent"),
	set(oc, "products.0.amount", `"99999999999999999999"`).because("cents-range"),
	set(oc, "products.0.tax", `"1e3"`).because("tax-exponent"),
	set(oc, "products.0.rate", long).because("number-text"),

	valid(or),
	valid(or, "countryCode", `null`, "msisdn", `null`),
	valid(or, "email", deleted),
	valid(or, "countryCode", `"  "`, "msisdn", `""`),
	bad(or, "email", "countryCode", deleted, "msisdn", deleted, "email", deleted),
	bad(or, "msisdn", "msisdn", `null`, "email", deleted),
	set(or, "countryCode", deleted),
	set(or, "countryCode", `"47"`),
	set(or, "msisdn", `"12ab"`),
	set(or, "email", `"bad"`),
	set(or, "email", `5`),
	set(or, "orderUuid", `"ORD 1"`),
	set(or, "orderUuid", deleted),
	set(or, "phone", `"x"`),
	set(or, "email", `"a@@email.com"`).because("email-rfc5322"),

	valid(rs),
	valid(rs, "products", `[{"name": "Test", "rate": "1.00", "tax": 25, "amount": "1"}]`),
	valid(rs, "settings", `null`, "callback", deleted, "customerDetails.personalNumber", `""`),
	valid(rs, "callback.callbackUrl", `""`),
	valid(rs, "customerDetails.type", `"corporate"`, "customerDetails.organizationId", `"9876543210123"`),
	valid(rs, "products.0.amount", `"1.5e-1"`),
	set(rs, "customerDetails", deleted),
	set(rs, "customerDetails.countryCode", `"+47a"`),
	set(rs, "customerDetails.msisdn", deleted),
	set(rs, "customerDetails.email", `"x"`),
	set(rs, "customerDetails.type", `"company"`),
	set(rs, "customerDetails.name", `"\u00a0"`),
	set(rs, "customerDetails.preferredLanguage", `"fr"`),
	set(rs, "customerDetails.personalNumber", `"1234"`),
	set(rs, "customerDetails.organizationId", `"12 3"`),
	bad(rs, "customerDetails.organizationId", "customerDetails.type", `"corporate"`),
	set(rs, "customerDetails.address.country", `"no"`),
	set(rs, "customerDetails.address.zip", deleted),
	set(rs, "customerDetails.uuid", `7`),
	set(rs, "orderDate", `""`),
	set(rs, "orderDate", `"17e8"`),
	set(rs, "orderDate", `1756871295`),
	set(rs, "sendOrderBy.sms", deleted),
	set(rs, "sendOrderBy.invoice", `true`),
	set(rs, "products", `{}`),
	set(rs, "products.0.rate", `"-1"`),
	set(rs, "products.0.tax", `"101"`),
	set(rs, "products.0.amount", `"1.001"`),
	set(rs, "products.0.name", `null`),
	set(rs, "products.0.quantity", `1`),
	set(rs, "orderSummary.grandTotal", `0`),
	set(rs, "orderSummary.totalTax", deleted),
	set(rs, "chargeValidity", `"5 5"`),
	set(rs, "chargeValidity", `55`),
	set(rs, "referenceNo", `5`),
	set(rs, "tnc", `false`),
	set(rs, "products.0.productId", `298`),
	set(rs, "customerDetails.address", `null`),
	set(rs, "settings.secureDetails", `"yes"`),
	set(rs, "settings.theme", `"dark"`),
	set(rs, "callback.callbackUrl", `"ftp://wp.frontpayment.no"`),
	set(rs, "callback.callbackUrl", `null`),
	set(rs, "callback.success", `"https://wp.frontpayment.no"`),
	set(rs, "dueDateForPaymentLink", `"1756871295"`).because("due-date"),
	set(rs, "dueDateForPaymentLink", `"99999999999999999999"`).because("unix-range"),
	set(rs, "callback.callbackUrl", `"https://wp.front payment.no"`).because("url-syntax"),
	set(rs, "customerDetails.email", `"nafees@@yopmail.com"`).because("email-rfc5322"),
	set(rs, "products.0.amount", `"1.234e-1"`).because("cents-exponent"),
	set(rs, "orderSummary.subTotal", `"99999999999999999999.00"`).because("cents-range"),
	set(rs, "products.0.tax", `"1.01e2"`).because("tax-exponent"),
	set(rs, "orderSummary.totalTax", long).because("number-text"),

	valid(ss),
	valid(ss, "submitPayment.via", `"mastercard"`),
	valid(ss, "callback", `{"success": "HTTP://wp.frontpayment.no/ok"}`),
	set(ss, "submitPayment", deleted),
	set(ss, "submitPayment.via", `"amex"`),
	set(ss, "submitPayment.via", deleted),
	set(ss, "submitPayment.method", `"visa"`),
	set(ss, "customerDetails.uuid", `""`),
	set(ss, "sendOrderBy.invoice", `false`),
	set(ss, "callback.failure", `"not a url"`),
	set(ss, "callback.success", `"https://user@/x"`),
	set(ss, "customerDetails.email", `"nafees@yopmail"`),
	set(ss, "dueDateForPaymentLink", `"1724294524"`).because("due-date"),
	set(ss, "orderDate", `"99999999999999999999"`).because("unix-range"),
	set(ss, "products.0.rate", `"1.000001e3"`).because("cents-exponent"),
	set(ss, "products.0.rate", `"100000000000000000000"`).because("cents-range"),
	set(ss, "products.0.tax", `"2e2"`).because("tax-exponent"),
	set(ss, "products.0.amount", long).because("number-text"),
	set(ss, "customerDetails.email", `"<nafees@yopmail.com>"`).because("email-rfc5322"),
	set(ss, "callback.callbackUrl", `"https://wp.frontpayment.no/%zz"`).because("url-syntax"),

	valid(rd),
	set(rd, "reservationUuid", deleted),
	set(rd, "reservationUuid", `"RES 1"`),
	set(rd, "reservationUuid", `"../RES1"`),
	set(rd, "reservationUuid", `1943140879`),
	set(rd, "reservationUuid", `"`+strings.Repeat("R", 65)+`"`),
	set(rd, "note", `"x"`),

	valid(rc),
	valid(rc, "products", `[{"id": "298", "amount": "5.00"}, {"id": 299, "amount": "50"}]`, "grandTotal", `"55.00"`),
	valid(rc, "additionalText", deleted),
	valid(rc, "additionalText", `null`),
	valid(rc, "products.0.amount", `"0.5e1"`),
	set(rc, "products", deleted),
	set(rc, "products", `[]`),
	set(rc, "products.0.id", deleted),
	set(rc, "products.0.id", `"abc"`),
	set(rc, "products.0.id", `-1`),
	set(rc, "products.0.id", `1.5`),
	set(rc, "products.0.id", `"1.0"`),
	set(rc, "products.0.amount", `"5.001"`),
	set(rc, "products.0.amount", `-5`),
	set(rc, "products.0.amount", `{"value": 5}`),
	set(rc, "products.0.sku", `"x"`),
	set(rc, "grandTotal", `0`),
	set(rc, "grandTotal", `"abc"`),
	set(rc, "grandTotal", `"55e100"`),
	set(rc, "grandTotal", deleted),
	set(rc, "additionalText", `5`),
	set(rc, "grandtotal", `55`),
	set(rc, "grandTotal", `56`).because("sum"),
	set(rc, "products.0.id", `1.0`).because("id-digits"),
	set(rc, "products.0.id", `"99999999999999999999"`).because("id-range"),
	set(rc, "products.0.amount", `"5.555e-1"`).because("cents-exponent"),
	set(rc, "products.0.amount", `"92233720368547758.08"`).because("cents-range"),
	set(rc, "products.0.amount", long).because("number-text"),

	valid(rh),
	valid(rh, "products.0.rate", `"150.00"`, "products.0.tax", `25`),
	set(rh, "products.0.name", deleted),
	set(rh, "products.0.tax", `"abc"`),
	set(rh, "products.0.rate", `"1.005"`),
	set(rh, "products.0.amount", `-1`),
	set(rh, "products.0.id", `1`),
	set(rh, "grandTotal", deleted),
	set(rh, "grandTotal", `151`).because("sum"),
	set(rh, "products.0.amount", `"1.50001e2"`).because("cents-exponent"),
	set(rh, "products.0.rate", `"99999999999999999999"`).because("cents-range"),
	set(rh, "products.0.tax", `"1e3"`).because("tax-exponent"),
	set(rh, "products.0.rate", long).because("number-text"),

	valid(rx),
	set(rx, "note", deleted),
	set(rx, "note", `"   "`),
	set(rx, "note", `5`),
	set(rx, "reason", `"x"`),
	set(rx, "reservationUuid", `null`),
	valid(rp),
	set(rp, "note", `""`),
	set(rp, "note", `"\t"`),

	valid(rr),
	valid(rr, "msisdn", deleted, "countryCode", deleted),
	bad(rr, "email", "countryCode", `null`, "msisdn", `null`, "email", `null`),
	set(rr, "countryCode", `"+12345"`),
	set(rr, "email", `"x@y.z@w"`),
	set(rr, "reservationUuid", deleted),
	set(rr, "email", `"Name <a@b.no>"`).because("email-rfc5322"),

	valid(rf),
	valid(rf, "grandTotal", `"15.00"`, "products.0.amount", `"15"`, "products.0.id", `"510"`),
	set(rf, "type", `"order"`),
	set(rf, "source", `"refunded"`),
	set(rf, "type", deleted),
	set(rf, "source", deleted),
	set(rf, "reference", `"  "`),
	set(rf, "reference", deleted),
	set(rf, "products", `{"0": {"id": 510, "amount": 15}}`),
	set(rf, "products", `[]`),
	set(rf, "products.0.id", `"x"`),
	set(rf, "products.0.note", `"x"`),
	set(rf, "grandTotal", deleted),
	set(rf, "grandTotal", `16`).because("sum"),
	set(rf, "products.0.id", `5.1e2`).because("id-digits"),
	set(rf, "products.0.id", `"9223372036854775808"`).because("id-range"),
	set(rf, "products.0.amount", `"1.5001e1"`).because("cents-exponent"),
	set(rf, "products.0.amount", `"92233720368547758.08"`).because("cents-range"),
	set(rf, "grandTotal", long).because("number-text"),

	valid(hi),
	valid(hi, "start", deleted, "end", deleted),
	valid(hi, "start", `null`),
	valid(hi, "end", deleted),
	valid(hi, "start", `1.706674723e9`),
	set(hi, "start", `"abc"`),
	set(hi, "start", `-1`),
	set(hi, "start", `1.5`),
	set(hi, "start", `"123456789012"`),
	set(hi, "start", `true`),
	set(hi, "end", `100000000000`),
	set(hi, "limit", `10`),
	set(hi, "start", `"1706761124"`).because("history-order"),
	set(hi, "end", `1706761123.00000000000000000000000000000000`).because("number-text"),
}
