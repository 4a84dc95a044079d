package frontpay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// fuzzToken is the bearer token of the fuzzed client; no error may ever show it.
const fuzzToken = "tok-FUZZ-SECRET-4242"

// fuzzAnswers are answers of the Front Payment documents (shared/seeds), copied as they are
// written, the garbled ones included: what the API says it answers is the first thing the client
// must survive.
var fuzzAnswers = []struct {
	status int
	body   string
}{
	// 001/003 resend order: 202, 404, 417 (errors "Array"), 400 twice, 510.
	{202, `{"status_code": 202, "status_message": "OK", "message": "resentOrderSuccessfully", "is_data": true, "data": null}`},
	{404, `{"status_code": 404, "status_message": "Not Found", "message": "orderNotFound", "is_error": false, "errors": null}`},
	{417, `{"status_code": 417, "status_message": "Client Error", "message": "payloadValidationErrors", "is_error": true, "errors": "Array"}`},
	{400, `{"status_code": 400, "status_message": "Conflict of Business Logic", "message": "orderStatusAlreadyPaid", "is_error": false, "errors": null}`},
	{510, `{"status_code": 510, "status_message": "Execution Exception Occurred", "message": "Something Went Wrong", "is_error": true, "errors": "Array"}`},
	// 000 resend reservation: a 510 whose message is not JSON as written.
	{510, `{"status_code": 510, "status_message": "Execution Exception Occurred", "message": "somethingWentWrong"Something Went Wrong", "is_error": true, "errors": "Array"}`},
	// 002 create order: two pages mixed into one, not JSON.
	{201, `{"status_code": 201,202, "status_message": "OK", "message": "orderAddedSuccessfully"resentOrderSuccessfully", "is_data": true, "data": null}`},
	{417, `{"status_code": 500,417, "status_message": "Internal DependencyClient Error", "message": "internalErrorOccurredPleaseTryAgainLater"payloadValidationErrors", "is_error": true, "errors": {"happenedAt": "String" "internalErrorDetails": "Array"}`},
	// 004 reservations: submit and session answers, their errors.
	{201, `{"status_code": 201, "status_message": "OK", "message": "Reservation Submitted Successfully", "is_data": true, "data": {"customerUuid": "CSRT1358046874", "reservationUuid": "RES1943140879", "checkoutUrl": "https://stg.frontpayment.no/reservations/details/RES1943140879"}}`},
	{500, `{"status_code": 500, "status_message": "Internal Dependency Error", "message": "internalErrorOccurredPleaseTryAgainLater", "is_error": true, "errors": {"happenedAt": "String", "internalErrorDetails": "Array"}}`},
	{510, `{"status_code": 510, "status_message": "Internal Dependency Error", "message": "Payment Gateway Error(Submit Payment): Failed to Create Payment Link", "is_error": true, "errors": {"Payment Gateway Error(Submit Payment): Failed to Create Payment Link"}}`},
	{510, `{"status_code": 510, "status_message": "Internal Dependency Error", "message": "Payment Gateway Error: Failed to Create Checkout Session", "is_error": true, "errors": ["Payment Gateway Error(Submit Payment): Failed to Create Checkout Session At: PAR156"]}`},
	// 004 details: the document's type placeholders ("Boolean" for a boolean) do not decode.
	{200, `{"status_code": 200, "status_message": "OK", "message": "reservationRetrievedSuccessfully", "is_data": true, "data": {"reservationUuid": "String", "status": "String", "isPaid": "Boolean", "productList": [{"id": "Integer", "name": "String", "productId": "String", "quantity": "Float", "rate": "Float", "discount": "Float", "tax": "Integer", "amount": "Float", "reserved": "Float", "captured": "Float"}], "grandTotal": "Float", "paymentHistory": {"reserved": [{"at": "String|Timestamp", "amount": "Float"}]}}}`},
	// The same with real values, as the sandbox answers.
	{200, `{"status_code": 200, "status_message": "OK", "message": "reservationRetrievedSuccessfully", "is_data": true, "data": {"reservationUuid": "RES1943140879", "status": "RESERVED", "isPaid": true, "productList": [{"id": 298, "name": "Ski wax", "productId": "WAX-1", "quantity": 1, "rate": 300, "discount": 0, "tax": "25", "amount": 300, "reserved": 300, "captured": 0}], "grandTotal": 300, "reservationDate": 1706674723, "paymentDetails": {"reservedAt": "2024-01-31 04:18:43", "reservedAmount": "300.00", "capturedAmount": 0, "chargedAmount": 0, "amountRefunded": {"fromCaptured": 0, "fromCharge": 0}}, "paymentHistory": {"reserved": [{"at": 1706674723, "amount": 300}], "captured": [], "charged": [], "refunded": []}}}`},
	{404, `{"status_code": 404, "status_message": "Not Found", "message": "reservationNotFound", "is_data": false, "data": null}`},
	// 004 capture: 202 with its uuid, and the rejections.
	{202, `{"status_code": 202, "status_message": "OK", "message": "reservationCapturedSuccessfully", "is_data": true, "data": {"uuid": "String"}}`},
	{400, `{"status_code": 400, "status_message": "Conflict of Business Logic", "message": "requestedCaptureAmountExceedAvailableCaptureRunway", "is_data": false, "data": null}`},
	{400, `{"status_code": 400, "status_message": "Conflict of Business Logic", "message": "paymentCaptureDeadlineExceed", "is_data": false, "data": null}`},
	// 004 history.
	{200, `{"status_code": 200, "status_message": "OK", "message": "reservationRetrievedSuccessfully", "is_data": true, "data": [{"uuid": "RES3410395156", "title": "refund-sent-from-captured", "datetime": "21.01.2024 04:00", "sentTo": "", "actionBy": null, "note": null, "paymentMethod": null, "isRefundable": false, "amount": "100"}, {"uuid": "RES3410395156", "title": "refund-sent-from-charged", "datetime": "21.01.2024 04:03", "sentTo": "", "actionBy": null, "note": null, "paymentMethod": null, "isRefundable": false, "amount": "200"}]}`},
	// What proxies and broken servers answer.
	{429, `{"message": "Too Many Attempts."}`},
	{502, `<html><body>Bad Gateway</body></html>`},
	{200, ``},
	{200, `null`},
	{200, `[]`},
	{202, `{"data": 1e999999}`},
	{401, `{"message": "Unauthenticated."}`},
}

