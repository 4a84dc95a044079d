// Command frontpay-worker consumes Front Payment commands from NATS JetStream, calls the Front
// Payment Connect API exactly once per idempotency key and publishes result events.
//
//	frontpay-worker [run]   the worker, configured by the environment (see the README)
//	frontpay-worker dev     the worker on an embedded NATS server against an in-process sandbox
//	frontpay-worker sandbox a Front Payment sandbox (fake API) over HTTP
//	frontpay-worker demo    one reservation driven end to end, printing the events it sees
//	frontpay-worker publish wraps a payload in a command event, publishes it, prints the result
//	frontpay-worker replay  re-publishes failed commands from their failure events
//	frontpay-worker lag     each consumer's backlog; fails when a threshold is crossed
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: frontpay-worker [command] [flags]

commands:
  run       run the worker (the default), configured by the environment
  dev       run the worker on an embedded NATS server against an in-process sandbox
  sandbox   serve the Front Payment sandbox over HTTP
  demo      drive one reservation end to end through the sandbox and print the events
  publish   publish <operation> <file.json|->: wrap a payload in a command event, print the result
  replay    re-publish failed commands from their failure events (replay -h for the filters)
  lag       each consumer's pending, ack-pending, redelivered, waiting and oldest command
            (--json; --max-pending, --max-ack-pending, --max-age exit 1 when crossed)

The tools (publish, replay, lag) reach NATS through NATS_URL (default nats://127.0.0.1:4222, the
embedded server of a local worker), NATS_CREDS/NATS_NKEY/NATS_TLS_* and FRONTPAY_SUBJECT_PREFIX.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "frontpay-worker:", err)
		os.Exit(1)
	}
}

// errUsage asks for the usage text.
var errUsage = errors.New("see usage")

func run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runWorker(ctx)
	case "dev":
		err = runDev(ctx, args)
	case "sandbox":
		err = runSandbox(ctx, args)
	case "demo":
		err = runDemo(ctx, args)
	case "publish":
		err = runPublish(ctx, args, os.Stdin, os.Stdout)
	case "replay":
		err = runReplay(ctx, args, os.Stdout)
	case "lag":
		err = runLag(ctx, args, os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		err = fmt.Errorf("unknown command %q: %w", cmd, errUsage)
	}
	if errors.Is(err, errUsage) {
		fmt.Fprint(os.Stderr, usage)
	}
	return err
}

// runWorker runs the worker until ctx ends.
func runWorker(ctx context.Context) error {
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	m := NewMain(cfg, newLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel))
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	<-ctx.Done()
	return m.Close()
}
