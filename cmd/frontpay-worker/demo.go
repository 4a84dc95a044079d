package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
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
	cfg := &app.Config{
		APIURL: sb.URL, APIToken: sandboxToken, APITimeout: 10 * time.Second, MaxAttempts: 3,
		RetryInitial: 100 * time.Millisecond, RetryMax: time.Second, HTTPAddr: "127.0.0.1:0", DataDir: dir,
		Concurrency: 8, AckWait: 10 * time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: 5 * time.Second, LeaseMargin: time.Second, Replicas: 1, WorkerName: "frontpay-demo",
	}
	m := app.NewMain(cfg, log)
	m.EmbeddedAddr = "127.0.0.1:0"
	if err := m.Run(ctx); err != nil {
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

// driver publishes commands through the client package and waits for their results, printing
// both, and the status events that come meanwhile.
type driver struct {
	nc       *nats.Conn
	c        *client.Client
	out      io.Writer
	statuses chan *nats.Msg
	sub      *nats.Subscription
	seen     int // status events printed
}

func newDriver(url string, out io.Writer) (*driver, error) {
	nc, _, err := app.Connect(&app.NATSConfig{}, url, discardLogger())
	if err != nil {
		return nil, err
	}
	d := &driver{nc: nc, out: out, statuses: make(chan *nats.Msg, 64)}
	if d.sub, err = nc.ChanSubscribe(schemas.StatusSubject("", "*"), d.statuses); err != nil {
		nc.Close()
		return nil, err
	}
	if d.c, err = client.New(nc); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *driver) close() {
	if d.c != nil {
		d.c.Close()
	}
	_ = d.sub.Unsubscribe()
	d.nc.Close()
}

// demoCommand is the options of the demo's commands.
var demoCommand = []client.CommandOption{client.Source("frontpay-demo"), client.Correlation("demo")}

// call publishes a command and returns its result, printing the status events that come while it
// waits.
func (d *driver) call(ctx context.Context, cmd *client.Command) (*client.Result, error) {
	ev := cmd.Event()
	fmt.Fprintf(d.out, "→ %-28s %s\n", ev.Type, ev.Data)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.c.Publish(ctx, cmd); err != nil {
		return nil, err
	}
	type outcome struct {
		res *client.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := d.c.Await(ctx, cmd.ID())
		done <- outcome{res, err}
	}()
	for {
		select {
		case m := <-d.statuses:
			d.status(m)
		case o := <-done:
			var failure *client.Failure
			switch {
			case errors.As(o.err, &failure):
				fmt.Fprintf(d.out, "← %-28s %s\n", failure.Event.Type, summary(failure.Event))
				return nil, fmt.Errorf("%s failed: %s", cmd.Op(), failure.Event.Data)
			case errors.Is(o.err, context.DeadlineExceeded):
				return nil, fmt.Errorf("no result for %s within 30s", cmd.Op())
			case o.err != nil:
				return nil, o.err
			}
			fmt.Fprintf(d.out, "← %-28s %s\n", o.res.Event.Type, summary(o.res.Event))
			return o.res, nil
		}
	}
}

// status prints a status event.
func (d *driver) status(m *nats.Msg) {
	var ev schemas.Event
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	d.seen++
	fmt.Fprintf(d.out, "◆ %-28s %s\n", ev.Type, ev.Data)
}

// awaitStatuses waits until n status events have been printed.
func (d *driver) awaitStatuses(ctx context.Context, n int) error {
	timeout := time.After(30 * time.Second)
	for d.seen < n {
		select {
		case m := <-d.statuses:
			d.status(m)
		case <-timeout:
			return fmt.Errorf("%d status events within 30s, want %d", d.seen, n)
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
	// call takes what a builder of the client returns.
	call := func(cmd *client.Command, err error) (*client.Result, error) {
		if err != nil {
			return nil, err
		}
		return d.call(ctx, cmd)
	}
	res, err := call(client.SubmitReservation(exampleSubmit(callbackURL), demoCommand...))
	if err != nil {
		return err
	}
	submitted := res.Value.(*frontpay.SubmitReservationResult)
	uuid := submitted.ReservationUUID
	fmt.Fprintf(d.out, "· the customer pays at %s\n", submitted.CheckoutURL)
	if err := sb.Pay(uuid); err != nil {
		return err
	}
	if res, err = call(client.Details(uuid, demoCommand...)); err != nil {
		return err
	}
	wax := res.Value.(*frontpay.Reservation).ProductList[0].ID
	note := "first parcel"
	if res, err = call(client.Capture(uuid, &frontpay.CaptureRequest{
		Products: frontpay.Lines[frontpay.CaptureLine]{{ID: wax, Amount: frontpay.Num("300")}}, GrandTotal: frontpay.Num("300"),
		AdditionalText: &note,
	}, demoCommand...)); err != nil {
		return err
	}
	if _, err = call(client.Refund(uuid, &frontpay.RefundRequest{
		Type: "reservation", GrandTotal: frontpay.Num("100"), Products: []frontpay.CaptureLine{{ID: wax, Amount: frontpay.Num("100")}},
		Source: "captured", Reference: res.Value.(*frontpay.PaymentResult).UUID,
	}, demoCommand...)); err != nil {
		return err
	}
	if _, err = call(client.Complete(uuid, &frontpay.NoteRequest{Note: "delivered"}, demoCommand...)); err != nil {
		return err
	}
	// Front Payment calls back for reserved and captured; the worker checks each and publishes it.
	if err := d.awaitStatuses(ctx, 2); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "· done: reservation %s captured 300.00 NOK, refunded 100.00 NOK, completed\n", uuid)
	return nil
}