// fuzzCalls are the client calls whose answers are decoded: a read of an object, a read of an
// array, and a write whose body passes validation.
var fuzzCalls = []struct {
	name string
	call func(ctx context.Context, c *frontpay.Client) (*frontpay.Response, error)
}{
	{"details", func(ctx context.Context, c *frontpay.Client) (*frontpay.Response, error) {
		r, err := c.Details(ctx, "RES1943140879")
		return fuzzResponse(r, err)
	}},
	{"history", func(ctx context.Context, c *frontpay.Client) (*frontpay.Response, error) {
		r, err := c.History(ctx, time.Time{}, time.Time{})
		return fuzzResponse(r, err)
	}},
	{"capture", func(ctx context.Context, c *frontpay.Client) (*frontpay.Response, error) {
		r, err := c.Capture(ctx, "RES1943140879", &frontpay.CaptureRequest{
			Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: frontpay.Num("298"), Amount: frontpay.Num("5")}},
			GrandTotal: frontpay.Num("5"),
		})
		return fuzzResponse(r, err)
	}},
}

func fuzzResponse[T any](r *frontpay.Result[T], err error) (*frontpay.Response, error) {
	if r == nil {
		return nil, err
	}
	return &r.Response, err
}

// fuzzStatus maps a fuzzed number onto a final HTTP status, 200 to 599: 1xx are interim answers
// that net/http handles itself.
func fuzzStatus(n uint16) int { return 200 + int(n)%400 }

