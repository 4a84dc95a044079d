package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/spf13/cobra"
)

// devReservation is the reservation a dev sandbox holds from the start, RESERVED, so that the
// README's first commands have something to read and capture. Its lines are the sandbox's first,
// 298 (300.00) and 299 (700.00).
const devReservation = "RES0000000001"

func newDevCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the worker on an embedded NATS server against an in-process sandbox",
		Long: `Run the worker for development, with nothing to install or configure: an embedded NATS server
on 127.0.0.1:4222 (data under FRONTPAY_DATA_DIR, default ./data), a Front Payment sandbox in the
same process (token sandbox-token unless FRONTPAY_API_TOKEN is set), and the HTTP server on
FRONTPAY_HTTP_ADDR (default 127.0.0.1:8080). The sandbox holds reservation ` + devReservation + `,
paid and ready to capture (lines 298 of 300.00 NOK and 299 of 700.00 NOK); every start of dev
begins a new sandbox, so it is back to that state.`,
		Example: `  frontpay-worker dev
  echo '{"reservationUuid":"` + devReservation + `"}' | frontpay-worker publish reservation.details -`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), addr, cmd.ErrOrStderr()) },
	}
	cmd.Flags().StringVar(&addr, "sandbox-addr", "127.0.0.1:8099", "address of the in-process sandbox")
	return cmd
}

// runDev runs the worker on an embedded NATS server against a sandbox in the same process: the
// README's quick start. Its log goes to w.
func runDev(ctx context.Context, addr string, w io.Writer) error {
	setDefault("FRONTPAY_API_TOKEN", sandboxToken)
	cfg, err := app.LoadConfig()
	if err != nil {
		return usageError(err)
	}
	log := newLogger(w, cfg.LogFormat, cfg.LogLevel)
	sb, err := startSandbox(addr, sandbox.Options{Token: string(cfg.APIToken), Logger: log.With("component", "sandbox")})
	if err != nil {
		return err
	}
	defer sb.Close()
	own := os.Getenv("FRONTPAY_API_URL") == ""
	if own {
		cfg.APIURL = sb.URL
	}
	log.Info("sandbox serving", "url", sb.URL, "token", "see FRONTPAY_API_TOKEN (default "+sandboxToken+")")
	m := app.NewMain(cfg, log)
	if err := m.Run(ctx); err != nil {
		return err
	}
	if own {
		// Seeded once the worker serves, so that the reservation's callback finds it.
		if err := sb.Reserve(devReservation, exampleSubmit("http://"+m.HTTPAddr+"/callbacks/frontpay")); err != nil {
			_ = m.Close()
			return err
		}
		log.Info("sandbox reservation ready to capture", "reservationUuid", devReservation, "status", sandbox.StatusReserved,
			"lines", "298 (300.00 NOK), 299 (700.00 NOK)",
			"try", `echo '{"reservationUuid":"`+devReservation+`"}' | go run ./cmd/frontpay-worker publish reservation.details -`)
	}
	<-ctx.Done()
	return m.Close()
}

// exampleSubmit is the submit of the dev sandbox's reservation, and of the demo's: two lines,
// 1,000.00 NOK, the customer's payment link due in three days.
func exampleSubmit(callbackURL string) *frontpay.SubmitReservationRequest {
	now := time.Now()
	no := false
	yes := true
	return &frontpay.SubmitReservationRequest{
		CustomerDetails: &frontpay.Customer{
			Type: "private", CountryCode: "+47", MSISDN: "46567468", Email: "kari@example.no",
			Name: "Kari Nordmann", PreferredLanguage: "no",
			Address: &frontpay.Address{Street: "Storgata 1", Zip: "0155", City: "Oslo", Country: "NO"},
		},
		OrderDate:             strconv.FormatInt(now.Unix(), 10),
		DueDateForPaymentLink: strconv.FormatInt(now.Add(72*time.Hour).Unix(), 10),
		SendOrderBy:           &frontpay.SendOrderBy{SMS: &no, Email: &yes},
		Products: frontpay.Lines[frontpay.ReservationProduct]{
			{Name: "Ski wax", Rate: frontpay.Num("300"), Tax: frontpay.Str("25"), Amount: frontpay.Num("300")},
			{Name: "Ski poles", Rate: frontpay.Num("700"), Tax: frontpay.Str("25"), Amount: frontpay.Num("700")},
		},
		OrderSummary: &frontpay.ReservationSummary{SubTotal: frontpay.Num("800"), TotalTax: frontpay.Num("200"), GrandTotal: frontpay.Num("1000")},
		Callback:     &frontpay.Callback{CallbackURL: callbackURL},
	}
}

// setDefault sets an environment variable that is not set, for dev runs only.
func setDefault(name, value string) {
	if os.Getenv(name) == "" && os.Getenv(name+"_FILE") == "" {
		_ = os.Setenv(name, value)
	}
}
