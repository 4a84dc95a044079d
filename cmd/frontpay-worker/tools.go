package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/spf13/cobra"
)

// defaultNATSURL is where the tools look when NATS_URL is empty: the embedded server of a local
// worker.
const defaultNATSURL = "nats://127.0.0.1:4222"

// toolTimeout bounds how long a tool waits for NATS, and for its JetStream, to answer at start.
const toolTimeout = 5 * time.Second

// tool is a connection of an operator's command to the worker's NATS.
type tool struct {
	cfg  *app.NATSConfig
	nc   *nats.Conn
	js   jetstream.JetStream
	topo consumer.Topology
}

// openTool connects an operator's tool to NATS. Unlike the worker, which retries for ever, a tool
// gives up at once when NATS or its JetStream does not answer (exit code 3).
func openTool(ctx context.Context) (*tool, error) {
	cfg, err := app.LoadNATSConfig()
	if err != nil {
		return nil, usageError(err)
	}
	url := cfg.NATSURL
	if url == "" {
		url = defaultNATSURL
	}
	nc, js, err := app.Connect(cfg, url, discardLogger(), nats.RetryOnFailedConnect(false), nats.Timeout(toolTimeout))
	if err != nil {
		return nil, unreachable(fmt.Errorf("NATS at %s: %w (is it running? NATS_URL names the servers)", redactURLs(url), err))
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, unreachable(fmt.Errorf("NATS at %s answers, but its JetStream does not: %w", nc.ConnectedUrlRedacted(), err))
	}
	return &tool{cfg: cfg, nc: nc, js: js, topo: consumer.Topology{Prefix: cfg.SubjectPrefix, Merchants: cfg.MerchantsFile != ""}}, nil
}

func (t *tool) close() { t.nc.Close() }

// natsFailure gives err the exit code of an unreachable NATS where it says that NATS went away
// or did not answer.
func natsFailure(err error) error {
	for _, e := range []error{nats.ErrConnectionClosed, nats.ErrNoServers, nats.ErrTimeout, nats.ErrNoResponders,
		nats.ErrDisconnected, jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return unreachable(err)
		}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w (has a worker started against this NATS, with this FRONTPAY_SUBJECT_PREFIX?)", err)
	}
	return err
}

