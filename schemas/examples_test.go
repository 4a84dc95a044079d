package schemas

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// testNow is the time the tests check commands at; due dates in the examples are a week later.
var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// examples are the seed documents' example payloads, one per operation, with the path fields of
// CONTRACT.md section 1, due dates in the future, and the documents' typos mended (the resend
// example's bare +47 and unterminated email, order.create's merged customer lines, "xxxxxxxx").
var examples = map[frontpay.Operation]string{
	frontpay.OrderCreate: `{
		"products": {"0": {"name": "Hair Wash", "productId": "VFDDF", "quantity": "1", "rate": 51, "discount": 0, "tax": "0", "amount": 51}},
		"orderSummary": {"subTotal": "51.00", "totalTax": "0.00", "totalDiscount": "0.00", "grandTotal": "51.00"},
		"orderDate": "5 Dec, 2023",
		"dueDateForPaymentLink": "1795860000",
		"sendOrderBy": {"sms": false, "email": false, "invoice": true},
		"invoiceAsPaymentOption": false,
		"isCreditCheckAvailable": false,
		"customerDetails": {
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "test@yopmail.com",
			"customerUuid": "CSRT3672053467", "name": "Test", "preferredLanguage": "en",
			"personalNumber": null, "organizationId": null,
			"address": {"street": "Dhaka", "zip": "3500", "city": "Cumilla", "country": "NO"}
		},
		"invoiceReferences": {"referenceNo": "Dhaka", "customerReference": "3500", "receiptNo": "Cumilla", "customerNotes": "NO", "tnc": "adfsl"},
		"internalReferences": {"referenceNo": "Dhaka", "notes": "3500"}
	}`,
	frontpay.OrderResend: `{"orderUuid": "ORD3672053467", "countryCode": "+47", "msisdn": "46567468", "email": "example-email@email.com"}`,
	frontpay.ReservationSubmit: `{
		"customerDetails": {
			"uuid": "", "type": "private", "countryCode": "+880", "msisdn": "1724313009", "email": "nafees@yopmail.com",
			"name": "Nafees", "preferredLanguage": "en", "personalNumber": "19635464524", "organizationId": null,
			"address": {"street": "Dhaka", "zip": "3500", "city": "Cumilla", "country": "NO"}
		},
		"orderDate": "1756871295",
		"dueDateForPaymentLink": "1795860000",
		"referenceNo": null,
		"customerReference": null,
		"sendOrderBy": {"sms": false, "email": true},
		"products": {"0": {"name": "Test", "productId": null, "rate": 1, "tax": "0", "amount": 1}},
		"orderSummary": {"subTotal": 1, "totalTax": 0, "grandTotal": 1},
		"chargeValidity": "55",
		"customerNotes": null,
		"tnc": null,
		"settings": {"secureDetails": false, "isChargePartiallyRefundable": false},
		"callback": {"callbackUrl": "https://wp.frontpayment.no"}
	}`,
	frontpay.ReservationSession: `{
		"customerDetails": {
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "nafees@yopmail.com",
			"name": "Nafees", "preferredLanguage": "en", "personalNumber": null, "organizationId": null,
			"address": {"street": "Dhaka", "zip": "3500", "city": "Cumilla", "country": "NO"}
		},
		"orderDate": "1724294524",
		"dueDateForPaymentLink": "1795860000",
		"referenceNo": null,
		"customerReference": null,
		"sendOrderBy": {"sms": false, "email": false},
		"products": {"0": {"name": "Test", "productId": null, "rate": 1000, "tax": "0", "amount": 1000}},
		"orderSummary": {"subTotal": 1000.00, "totalTax": 0, "grandTotal": 1000.00},
		"chargeValidity": "55",
		"customerNotes": null,
		"tnc": null,
		"submitPayment": {"via": "visa"},
		"callback": {
			"callbackUrl": "https://wp.frontpayment.no/?order_identifier=rRbl1FWZG59o&order_status=success",
			"success": "https://wp.frontpayment.no/?order_identifier=rRbl1FWZG59o&order_status=success",
			"failure": "https://frontpayment.no/?order_identifier=rRbl1FWZG59o&order_status=failed"
		},
		"settings": {"secureDetails": false, "isChargePartiallyRefundable": true}
	}`,
	frontpay.ReservationDetails:  `{"reservationUuid": "RES1943140879"}`,
	frontpay.ReservationCapture:  `{"reservationUuid": "RES1943140879", "products": {"0": {"id": 298, "amount": 5}, "1": {"id": 299, "amount": 50}}, "grandTotal": 55, "additionalText": "My additional Text for capture"}`,
	frontpay.ReservationCharge:   `{"reservationUuid": "RES1943140879", "products": {"0": {"name": "Charge QA", "productId": null, "rate": 150, "tax": "0", "amount": 150}}, "grandTotal": 150, "additionalText": "My additional Text for capture"}`,
	frontpay.ReservationCancel:   `{"reservationUuid": "RES1943140879", "note": "Your cancellation Note here"}`,
	frontpay.ReservationComplete: `{"reservationUuid": "RES1943140879", "note": "Test Complete Note"}`,
	frontpay.ReservationResend:   `{"reservationUuid": "RES1943140879", "countryCode": "+47", "msisdn": "46567468", "email": "example-email@email.com"}`,
	frontpay.ReservationRefund:   `{"reservationUuid": "RES1943140879", "type": "reservation", "grandTotal": 15, "products": [{"id": 510, "amount": 15}], "source": "captured", "reference": "CAP123234"}`,
	frontpay.ReservationHistory:  `{"start": 1706674723, "end": "1706761123"}`,
}

// command wraps data in a valid command envelope for op.
func command(op frontpay.Operation, data string) []byte {
	return []byte(`{"specversion": "1.0", "id": "7f1d0c2e-5b1a-4c57-9a0e-3f1f6f0f2a10", "source": "shop/checkout",
		"type": "` + string(op) + `.requested", "time": "2026-11-21T10:00:00Z",
		"idempotencykey": "key-1", "correlationid": "order-88412", "data": ` + data + `}`)
}

// deleted, as the value of an edit, removes the member.
const deleted = ""

// edit returns the JSON text doc with the members at the dotted paths set to JSON values (pairs
// of path and value), or removed where the value is deleted.
func edit(t testing.TB, doc string, edits ...string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		t.Fatalf("edit %s: %v", doc, err)
	}
	for i := 0; i+1 < len(edits); i += 2 {
		path := strings.Split(edits[i], ".")
		parent := root
		for _, seg := range path[:len(path)-1] {
			parent = child(t, parent, seg)
		}
		last := path[len(path)-1]
		var v any
		if edits[i+1] != deleted {
			d := json.NewDecoder(strings.NewReader(edits[i+1]))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				t.Fatalf("edit value %s: %v", edits[i+1], err)
			}
		}
		switch p := parent.(type) {
		case map[string]any:
			if edits[i+1] == deleted {
				delete(p, last)
			} else {
				p[last] = v
			}
		case []any:
			n, _ := strconv.Atoi(last)
			p[n] = v
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(root); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}

func child(t testing.TB, v any, seg string) any {
	t.Helper()
	switch p := v.(type) {
	case map[string]any:
		if p[seg] == nil {
			p[seg] = map[string]any{}
		}
		return p[seg]
	case []any:
		n, err := strconv.Atoi(seg)
		if err != nil || n >= len(p) {
			t.Fatalf("edit: no element %s", seg)
		}
		return p[n]
	}
	t.Fatalf("edit: %s inside a %T", seg, v)
	return nil
}
