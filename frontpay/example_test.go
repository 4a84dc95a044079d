package frontpay_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// The examples run against the sandbox on loopback (see start), whose fixed seed makes its
// identifiers the same on every run.

// exampleReservation is a reservation of two products, NOK 5.00 and 50.00, due a day after the
// sandbox's clock.
func exampleReservation() *frontpay.SubmitReservationRequest {
	no, yes := false, true
	products, summary := twoLines()
	return &frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "kari@example.no",
			Name: "Kari Nordmann", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "Storgata 1", Zip: "0155", City: "Oslo", Country: "NO"},
		},
		OrderDate:             strconv.FormatInt(t0.Unix(), 10),
		DueDateForPaymentLink: due,
		SendOrderBy:           &frontpay.SendOrderBy{SMS: &no, Email: &yes},
		Products:              products,
		OrderSummary:          summary,
	}
}

// captureAll captures what is still reserved of each product of a reservation, naming the
// products by the ids its details show.
func captureAll(ctx context.Context, client *frontpay.Client, uuid string) (*frontpay.Result[frontpay.PaymentResult], error) {
	details, err := client.Details(ctx, uuid)
	if err != nil {
		return nil, err
	}
	req := &frontpay.CaptureRequest{}
	var total int64
	for _, p := range details.Data.ProductList {
		req.Products = append(req.Products, frontpay.CaptureLine{ID: p.ID, Amount: p.Reserved})
		cents, err := p.Reserved.Cents()
		if err != nil {
			return nil, err
		}
		total += cents
	}
	req.GrandTotal = frontpay.FromCents(total)
	return client.Capture(ctx, uuid, req)
}

func ExampleClient_SubmitReservation() {
	w := start()
	defer w.close()
	client := w.client()

	res, err := client.SubmitReservation(context.Background(), exampleReservation())
	if err != nil {
		fmt.Println(frontpay.Classify(err), err)
		return
	}
	fmt.Println(res.HTTPStatus, res.Message)
	fmt.Println("reservation", res.Data.ReservationUUID)
	fmt.Println("checkout", strings.TrimPrefix(res.Data.CheckoutURL, w.srv.URL))
	// Output:
	// 201 Reservation Submitted Successfully
	// reservation RES3520383943
	// checkout /checkout/RES3520383943
}

func ExampleClient_Capture() {
	w := start()
	defer w.close()
	client := w.client()
	ctx := context.Background()
	uuid, err := w.reserve(client, exampleReservation()) // submitted, and paid by the customer
	if err != nil {
		fmt.Println(err)
		return
	}

	res, err := captureAll(ctx, client, uuid)
	if err != nil {
		fmt.Println(frontpay.Classify(err), err)
		return
	}
	fmt.Println(res.HTTPStatus, res.Message, res.Data.UUID)

	details, err := client.Details(ctx, uuid)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range details.Data.ProductList {
		fmt.Println("product", p.ID, p.Name, "captured", p.Captured)
	}
	fmt.Println(details.Data.Status, details.Data.PaymentDetails.CapturedAmount)
	// Output:
	// 202 reservationCapturedSuccessfully CAP2517692160
	// product 298 Wash captured 5.00
	// product 299 Cut captured 50.00
	// CAPTURED 55.00
}

func ExampleClient_Refund() {
	w := start()
	defer w.close()
	client := w.client()
	ctx := context.Background()
	uuid, err := w.reserve(client, exampleReservation())
	if err != nil {
		fmt.Println(err)
		return
	}
	capture, err := captureAll(ctx, client, uuid)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Return 15.00 of product 299 ("Cut") from that capture.
	res, err := client.Refund(ctx, uuid, &frontpay.RefundRequest{
		Type:       "reservation",
		GrandTotal: frontpay.Num("15"),
		Products:   []frontpay.CaptureLine{{ID: frontpay.Num("299"), Amount: frontpay.Num("15")}},
		Source:     "captured",
		Reference:  capture.Data.UUID,
	})
	if err != nil {
		fmt.Println(frontpay.Classify(err), err)
		return
	}
	fmt.Println(res.HTTPStatus, res.Message)

	details, err := client.Details(ctx, uuid)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range details.Data.PaymentHistory.Refunded {
		fmt.Println("refunded", r.Amount, "of", r.Reference, "partial:", r.IsPartial)
	}
	fmt.Println("from captured", details.Data.PaymentDetails.AmountRefunded.FromCaptured)
	// Output:
	// 202 orderRefundedSuccessfully
	// refunded 15.00 of CAP2517692160 partial: true
	// from captured 15.00
}

func ExampleClient_Do() {
	w := start()
	defer w.close()
	client := w.client()
	ctx := context.Background()
	uuid, err := w.reserve(client, exampleReservation())
	if err != nil {
		fmt.Println(err)
		return
	}

	// A dispatcher holds an Operation and the path values; Do is the path every method takes.
	op := frontpay.Operation("reservation.details")
	res, err := client.Do(ctx, op, []string{uuid}, nil)
	if err != nil {
		fmt.Println(frontpay.Classify(err), err)
		return
	}
	var details frontpay.Reservation
	if err := res.Decode(&details); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(op.Endpoint().Method, op.Recovery() == frontpay.Resend, res.HTTPStatus, res.Message)
	fmt.Println(details.Status, details.PaymentDetails.ReservedAmount)
	// Output:
	// GET true 200 reservationRetrievedSuccessfully
	// RESERVED 55.00
}

func ExampleClassify() {
	w := start()
	defer w.close()
	client := w.client()
	ctx := context.Background()
	res, err := client.SubmitReservation(ctx, exampleReservation())
	if err != nil {
		fmt.Println(err)
		return
	}
	uuid := res.Data.ReservationUUID
	show := func(what string, err error) {
		var fe *frontpay.Error
		if errors.As(err, &fe) && fe.HTTPStatus > 0 {
			fmt.Printf("%s: %s (HTTP %d %s)\n", what, frontpay.Classify(err), fe.HTTPStatus, fe.Message)
			return
		}
		fmt.Printf("%s: %s\n", what, frontpay.Classify(err))
	}

	// Refused before sending: the request breaks a documented rule.
	_, err = client.Cancel(ctx, uuid, &frontpay.NoteRequest{})
	show("cancel without a note", err)

	// Refused by the API: the customer has not paid, so nothing can be captured yet.
	first := &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: frontpay.Num("298"), Amount: frontpay.Num("5")}},
		GrandTotal: frontpay.Num("5"),
	}
	_, err = client.Capture(ctx, uuid, first)
	show("capture before payment", err)

	// A 5xx: the capture may or may not have happened; read the reservation back before sending
	// it again.
	if err := w.sb.Pay(uuid); err != nil {
		fmt.Println(err)
		return
	}
	w.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{ErrorShare: 1, Times: 1})
	_, err = captureAll(ctx, client, uuid)
	show("capture", err)

	_, err = client.Details(ctx, uuid)
	show("details", err)

	// Too many requests: nothing was done, send again after fe.RetryAfter. (The client pauses
	// every call of its own for it, so this comes last: the example need not wait.)
	w.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{TooManyShare: 1, Times: 1})
	_, err = client.Details(ctx, uuid)
	show("details again", err)
	// Output:
	// cancel without a note: permanent
	// capture before payment: permanent (HTTP 400 requestedCaptureAmountExceedAvailableCaptureRunway)
	// capture: ambiguous (HTTP 503 internalErrorOccurredPleaseTryAgainLater)
	// details: success
	// details again: retryable (HTTP 429 tooManyAttempts)
}