// redactURLs hides the passwords of a comma-separated list of NATS URLs.
func redactURLs(urls string) string {
	var out []string
	for _, s := range strings.Split(urls, ",") {
		s = strings.TrimSpace(s)
		if u, err := neturl.Parse(s); err == nil {
			s = u.Redacted()
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// operationNames lists the operations, for help texts and completion.
func operationNames() []string {
	names := make([]string, 0, 12)
	for _, o := range frontpay.Operations() {
		names = append(names, string(o))
	}
	return names
}

// wrap breaks text into lines of at most width characters, at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		if i > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// parseOp checks an operation name given on the command line.
func parseOp(s string) (frontpay.Operation, error) {
	op := frontpay.Operation(s)
	if !op.Valid() {
		return "", usagef("unknown operation %q; one of %s", s, strings.Join(operationNames(), ", "))
	}
	return op, nil
}

// parseWhen reads a time as RFC 3339 or as a duration before now ("24h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration like 24h nor an RFC 3339 time", s)
	}
	return t, nil
}

// completeOperations completes the operation names.
func completeOperations(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return operationNames(), cobra.ShellCompDirectiveNoFileComp
}

// publishOptions are the flags of publish.
type publishOptions struct {
	key, correlation, source string
	wait                     time.Duration
}

func newPublishCommand() *cobra.Command {
	var o publishOptions
	cmd := &cobra.Command{
		Use:   "publish <operation> <file.json|->",
		Short: "Wrap a payload in a command event, publish it and print its result event",
		Long: `Wrap a JSON payload (the command's data, from a file or - for standard input) in a command event
of the operation, check it as the worker would, publish it and print the result event.

The operations:
` + wrap(strings.Join(operationNames(), ", "), 96) + `.

Exit code 0 when the command succeeded, 1 when it failed (the failure event is printed), 2 when
the payload is not a valid command (nothing is published), 3 when NATS is unreachable, 4 when no
result came within --wait.

` + toolsEnv,
		Example: `  echo '{"reservationUuid":"` + devReservation + `"}' | frontpay-worker publish reservation.details -
  frontpay-worker publish reservation.capture capture.json --key order-1234-capture-1 --wait 1m`,
		Args:              exactArgs(2, "an operation and a file (- for standard input)"),
		ValidArgsFunction: completePublishArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd.Context(), o, args[0], args[1], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "idempotency key (default: the event id, new for every publish)")
	f.StringVar(&o.correlation, "correlation", "", "correlation id, carried to the result")
	f.StringVar(&o.source, "source", "frontpay-worker/publish", "source of the command event")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the result; 0: do not wait")
	return cmd
}

// completePublishArgs completes an operation, then a file.
func completePublishArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return completeOperations(cmd, args, toComplete)
	}
	if len(args) == 1 {
		return []cobra.Completion{"json"}, cobra.ShellCompDirectiveFilterFileExt
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// runPublish wraps a payload in a command event, publishes it and prints the result event.
func runPublish(ctx context.Context, o publishOptions, opName, file string, stdin io.Reader, out io.Writer) error {
	op, err := parseOp(opName)
	if err != nil {
		return err
	}
	var raw []byte
	if file == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, schemas.MaxCommandBytes+1))
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return usagef("read payload: %w", err)
	}
	if !json.Valid(raw) {
		return usagef("the payload is not JSON")
	}
	// The worker would refuse it: say why now, and publish nothing.
	cmd, err := client.NewCommand(op, json.RawMessage(raw), client.Source(o.source), client.Key(o.key), client.Correlation(o.correlation))
	var invalid *schemas.InvalidError
	switch {
	case errors.As(err, &invalid):
		return usagef("not a valid %s command: %w", op, invalid)
	case err != nil:
		return usageError(err)
	}
	t, err := openTool(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	// The client subscribes to the results before it publishes, so that none comes unseen.
	c, err := client.New(t.nc, client.WithPrefix(t.cfg.SubjectPrefix))
	if err != nil {
		return natsFailure(err)
	}
	defer c.Close()
	// Publish retries while NATS cannot take the command: as long as a tool waits for NATS.
	pctx, cancel := context.WithTimeout(ctx, toolTimeout)
	err = c.Publish(pctx, cmd)
	cancel()
	if err != nil {
		return natsFailure(err)
	}
	fmt.Fprintf(out, "published %s id=%s idempotencykey=%s\n", c.Subject(cmd), cmd.ID(), cmd.Key())
	if o.wait == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	res, err := c.Await(wctx, cmd.ID())
	var failure *client.Failure
	switch {
	case errors.As(err, &failure):
		fmt.Fprintf(out, "%s\n", failure.Raw)
		return checkFailed(fmt.Errorf("%s failed: %s", op, failure.Reason))
	case res != nil:
		// A success whose response does not decode into the operation's type is still a success.
		fmt.Fprintf(out, "%s\n", res.Raw)
		return nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("no result within %s (is a worker running?)", o.wait)
	}
	return err
}

// replayOptions are the flags of replay.
type replayOptions struct {
	operation, merchant, since, until, reason, key, eventID string
	limit                                                   int
	dryRun, yes                                             bool
}