// FuzzDecodeResponse serves arbitrary bytes with an arbitrary status as the API's answer to
// Details, History and Capture, and checks that the client never panics, that every outcome is
// one of the four classes and the one the status calls for, and that no error shows the token.
func FuzzDecodeResponse(f *testing.F) {
	var (
		mu     sync.Mutex
		status int
		body   []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	client, err := frontpay.New(srv.URL, fuzzToken, frontpay.WithTimeout(5*time.Second))
	if err != nil {
		f.Fatal(err)
	}

	for _, a := range fuzzAnswers {
		// Each answer once for each call, with the status the document gives it.
		for c := range fuzzCalls {
			f.Add(uint8(c), uint16(a.status-200), []byte(a.body))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, code uint16, answer []byte) {
		call := fuzzCalls[int(which)%len(fuzzCalls)]
		st := fuzzStatus(code)
		mu.Lock()
		status, body = st, answer
		mu.Unlock()

		resp, err := call.call(t.Context(), client)
		class := frontpay.Classify(err)
		switch class {
		case frontpay.Success, frontpay.Permanent, frontpay.Retryable, frontpay.Ambiguous:
		default:
			t.Fatalf("%s: class %v is none of the four", call.name, class)
		}
		if err == nil {
			if resp == nil {
				t.Fatalf("%s: no error and no response", call.name)
			}
			if st < 200 || st > 299 || resp.HTTPStatus != st {
				t.Fatalf("%s: HTTP %d taken for a success (response status %d)", call.name, st, resp.HTTPStatus)
			}
			if !json.Valid(resp.Raw) {
				t.Fatalf("%s: success with data that is not JSON: %q", call.name, resp.Raw)
			}
			return
		}
		if resp != nil {
			t.Fatalf("%s: an error (%v) and a response", call.name, err)
		}
		var fe *frontpay.Error
		if !errors.As(err, &fe) {
			// Validation happens before sending, and the requests are valid: every failure here
			// is an answer that was read.
			t.Fatalf("%s: HTTP %d gave a %T, not a *frontpay.Error: %v", call.name, st, err, err)
		}
		if fe.HTTPStatus != st || !fe.Sent {
			t.Fatalf("%s: HTTP %d reported as HTTP %d, sent %v", call.name, st, fe.HTTPStatus, fe.Sent)
		}
		want := frontpay.Ambiguous // an unreadable 2xx, a 3xx without Location, a 5xx
		switch {
		case st == http.StatusTooManyRequests:
			want = frontpay.Retryable
		case st >= 400 && st < 500:
			want = frontpay.Permanent
		}
		if class != want {
			t.Fatalf("%s: HTTP %d classified %v, want %v (%v)", call.name, st, class, want, err)
		}
		if len(fe.Errors) > 0 && !json.Valid(fe.Errors) {
			t.Fatalf("%s: errors member is not JSON: %q", call.name, fe.Errors)
		}
		shown := fmt.Sprintf("%v %+v %#v %s", err, err, err, err.Error())
		if strings.Contains(shown, fuzzToken) || strings.Contains(shown, "FUZZ-SECRET") {
			t.Fatalf("%s: the token shows in the error: %s", call.name, shown)
		}
	})
}

// FuzzNumber checks that Number.UnmarshalJSON never panics on any input, and that a number it
// accepts has an exact value and comes back from MarshalJSON as itself: same text, same quoting.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{
		`1`, `51.00`, `"0"`, `"51.00"`, `1000.00`, `-3`, `"1e2"`, `0.10`, `null`, `0.001`, `"-0"`,
		`"abc"`, `true`, `{}`, `[]`, `""`, `"1,5"`, `"0x10"`, `" 1"`, `1e100`, `"-1e999999"`, `"+.5"`,
		`"1."`, `".5"`, `1.`, `01`, `-`, `"\u0031"`, ` 7 `, `"90071992547409.93"`, `1E+07`, `"1e-99"`,
		`"-0.5"`, `+7.05`, `"12345678901234567.8"`, `"9223372036854775807"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var n frontpay.Number
		if err := n.UnmarshalJSON(b); err != nil {
			return
		}
		// The same bytes through encoding/json agree with the direct call, where they are JSON.
		if json.Valid(b) {
			var m frontpay.Number
			if err := json.Unmarshal(b, &m); err != nil || m.String() != n.String() {
				t.Fatalf("%q: UnmarshalJSON took %q, json.Unmarshal %q (%v)", b, n.String(), m.String(), err)
			}
		}
		out, err := n.MarshalJSON()
		if err != nil {
			t.Fatalf("%q: marshal: %v", b, err)
		}
		if n.IsZero() {
			if string(out) != "null" {
				t.Fatalf("%q: absent number marshals as %s", b, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%q: marshals as %q, not JSON", b, out)
		}
		if n.Rat() == nil {
			t.Fatalf("%q: accepted as %q, which has no exact value", b, n.String())
		}
		var again frontpay.Number
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("%q: marshalled as %s, which does not read back: %v", b, out, err)
		}
		out2, _ := again.MarshalJSON()
		if again.String() != n.String() || string(out2) != string(out) || again.Cmp(n) != 0 {
			t.Fatalf("%q: %s read back as %q (%s)", b, out, again.String(), out2)
		}
		// Cents and Sign (which take a short way for plain amounts) agree with exact arithmetic.
		hundredths := new(big.Rat).Mul(n.Rat(), big.NewRat(100, 1))
		exact := hundredths.IsInt() && hundredths.Num().IsInt64()
		c, err := n.Cents()
		if (err == nil) != exact || err == nil && c != hundredths.Num().Int64() {
			t.Fatalf("%q: Cents %d, %v; exactly %s hundredths", b, c, err, hundredths.RatString())
		}
		if err == nil && frontpay.FromCents(c).Cmp(n) != 0 {
			t.Fatalf("%q: %d cents is not %s", b, c, n.String())
		}
		if n.Sign() != n.Rat().Sign() {
			t.Fatalf("%q: Sign %d, exactly %d", b, n.Sign(), n.Rat().Sign())
		}
	})
}
