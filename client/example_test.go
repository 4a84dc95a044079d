package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// A shop submits a reservation, the customer pays, and the shop captures part of it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A reservation of one 100 NOK line; the customer gets the payment link by e-mail. The keys
	// come from the shop's own order number, so a retry publishes the same keys.
	order := newOrderNumber()
	yes, no := true, false
	submit, err := client.SubmitReservation(&frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "kari@example.no",
			Name: "Kari Nordmann", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "Storgata 1", Zip: "0155", City: "Oslo", Country: "NO"},
		},
		OrderDate:             strconv.FormatInt(time.Now().Unix(), 10),
		DueDateForPaymentLink: strconv.FormatInt(time.Now().Add(72*time.Hour).Unix(), 10),
		SendOrderBy:           &frontpay.SendOrderBy{SMS: &no, Email: &yes},
		Products: frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Ski wax", Rate: frontpay.Num("100"), Tax: frontpay.Num("25"), Amount: frontpay.Num("100")},
		},
		OrderSummary: &frontpay.ReservationSummary{SubTotal: frontpay.Num("100"), TotalTax: frontpay.Num("25"), GrandTotal: frontpay.Num("100")},
	}, client.Key("submit-"+order), client.Correlation(order))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Publish(ctx, submit); err != nil {
		log.Fatal(err)
	}
	res, err := c.Await(ctx, submit.ID())
	if err != nil {
		log.Fatal(err)
	}
	reservation := res.Value.(*frontpay.SubmitReservationResult).ReservationUUID
	fmt.Println("submitted:", res.HTTPStatus, res.Message)

	customerPays(reservation) // here the sandbox's customer pays at the link

	// The reservation's lines carry the ids that a capture names.
	details, err := client.Details(reservation, client.Correlation(order))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Publish(ctx, details); err != nil {
		log.Fatal(err)
	}
	if res, err = c.Await(ctx, details.ID()); err != nil {
		log.Fatal(err)
	}
	line := res.Value.(*frontpay.Reservation).ProductList[0].ID

	capture, err := client.Capture(reservation, &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("60")}},
		GrandTotal: frontpay.Num("60"),
	}, client.Key("capture-"+order+"-1"), client.Correlation(order))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Publish(ctx, capture); err != nil {
		log.Fatal(err)
	}
	if res, err = c.Await(ctx, capture.ID()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("captured:", res.HTTPStatus, res.Message, res.Value.(*frontpay.PaymentResult).UUID != "")
	// Output:
	// submitted: 201 Reservation Submitted Successfully
	// captured: 202 reservationCapturedSuccessfully true
}

// A failed command is a *client.Failure: here Front Payment refuses to capture more than was
// reserved.
func ExampleFailure() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	reservation, line := paidReservation() // a paid reservation of one 100 NOK line
	capture, err := client.Capture(reservation, &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("150")}},
		GrandTotal: frontpay.Num("150"),
	}, client.Key("capture-"+reservation+"-1"))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Publish(ctx, capture); err != nil {
		log.Fatal(err)
	}
	_, err = c.Await(ctx, capture.ID())
	var failure *client.Failure
	if errors.As(err, &failure) {
		fmt.Println(failure.Reason, failure.Retryable, failure.HTTPStatus, failure.Message, failure.Attempts)
	}
	// Output:
	// business_rule false 400 requestedCaptureAmountExceedAvailableCaptureRunway 1
}

// A builder refuses what the worker would refuse, with the worker's own error.
func ExampleCapture() {
	_, err := client.Capture("RES1943140879", &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: frontpay.Num("298"), Amount: frontpay.Num("5")}},
		GrandTotal: frontpay.Num("50"),
	})
	var invalid *schemas.InvalidError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Println(f.Field, f.Rule)
		}
	}
	// Output:
	// data.grandTotal sum
}

// With several merchants in one deployment, each merchant's commands and results have subjects
// of their own.
func ExampleWithMerchant() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithPrefix("acme."), client.WithMerchant("shop1"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	details, err := client.Details("RES1943140879")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Subject(details))
	// Output:
	// acme.shop1.reservation.details.requested
}

var orders atomic.Int64

// newOrderNumber stands for the shop's own order number.
func newOrderNumber() string {
	return fmt.Sprintf("order-%d-%d", time.Now().UnixNano(), orders.Add(1))
}

// customerPays has the sandbox's customer pay a reservation.
func customerPays(reservation string) {
	if err := api.Pay(reservation); err != nil {
		log.Fatal(err)
	}
}

// paidReservation submits a reservation of one 100 NOK line straight to the sandbox, has the
// customer pay it, and returns it and its line's id.
func paidReservation() (string, frontpay.Number) {
	ctx := context.Background()
	fp, err := frontpay.New(apiURL, token)
	if err != nil {
		log.Fatal(err)
	}
	yes, no := true, false
	res, err := fp.SubmitReservation(ctx, &frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "a@example.no", Name: "A", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "S 1", Zip: "0150", City: "Oslo", Country: "NO"},
		},
		OrderDate:             strconv.FormatInt(time.Now().Unix(), 10),
		DueDateForPaymentLink: strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
		SendOrderBy:           &frontpay.SendOrderBy{SMS: &no, Email: &yes},
		Products:              frontpay.Lines[frontpay.ReservationProduct]{{Name: "Wax", Rate: frontpay.Num("100"), Tax: frontpay.Num("25"), Amount: frontpay.Num("100")}},
		OrderSummary:          &frontpay.ReservationSummary{SubTotal: frontpay.Num("100"), TotalTax: frontpay.Num("25"), GrandTotal: frontpay.Num("100")},
	})
	if err != nil {
		log.Fatal(err)
	}
	uuid := res.Data.ReservationUUID
	customerPays(uuid)
	d, err := fp.Details(ctx, uuid)
	if err != nil {
		log.Fatal(err)
	}
	return uuid, d.Data.ProductList[0].ID
}