func newReplayCommand(set settings) *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-publish failed commands from their failure events",
		Long: `Re-publish failed commands from their failure events in the results stream, with the same
idempotency key and the extension replayof naming the failure. Only the latest failure of each
key is replayed, only where the worker recorded that very failure as the key's outcome (a failure
event it did not record, e.g. one published by someone else, is skipped), and keys that have
succeeded since are skipped.

With several merchants, --merchant replays one merchant's failures. Commands answered with
invalid_command (unknownMerchant) before their merchant was added are replayed like the worker's
own failures: their keys have no record, so the replay is their first command.

outcome_unknown failures are left out unless --reason outcome_unknown names them: the effect may
have happened, so check the reservation first (the worker then reads it back before any call).

Before publishing, replay lists what it would replay and asks on the terminal. Where standard
input is not a terminal (a script, kubectl exec without -t), it publishes only with --yes and
otherwise refuses (exit code 2) without reading the stream; --dry-run needs no confirmation.
While it reads a long results stream it reports its progress on standard error; at the end it
prints a summary: events scanned, failures matched, replayed, and what was skipped and why.

` + toolsEnv,
		Example: `  frontpay-worker replay --operation reservation.refund --since 24h --reason upstream_unavailable --dry-run
  frontpay-worker replay --operation reservation.refund --since 24h --reason upstream_unavailable
  frontpay-worker replay --reason upstream_unavailable --since 2h --limit 100 --yes
  frontpay-worker replay --merchant shop1 --reason invalid_command --since 24h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd.Context(), o, set, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.operation, "operation", "", "only this operation, e.g. reservation.refund")
	f.StringVar(&o.merchant, "merchant", "", "with several merchants (FRONTPAY_MERCHANTS_FILE): this merchant's failures only (default: every merchant's)")
	f.StringVar(&o.since, "since", "24h", "failures from this time on: a duration before now (24h) or RFC 3339")
	f.StringVar(&o.until, "until", "", "failures up to this time: a duration before now or RFC 3339 (default now)")
	f.StringVar(&o.reason, "reason", "", "only failures with this reason, e.g. upstream_unavailable (outcome_unknown only when named)")
	f.StringVar(&o.key, "key", "", "only the command with this idempotency key")
	f.StringVar(&o.eventID, "event-id", "", "only the failure event with this id")
	f.IntVar(&o.limit, "limit", 0, "replay at most this many commands, the oldest failures first (0: no limit)")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be replayed, publish nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "publish without asking")
	_ = cmd.RegisterFlagCompletionFunc("operation", completeOperations)
	_ = cmd.RegisterFlagCompletionFunc("reason", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var reasons []cobra.Completion
		for _, r := range schemas.Reasons() {
			reasons = append(reasons, string(r))
		}
		return reasons, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// replayFilter reads the flags of replay into the engine's filter.
func replayFilter(o replayOptions, now time.Time) (consumer.ReplayFilter, error) {
	var f consumer.ReplayFilter
	var err error
	if f.From, err = parseWhen(o.since, now); err != nil {
		return f, usagef("--since: %w", err)
	}
	// Without --until, the engine reads up to the last result stored when it starts.
	if f.To, err = parseWhen(o.until, now); err != nil {
		return f, usagef("--until: %w", err)
	}
	if o.operation != "" {
		op, err := parseOp(o.operation)
		if err != nil {
			return f, err
		}
		f.Ops = []frontpay.Operation{op}
	}
	if o.reason != "" && !slices.Contains(schemas.Reasons(), schemas.Reason(o.reason)) {
		return f, usagef("--reason: unknown reason %q", o.reason)
	}
	if o.limit < 0 {
		return f, usagef("--limit: must be 0 (no limit) or more, got %d", o.limit)
	}
	f.Merchant, f.Reason, f.Key, f.EventID, f.Limit = o.merchant, schemas.Reason(o.reason), o.key, o.eventID, o.limit
	return f, nil
}

// runReplay re-publishes failed commands from their failure events: the engine selects them
// (Topology.SelectReplays) and publishes each (Topology.Replay); this asks, reports progress and
// prints what was done.
func runReplay(ctx context.Context, o replayOptions, set settings, stdin io.Reader, out, errOut io.Writer) error {
	now := time.Now()
	filter, err := replayFilter(o, now)
	if err != nil {
		return err
	}
	if !o.dryRun && !o.yes && !set.interactive {
		return usagef("replay publishes commands again: confirm with --yes (standard input is not a terminal to ask on), or list them with --dry-run")
	}
	t, err := openTool(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	if o.merchant != "" && !t.topo.Merchants {
		return usagef("--merchant: FRONTPAY_MERCHANTS_FILE is not set: this deployment has one merchant")
	}

	// The first report comes progressEvery into the scan: a short scan reports nothing.
	lastReport := time.Now()
	progress := func(scanned, total int) {
		if time.Since(lastReport) < set.progressEvery {
			return
		}
		lastReport = time.Now()
		fmt.Fprintf(errOut, "replay: scanned %d of about %d result events\n", scanned, total)
	}
	sel, err := t.topo.SelectReplays(ctx, t.js, filter, progress)
	if err != nil {
		return natsFailure(err)
	}
	line := func(verb string, f consumer.FailureEvent, id string) {
		if f.Merchant != "" {
			verb += " merchant=" + f.Merchant
		}
		fmt.Fprintf(out, "%s %s key=%s failure=%s reason=%s failed_at=%s command=%s\n", verb, f.Op,
			f.Event.IdempotencyKey, f.Event.ID, f.Data.Reason, f.At.UTC().Format(time.RFC3339), id)
	}
	replayed := 0
	confirmed := o.yes
	if !o.dryRun && !o.yes && len(sel.Selected) > 0 {
		for _, f := range sel.Selected {
			line("would replay", f, "")
		}
		if confirmed, err = confirm(stdin, errOut, fmt.Sprintf("Replay these %d command(s)?", len(sel.Selected))); err != nil {
			return err
		}
	}
	switch {
	case o.dryRun:
		for _, f := range sel.Selected {
			line("would replay", f, "")
		}
		replayed = len(sel.Selected)
	case confirmed:
		for _, f := range sel.Selected {
			id, err := t.topo.Replay(ctx, t.js, f)
			if err != nil {
				printReplaySummary(out, sel, replayed, o, filter, now)
				return natsFailure(err)
			}
			line("replayed", f, id)
			replayed++
		}
	case len(sel.Selected) > 0:
		fmt.Fprintln(out, "not confirmed: nothing replayed")
	}
	printReplaySummary(out, sel, replayed, o, filter, now)
	return nil
}

// printReplaySummary writes the summary: what was scanned and selected, how many were replayed,
// and what was skipped and why.
func printReplaySummary(w io.Writer, sel *consumer.ReplaySelection, replayed int, o replayOptions, f consumer.ReplayFilter, now time.Time) {
	verb := "replayed"
	if o.dryRun {
		verb = "would replay"
	}
	to := f.To
	if to.IsZero() {
		to = now
	}
	fmt.Fprintf(w, "scanned %d result event(s) from %s to %s: %d key(s) failed, %d selected, %d %s\n", sel.Scanned,
		f.From.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), sel.Failed, sel.Matched, replayed, verb)
	var skipped []string
	for _, c := range []struct {
		n   int
		why string
	}{
		{sel.Skipped.Succeeded, "succeeded since"},
		{sel.Skipped.Unknown, "outcome_unknown (name it with --reason outcome_unknown, after checking the reservation)"},
		{sel.Skipped.NoCommand, "no command in the failure event to replay"},
		{sel.Skipped.NotRecorded, "not the failure the worker recorded for the key (forged, an old copy, superseded, or never recorded)"},
		{sel.Skipped.OverLimit, fmt.Sprintf("over --limit %d", o.limit)},
	} {
		if c.n > 0 {
			skipped = append(skipped, fmt.Sprintf("%d %s", c.n, c.why))
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "skipped: %s\n", strings.Join(skipped, "; "))
	}
}

// confirm asks question on w and reads the answer from r: yes only for "y" or "yes".
func confirm(r io.Reader, w io.Writer, question string) (bool, error) {
	fmt.Fprintf(w, "%s [y/N] ", question)
	answer, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// errThreshold is the error of a lag check that found a threshold crossed (exit code 1).
var errThreshold = errors.New("threshold crossed")

// lagOptions are the flags of lag.
type lagOptions struct {
	merchant      string
	json          bool
	maxPending    uint64
	maxAckPending int
	maxAge        time.Duration
}

func newLagCommand() *cobra.Command {
	var o lagOptions
	cmd := &cobra.Command{
		Use:   "lag",
		Short: "Show each consumer's backlog; with --max-*, fail when a threshold is crossed",
		Long: `Show each consumer's backlog: pending (not yet delivered), ack pending (delivered, not yet
