package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/spf13/cobra"
)

func newDemoCommand() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Drive one reservation end to end through the sandbox and print the events",
		Long: `Run a worker, an embedded NATS server and a sandbox in this process, all on free ports, and drive
one reservation through them: submit, the customer pays, details, a partial capture, a partial
refund of it, complete. Every command and result event is printed, and the status events the
sandbox's callbacks lead to.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return demo(cmd.Context(), cmd.OutOrStdout(), verbose) },
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the worker's log")
	return cmd
}

// demo runs the demo, printing to out.
func demo(ctx context.Context, out io.Writer, verbose bool) error {
	dir, err := os.MkdirTemp("", "frontpay-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := discardLogger()
	if verbose {
		log = newLogger(os.Stderr, "text", "info")
	}
	sb, err := startSandbox("127.0.0.1:0", sandbox.Options{Token: sandboxToken, RateLimit: -1})
	if err != nil {
		return err
	}
	defer sb.Close()
	cfg := &Config{
		APIURL: sb.URL, APIToken: sandboxToken, APITimeout: 10 * time.Second, MaxAttempts: 3,
		RetryInitial: 100 * time.Millisecond, RetryMax: time.Second, HTTPAddr: "127.0.0.1:0", DataDir: dir,
		Concurrency: 8, AckWait: 10 * time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: 5 * time.Second, LeaseMargin: time.Second, Replicas: 1, WorkerName: "frontpay-demo",
	}
	m := NewMain(cfg, log)
	m.EmbeddedAddr = "127.0.0.1:0"
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	defer m.Close()
	d, err := newDriver(m.NATSURL, out)
	if err != nil {
		return err
	}
	defer d.close()
	return d.reservationFlow(ctx, sb.Sandbox, "http://"+m.HTTPAddr+"/callbacks/frontpay")
}

// driver publishes commands and waits for their results, printing both, and the status events
// that come meanwhile.
type driver struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	out      io.Writer
	results  chan *nats.Msg
	sub      *nats.Subscription
	statuses int
}

func newDriver(url string, out io.Writer) (*driver, error) {
	nc, js, err := connect(&NATSConfig{}, url, discardLogger())
	if err != nil {
		return nil, err
	}
	d := &driver{nc: nc, js: js, out: out, results: make(chan *nats.Msg, 64)}
	if d.sub, err = nc.ChanSubscribe(">", d.results); err != nil {
		nc.Close()
		return nil, err
	}
	return d, nil
}

func (d *driver) close() {
	_ = d.sub.Unsubscribe()
	d.nc.Close()
}

// call publishes a command and returns the data of its result event.
func (d *driver) call(ctx context.Context, op frontpay.Operation, data any) (schemas.Event, error) {
	cmd, raw, err := newCommand(op, "frontpay-demo", "", "demo", data)
	if err != nil {
		return schemas.Event{}, err
	}
	fmt.Fprintf(d.out, "→ %-28s %s\n", cmd.Type, cmd.Data)
	m := nats.NewMsg(schemas.CommandSubject("", op))
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, cmd.ID)
	if _, err := d.js.PublishMsg(ctx, m); err != nil {
		return schemas.Event{}, fmt.Errorf("publish %s: %w", op, err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case msg := <-d.results:
			var ev schemas.Event
			if json.Unmarshal(msg.Data, &ev) != nil || d.status(ev) || ev.CausationID != cmd.ID {
				continue
			}
			fmt.Fprintf(d.out, "← %-28s %s\n", ev.Type, summary(ev))
			if ev.Type != schemas.ResultSubject("", op, true) {
				return ev, fmt.Errorf("%s failed: %s", op, ev.Data)
			}
			return ev, nil
		case <-timeout:
			return schemas.Event{}, fmt.Errorf("no result for %s within 30s", op)
		case <-ctx.Done():
			return schemas.Event{}, ctx.Err()
		}
	}
}

// status prints a status event and reports whether ev was one.
func (d *driver) status(ev schemas.Event) bool {
	if !strings.HasSuffix(ev.Type, ".status.changed") {
		return false
	}
	d.statuses++
	fmt.Fprintf(d.out, "◆ %-28s %s\n", ev.Type, ev.Data)
	return true
}

// awaitStatuses waits until n status events have been printed.
func (d *driver) awaitStatuses(ctx context.Context, n int) error {
	timeout := time.After(30 * time.Second)
	for d.statuses < n {
		select {
		case msg := <-d.results:
			var ev schemas.Event
			if json.Unmarshal(msg.Data, &ev) == nil {
				d.status(ev)
			}
		case <-timeout:
			return fmt.Errorf("%d status events within 30s, want %d", d.statuses, n)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// summary shortens a result's data for printing: the failed command is left out.
func summary(ev schemas.Event) string {
	var f map[string]json.RawMessage
	if json.Unmarshal(ev.Data, &f) == nil {
		delete(f, "command")
		b, _ := json.Marshal(f)
		return string(b)
	}
	return string(ev.Data)
}

func (d *driver) reservationFlow(ctx context.Context, sb *sandbox.Sandbox, callbackURL string) error {
	due := strconv.FormatInt(time.Now().Add(72*time.Hour).Unix(), 10)
	submit := map[string]any{
		"customerDetails": map[string]any{
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "kari@example.no",
			"name": "Kari Nordmann", "preferredLanguage": "no",
			"address": map[string]any{"street": "Storgata 1", "zip": "0155", "city": "Oslo", "country": "NO"},
		},
		"orderDate": strconv.FormatInt(time.Now().Unix(), 10), "dueDateForPaymentLink": due,
		"sendOrderBy": map[string]any{"sms": false, "email": true},
		"products": map[string]any{
			"0": map[string]any{"name": "Ski wax", "productId": "WAX-1", "rate": 300, "tax": "25", "amount": 300},
			"1": map[string]any{"name": "Ski poles", "productId": "POLE-2", "rate": 700, "tax": "25", "amount": 700},
		},
		"orderSummary": map[string]any{"subTotal": 1000, "totalTax": 250, "grandTotal": 1000},
		"callback":     map[string]any{"callbackUrl": callbackURL},
	}
	ev, err := d.call(ctx, frontpay.ReservationSubmit, submit)
	if err != nil {
		return err
	}
	var submitted struct {
		Response frontpay.SubmitReservationResult `json:"response"`
	}
	if err := json.Unmarshal(ev.Data, &submitted); err != nil {
		return err
	}
	uuid := submitted.Response.ReservationUUID
	fmt.Fprintf(d.out, "· the customer pays at %s\n", submitted.Response.CheckoutURL)
	if err := sb.Pay(uuid); err != nil {
		return err
	}
	if ev, err = d.call(ctx, frontpay.ReservationDetails, map[string]any{"reservationUuid": uuid}); err != nil {
		return err
	}
	var details struct {
		Response frontpay.Reservation `json:"response"`
	}
	if err := json.Unmarshal(ev.Data, &details); err != nil {
		return err
	}
	wax := details.Response.ProductList[0].ID
	if ev, err = d.call(ctx, frontpay.ReservationCapture, map[string]any{
		"reservationUuid": uuid, "products": []any{map[string]any{"id": wax, "amount": 300}},
		"grandTotal": 300, "additionalText": "first parcel",
	}); err != nil {
		return err
	}
	var captured struct {
		Response frontpay.PaymentResult `json:"response"`
	}
	if err := json.Unmarshal(ev.Data, &captured); err != nil {
		return err
	}
	if _, err = d.call(ctx, frontpay.ReservationRefund, map[string]any{
		"reservationUuid": uuid, "type": "reservation", "grandTotal": 100,
		"products": []any{map[string]any{"id": wax, "amount": 100}},
		"source":   "captured", "reference": captured.Response.UUID,
	}); err != nil {
		return err
	}
	if _, err = d.call(ctx, frontpay.ReservationComplete, map[string]any{"reservationUuid": uuid, "note": "delivered"}); err != nil {
		return err
	}
	// Front Payment calls back for reserved and captured; the worker checks each and publishes it.
	if err := d.awaitStatuses(ctx, 2); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "· done: reservation %s captured 300.00 NOK, refunded 100.00 NOK, completed\n", uuid)
	return nil
}
