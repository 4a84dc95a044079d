package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/spf13/cobra"
)

// sandboxToken is the bearer token of a local sandbox unless one is given.
const sandboxToken = "sandbox-token"

// sandboxServer is a sandbox listening on loopback.
type sandboxServer struct {
	*sandbox.Sandbox
	URL  string
	http *http.Server
}

// startSandbox serves a sandbox on addr ("127.0.0.1:0" for any free port).
func startSandbox(addr string, opts sandbox.Options) (*sandboxServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if opts.PublicURL == "" {
		opts.PublicURL = url
	}
	s := &sandboxServer{Sandbox: sandbox.New(opts), URL: url}
	s.http = &http.Server{Handler: s.Sandbox, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// Close stops serving and waits for callbacks in flight.
func (s *sandboxServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	s.Sandbox.Close()
}

func newSandboxCommand() *cobra.Command {
	var (
		addr, secret string
		tokens       []string
		rate         int
		seed         int64
	)
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Serve the Front Payment sandbox (a fake of the Connect API) over HTTP",
		Long: `Serve the Front Payment sandbox over HTTP until SIGINT or SIGTERM: the twelve endpoints of the
Connect API, and test controls under /sandbox/ and /checkout/ (README, "The sandbox").`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Defaults from the environment are taken here, so that help never shows a secret.
			if len(tokens) == 0 {
				tokens = []string{envOr("FRONTPAY_API_TOKEN", sandboxToken)}
			}
			if secret == "" {
				secret = os.Getenv("FRONTPAY_CALLBACK_SECRET")
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano()
			}
			log := newLogger(cmd.ErrOrStderr(), envOr("FRONTPAY_LOG_FORMAT", "text"), envOr("FRONTPAY_LOG_LEVEL", "info"))
			s, err := startSandbox(addr, sandbox.Options{
				Tokens: tokens, RateLimit: rate, Seed: seed, CallbackSecret: secret, Logger: log,
			})
			if err != nil {
				return err
			}
			log.Info("sandbox serving", "url", s.URL, "rate", rate,
				"controls", s.URL+"/sandbox/ledger, PUT /sandbox/faults/{operation}, POST /sandbox/reservations/{uuid}/pay")
			<-cmd.Context().Done()
			s.Close()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8099", "address to listen on")
	f.StringArrayVar(&tokens, "token", nil, "bearer token the sandbox accepts, an account of its own; repeat for several merchants (default: FRONTPAY_API_TOKEN, else "+sandboxToken+")")
	f.IntVar(&rate, "rate", sandbox.DefaultRateLimit, "requests a minute per token; -1 turns the limit off")
	f.Int64Var(&seed, "seed", 0, "seed of fault draws and identifiers (default: the time)")
	f.StringVar(&secret, "callback-secret", "", "key of the callbacks' checksum (default: FRONTPAY_CALLBACK_SECRET)")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// discardLogger is for components whose logs would drown the demo's output.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
