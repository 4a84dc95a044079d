package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/spf13/cobra"
)

// forgetOptions are the flags of forget.
type forgetOptions struct {
	reservations, orders, keys []string
	merchant                   string
	dryRun, yes                bool
}

func newForgetCommand(set settings) *cobra.Command {
	var o forgetOptions
	cmd := &cobra.Command{
		Use:   "forget",
		Short: "Erase what the worker stored about a reservation or an order (personal data)",
		Long: `Erase what the worker stored about a reservation or an order (README, "Personal data"): the
commands, result events, status events and dead letters that concern it are deleted from their
streams (securely: the server overwrites them), and the idempotency records of its commands are
scrubbed. A record keeps what money safety needs (its state, operation, fingerprint and the id
of its result event) and loses the command, errors and API response its result event carried:
a later duplicate of a forgotten command still gets a result event with the same id, without
the personal data, and no API call.

The reservation's submit or session is found through its result, which names the reservation.
An order.create's result names no order: name its idempotency key with --key (and, with several
merchants, the merchant with --merchant: each merchant has its own keys).

Commands the worker has not answered yet, and records of commands still being worked on, are
kept (exit code 1): run forget again once they are answered. Like replay, forget lists what it
would erase and asks on the terminal; where standard input is not a terminal it erases only
with --yes, and otherwise refuses (exit code 2); --dry-run needs no confirmation.

` + toolsEnv,
		Example: `  frontpay-worker forget --reservation RES1943140879 --dry-run
  frontpay-worker forget --reservation RES1943140879 --yes
  frontpay-worker forget --order ODR0000000042 --key shop1:order-88412:create --yes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runForget(cmd.Context(), o, set, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.reservations, "reservation", nil, "the UUID of a reservation to forget (repeatable)")
	f.StringArrayVar(&o.orders, "order", nil, "the UUID of an order to forget (repeatable)")
	f.StringArrayVar(&o.keys, "key", nil, "an idempotency key whose commands to forget too, e.g. an order.create's (repeatable)")
	f.StringVar(&o.merchant, "merchant", "", "with several merchants (FRONTPAY_MERCHANTS_FILE): whose idempotency keys --key names")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be erased, erase nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "erase without asking")
	return cmd
}

// runForget erases what the worker stored about the reservations, orders and keys named.
func runForget(ctx context.Context, o forgetOptions, set settings, stdin io.Reader, out, errOut io.Writer) error {
	target := consumer.ForgetTarget{Reservations: o.reservations, Orders: o.orders, Keys: o.keys, Merchant: o.merchant}
	if len(o.reservations)+len(o.orders)+len(o.keys) == 0 {
		return usagef("forget needs what to forget: --reservation, --order or --key")
	}
	for _, u := range o.reservations {
		if err := frontpay.ValidateUUID("reservation", u); err != nil {
			return usagef("--reservation: %w", err)
		}
	}
	for _, u := range o.orders {
		if err := frontpay.ValidateUUID("order", u); err != nil {
			return usagef("--order: %w", err)
		}
	}
	for _, k := range o.keys {
		if k == "" {
			return usagef("--key: an idempotency key is not empty")
		}
	}
	if !o.dryRun && !o.yes && !set.interactive {
		return usagef("forget erases for good: confirm with --yes (standard input is not a terminal to ask on), or list what it would erase with --dry-run")
	}
	t, err := openTool(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	switch {
	case o.merchant != "" && !t.topo.Merchants:
		return usagef("--merchant: FRONTPAY_MERCHANTS_FILE is not set: this deployment has one merchant")
	case len(o.keys) > 0 && o.merchant == "" && t.topo.Merchants:
		return usagef("--key: with several merchants, name whose key it is with --merchant")
	}

	lastReport := time.Now()
	progress := func(stream string, read, total uint64) {
		if time.Since(lastReport) < set.progressEvery {
			return
		}
		lastReport = time.Now()
		fmt.Fprintf(errOut, "forget: read %d of about %d messages of %s\n", read, total, stream)
	}
	plan, err := consumer.PlanForget(ctx, t.js, t.topo, target, progress)
	if err != nil {
		return natsFailure(err)
	}
	var messages, records int
	for _, it := range plan.Items {
		switch {
		case it.Kept != "":
		case it.Record:
			records++
		default:
			messages++
		}
	}
	list := func() {
		for _, it := range plan.Items {
			switch {
			case it.Kept != "":
				forgetLine(out, "keep", it, it.Kept)
			case it.Record:
				forgetLine(out, "would scrub", it, "")
			default:
				forgetLine(out, "would erase", it, "")
			}
		}
	}
	kept := plan.Kept()
	switch {
	case messages+records == 0:
		list()
		fmt.Fprintln(out, "nothing to erase")
		return keptError(kept)
	case o.dryRun:
		list()
		fmt.Fprintf(out, "would erase %d message(s) and scrub %d record(s); %d kept\n", messages, records, kept)
		return keptError(kept)
	case !o.yes:
		list()
		ok, err := confirm(stdin, errOut, fmt.Sprintf("Erase these %d message(s) and scrub %d record(s), for good?", messages, records))
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(out, "not confirmed: nothing erased")
			return nil
		}
	}
	var erased, scrubbed int
	err = plan.Apply(ctx, t.js, func(it consumer.ForgetItem, o consumer.ForgetOutcome) {
		switch o {
		case consumer.ForgetBusy:
			kept++
			forgetLine(out, "keep", it, "its command is being worked on")
			return
		case consumer.ForgetErased:
			erased++
		case consumer.ForgetScrubbed:
			scrubbed++
		}
		forgetLine(out, string(o), it, "")
	})
	for _, it := range plan.Items {
		if it.Kept != "" {
			forgetLine(out, "keep", it, it.Kept)
		}
	}
	fmt.Fprintf(out, "erased %d message(s) and scrubbed %d record(s); %d kept\n", erased, scrubbed, kept)
	if err != nil {
		return natsFailure(err)
	}
	return keptError(kept)
}

// forgetLine prints what forget does (verb) with an item, and why where it says.
func forgetLine(w io.Writer, verb string, it consumer.ForgetItem, why string) {
	var b strings.Builder
	if it.Record {
		fmt.Fprintf(&b, "%s %s record %s (%s)", verb, it.Stream, it.Subject, it.What)
	} else {
		fmt.Fprintf(&b, "%s %s seq=%d %s", verb, it.Stream, it.Seq, it.Subject)
	}
	if why != "" {
		b.WriteString(": " + why)
	}
	fmt.Fprintln(w, b.String())
}

// keptError is forget's answer when the worker still needs some of what it found (exit code 1).
func keptError(kept int) error {
	if kept == 0 {
		return nil
	}
	return checkFailed(fmt.Errorf("%d item(s) kept, still needed by the worker: run forget again once their commands are answered", kept))
}