answered), redelivered, waiting pull requests and the age of the oldest command not yet answered
(README, "Reading lag"). With --max-pending, --max-ack-pending or --max-age it is a check: exit
code 1 when a consumer crosses a threshold, after printing the table.

` + toolsEnv,
		Example: `  frontpay-worker lag
  frontpay-worker lag --json
  frontpay-worker lag --max-age 5m --max-pending 1000
  frontpay-worker lag --merchant shop1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLag(cmd.Context(), o, cmd.OutOrStdout()) },
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	f.StringVar(&o.merchant, "merchant", "", "with several merchants (FRONTPAY_MERCHANTS_FILE): this merchant's consumer only (default: every merchant's)")
	f.Uint64Var(&o.maxPending, "max-pending", 0, "fail when a consumer has more commands not yet delivered (0: no check)")
	f.IntVar(&o.maxAckPending, "max-ack-pending", 0, "fail when a consumer has more commands delivered and not yet answered (0: no check)")
	f.DurationVar(&o.maxAge, "max-age", 0, "fail when a consumer's oldest unanswered command is older (0: no check)")
	return cmd
}

// runLag prints each consumer's lag, and fails when a threshold is crossed.
func runLag(ctx context.Context, o lagOptions, out io.Writer) error {
	t, err := openTool(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	merchants := []string{o.merchant}
	if o.merchant == "" {
		if merchants, err = t.topo.MerchantsOf(ctx, t.js); err != nil {
			return natsFailure(err)
		}
	}
	var lags []consumer.ConsumerLag
	for _, m := range merchants {
		l, err := t.topo.Lag(ctx, t.js, m)
		if err != nil {
			return natsFailure(err)
		}
		lags = append(lags, l...)
	}
	// A consumer's row is "(all)"; the operations' rows come from its owner's report.
	row := func(l consumer.ConsumerLag) string {
		r := cmp.Or(l.Operation, "(all)")
		if l.Merchant != "" {
			r = l.Merchant + " " + r
		}
		return r
	}
	var crossed []string
	for _, l := range lags {
		switch {
		case o.maxPending > 0 && l.Pending > o.maxPending:
			crossed = append(crossed, fmt.Sprintf("%s: %d pending > %d", row(l), l.Pending, o.maxPending))
		case o.maxAckPending > 0 && l.AckPending > o.maxAckPending:
			crossed = append(crossed, fmt.Sprintf("%s: %d ack pending > %d", row(l), l.AckPending, o.maxAckPending))
		case o.maxAge > 0 && l.OldestAge > o.maxAge:
			crossed = append(crossed, fmt.Sprintf("%s: oldest %s > %s", row(l), l.OldestAge.Round(time.Second), o.maxAge))
		}
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(lags); err != nil {
			return err
		}
	} else {
		for _, l := range lags {
			if l.Operation == "" {
				fmt.Fprintf(out, "consumer %s, owner %s\n", l.Consumer, cmp.Or(l.Owner, "(none reporting)"))
				fmt.Fprintf(out, "%-24s %10s %11s %11s %8s %12s\n", "OPERATION", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING", "OLDEST")
			}
			fmt.Fprintf(out, "%-24s %10d %11d %11d %8d %12s\n", cmp.Or(l.Operation, "(all)"), l.Pending, l.AckPending, l.Redelivered, l.Waiting,
				l.OldestAge.Round(time.Millisecond))
		}
	}
	if len(crossed) > 0 {
		return checkFailed(fmt.Errorf("%w: %s", errThreshold, strings.Join(crossed, "; ")))
	}
	return nil
}
