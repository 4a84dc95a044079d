// Command frontpay-worker consumes Front Payment commands from NATS JetStream, calls the Front
// Payment Connect API exactly once per idempotency key and publishes result events.
//
//	frontpay-worker [run]      the worker, configured by the environment (see the README)
//	frontpay-worker dev        the worker on an embedded NATS server against an in-process sandbox
//	frontpay-worker sandbox    a Front Payment sandbox (fake API) over HTTP
//	frontpay-worker demo       one reservation driven end to end, printing the events it sees
//	frontpay-worker publish    wraps a payload in a command event, publishes it, prints the result
//	frontpay-worker replay     re-publishes failed commands from their failure events
//	frontpay-worker lag        each consumer's backlog; fails when a threshold is crossed
//	frontpay-worker forget     erases what is stored about a reservation or an order
//	frontpay-worker version    the build: version, commit, Go version
//	frontpay-worker completion a shell completion script
//
// `frontpay-worker <command> --help` tells each command's flags; the exit codes are in cli.go.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, newRoot(settings{interactive: isTerminal(os.Stdin), progressEvery: time.Second}), os.Args[1:])
	stop()
	os.Exit(code)
}

// toolsEnv is the part of every tool's help that says how it finds NATS.
const toolsEnv = `The tools (publish, replay, lag, forget) reach NATS through NATS_URL (default ` + defaultNATSURL + `, the
embedded server of a local worker), NATS_CREDS/NATS_NKEY/NATS_TLS_*, FRONTPAY_SUBJECT_PREFIX and, with several merchants,
FRONTPAY_MERCHANTS_FILE (set: the subjects name the merchant). They give up at once, with exit code 3, when NATS or its JetStream does not answer.`

// settings are what the commands take from the process rather than from the command line.
type settings struct {
	interactive   bool          // standard input is a terminal: replay and forget ask before they act
	progressEvery time.Duration // how often replay and forget report their progress while they read streams
}

// newRoot builds the command line.
func newRoot(set settings) *cobra.Command {
	root := &cobra.Command{
		Use:   "frontpay-worker",
		Short: "Front Payment commands from NATS JetStream to the Connect API, at most once per key",
		Long: `frontpay-worker consumes Front Payment commands (CloudEvents) from NATS JetStream, calls the
Front Payment Connect API at most once per idempotency key and publishes one result event per
command. Without a command it runs the worker, as "run" does.

` + toolsEnv + `

Exit codes:
` + exitCodesHelp,
		Args:              noArgs,
		RunE:              func(cmd *cobra.Command, _ []string) error { return runWorker(cmd.Context(), cmd.ErrOrStderr()) },
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SuggestionsMinimumDistance = 2
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.SetHelpCommand(newHelpCommand())
	root.AddCommand(
		&cobra.Command{
			Use:   "run",
			Short: "Run the worker (the default), configured by the environment",
			Long: `Run the worker until SIGINT or SIGTERM, configured by the environment (README, "Configuration").
With NATS_URL empty it starts an embedded NATS server with its store under FRONTPAY_DATA_DIR:
for development only.`,
			Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runWorker(cmd.Context(), cmd.ErrOrStderr()) },
		},
		newDevCommand(),
		newSandboxCommand(),
		newDemoCommand(),
		newPublishCommand(),
		newReplayCommand(set),
		newLagCommand(),
		newForgetCommand(set),
		newVersionCommand(),
		newCompletionCommand(),
	)
	return root
}

// runWorker runs the worker until ctx ends, logging to w.
func runWorker(ctx context.Context, w io.Writer) error {
	cfg, err := app.LoadConfig()
	if err != nil {
		return usageError(err)
	}
	log := newLogger(w, cfg.LogFormat, cfg.LogLevel)
	if cfg.NATSURL == "" {
		log.Warn("NATS_URL is empty: running an embedded NATS server, which is for development only; "+
			"its streams and idempotency records live in FRONTPAY_DATA_DIR, and a pod whose disk is ephemeral loses them "+
			"(and with them the once-per-key guarantee) when it restarts", "dir", cfg.DataDir)
	}
	m := app.NewMain(cfg, log)
	if err := m.Run(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}
