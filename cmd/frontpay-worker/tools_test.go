package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// toolsWorld runs a whole worker as `frontpay-worker run` does (runWorker, configured by the
// environment) against a NATS server and a sandbox of their own, points the tools at the server
// (NATS_URL), and connects the test to it.
func toolsWorld(t *testing.T) (*testworld.API, jetstream.JetStream) {
	t.Helper()
	sb := testworld.Sandbox(t, sandbox.Options{Token: sandboxToken, RateLimit: -1})
	ns := testworld.JetStream(t)
	for name, value := range map[string]string{
		"NATS_URL": ns.URL, "FRONTPAY_API_URL": sb.URL, "FRONTPAY_API_TOKEN": sandboxToken, "FRONTPAY_HTTP_ADDR": "127.0.0.1:0",
		"FRONTPAY_API_TIMEOUT": "2s", "FRONTPAY_MAX_ATTEMPTS": "2", "FRONTPAY_RETRY_INITIAL": "1ms", "FRONTPAY_RETRY_MAX": "10ms",
		"FRONTPAY_CONCURRENCY": "4", "FRONTPAY_ACK_WAIT": "1s", "FRONTPAY_PIN_TTL": "3s", "FRONTPAY_DRAIN_TIMEOUT": "1s",
		"FRONTPAY_LEASE_MARGIN": "100ms", "FRONTPAY_API_RATE": "0",
	} {
		t.Setenv(name, value)
	}
	var log testworld.SyncBuffer
	worker := testworld.Run(t, "the worker", func(ctx context.Context, ready func()) error {
		ready()
		return runWorker(ctx, &log)
	})
	testworld.WaitFor(t, func() bool {
		select {
		case <-worker.Done():
			t.Fatalf("the worker stopped: %v\n%s", worker.Err(), log.String())
		default:
		}
		c, err := ns.JS.Consumer(t.Context(), "FRONTPAY_COMMANDS", consumer.ConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumWaiting > 0
	}, "the worker's pull")
	return sb, ns.JS
}

// TestReplayFailedRefund fails a refund while the API is down, replays it once the API is back,
// and checks that the refund happened once and that nothing is replayed a second time.
func TestReplayFailedRefund(t *testing.T) {
	sb, js := toolsWorld(t)
	api := sb.Client(t, sandboxToken)
	uuid, line := sb.PaidReservation(t, api)
	captured, err := api.Capture(t.Context(), uuid, &frontpay.CaptureRequest{
		Products: frontpay.Lines[frontpay.CaptureLine]{{ID: line, Amount: frontpay.Num("100")}}, GrandTotal: frontpay.Num("100"),
	})
	if err != nil {
		t.Fatal(err)
	}
	refund, _ := json.Marshal(map[string]any{
		"reservationUuid": uuid, "type": "reservation", "grandTotal": 40, "source": "captured",
		"reference": captured.Data.UUID, "products": []any{map[string]any{"id": line, "amount": 40}},
	})
	file := filepath.Join(t.TempDir(), "refund.json")
	if err := os.WriteFile(file, refund, 0o600); err != nil {
		t.Fatal(err)
	}

	sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{ErrorShare: 1})
	// Flags after the arguments, as anywhere on the line.
	out, errOut, code := cliRun(t, settings{}, "", "publish", "reservation.refund", file, "--key", "refund-1")
	if code != exitCheck || !strings.Contains(out, `"reason":"upstream_unavailable"`) {
		t.Fatalf("publish during the outage: exit %d\n%s%s", code, out, errOut)
	}
	sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{})
	// stored reports whether the results stream holds a refund-1 event of type typ.
	stored := func(typ string) func() bool {
		return func() bool {
			return slices.ContainsFunc(testworld.ReadStream(t, js, "FRONTPAY_RESULTS"), func(ev schemas.Event) bool {
				return ev.Type == typ && ev.IdempotencyKey == "refund-1"
			})
		}
	}
	// publish saw the failure as it was published: wait until the results stream has stored it.
	testworld.WaitFor(t, stored("reservation.refund.failed"), "the failure on the results stream")

	replay := func(args ...string) string {
		t.Helper()
		out, errOut, code := cliRun(t, settings{}, "", append([]string{"replay", "--operation", "reservation.refund", "--since", "1h"}, args...)...)
		if code != exitOK {
			t.Fatalf("replay %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	if got := replay("--dry-run"); !strings.Contains(got, "would replay reservation.refund key=refund-1") {
		t.Fatalf("dry run:\n%s", got)
	}
	if n := refunds(sb.Sandbox); n != 0 {
		t.Fatalf("the dry run refunded %d times", n)
	}
	if got := replay("--reason", "business_rule", "--yes"); !strings.Contains(got, "0 selected, 0 replayed") {
		t.Fatalf("replay of another reason:\n%s", got)
	}
	if got := replay("--yes"); !strings.Contains(got, "replayed reservation.refund key=refund-1") || !strings.Contains(got, "1 selected, 1 replayed") {
		t.Fatalf("replay:\n%s", got)
	}
	testworld.WaitFor(t, func() bool { return refunds(sb.Sandbox) == 1 }, "the replayed refund")
	testworld.WaitFor(t, stored("reservation.refund.succeeded"), "the replay's success event")
	if got := replay("--yes"); !strings.Contains(got, "0 replayed") || !strings.Contains(got, "skipped: 1 succeeded since") {
		t.Fatalf("a second replay after the success:\n%s", got)
	}
	if n := refunds(sb.Sandbox); n != 1 {
		t.Fatalf("refunded %d times", n)
	}
}

func refunds(sb *sandbox.Sandbox) int {
	n := 0
	for _, e := range sb.Ledger() {
		if e.Op == string(frontpay.ReservationRefund) {
			n++
		}
	}
	return n
}

// TestReplaySelection fails commands of every kind replay must tell apart, then checks its
// limit, its summary, its progress report and its confirmation, against a running worker.
func TestReplaySelection(t *testing.T) {
	sb, js := toolsWorld(t)
	uuid, _ := sb.PaidReservation(t, sb.Client(t, sandboxToken))

	// Three details while the API fails them: upstream_unavailable, which exits 1.
	sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
	for _, key := range []string{"d1", "d2", "d3"} {
		out, errOut, code := cliRun(t, settings{}, `{"reservationUuid":"`+uuid+`"}`, "publish", "--key", key, "reservation.details", "-")
		if code != exitCheck || !strings.Contains(out, `"reason":"upstream_unavailable"`) {
			t.Fatalf("details %s: exit %d\n%s%s", key, code, out, errOut)
		}
	}
	// A submit whose answer is lost: it cannot be read back, so outcome_unknown.
	sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{DropShare: 1})
	out, errOut, code := cliRun(t, settings{}, submitPayload(t), "publish", "--key", "s1", "reservation.submit", "-")
	if code != exitCheck || !strings.Contains(out, `"reason":"outcome_unknown"`) {
		t.Fatalf("submit: exit %d\n%s%s", code, out, errOut)
	}
	// A command too large to be carried in its failure: invalid_command with "command": null.
	huge := publishCommand(t, js, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1", "note": strings.Repeat("x", schemas.MaxCommandBytes)})
	testworld.WaitFor(t, func() bool {
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.CausationID == huge || ev.IdempotencyKey == huge {
				return true
			}
		}
		return false
	}, "the oversized command's failure")
	sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{})
	sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{})
	submits := func() int {
		n := 0
		for _, e := range sb.Ledger() {
			if e.Op == string(frontpay.ReservationSubmit) {
				n++
			}
		}
		return n
	}
	submitted := submits()

	// Not on a terminal and without --yes: refused before anything is read.
	_, errOut, code = cliRun(t, settings{}, "", "replay", "--since", "1h")
	if code != exitUsage || !strings.Contains(errOut, "--yes") {
		t.Fatalf("replay without --yes off a terminal: exit %d\n%s", code, errOut)
	}
	// On a terminal, answered no: nothing is published.
	out, errOut, code = cliRun(t, settings{interactive: true}, "n\n", "replay", "--since", "1h")
	if code != exitOK || !strings.Contains(errOut, "Replay these 3 command(s)? [y/N]") || !strings.Contains(out, "not confirmed: nothing replayed") ||
		!strings.Contains(out, "0 replayed") {
		t.Fatalf("replay answered no: exit %d\n%s%s", code, out, errOut)
	}
	if n := replays(t, js); n != 0 {
		t.Fatalf("%d replays published after answering no", n)
	}

	// --limit 2 with --yes: the two oldest details; the submit (outcome_unknown, not named), the
	// oversized command (nothing to replay) and d3 (over the limit) are skipped, each counted.
	out, errOut, code = cliRun(t, settings{progressEvery: 0}, "", "replay", "--since", "1h", "--limit", "2", "--yes")
	if code != exitOK {
		t.Fatalf("replay --limit 2: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"replayed reservation.details key=d1 ", "replayed reservation.details key=d2 ",
		"5 key(s) failed, 5 selected, 2 replayed",
		"skipped: 1 outcome_unknown (name it with --reason outcome_unknown, after checking the reservation); 1 no command in the failure event to replay; 1 over --limit 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --limit 2 lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "key=d3") || strings.Contains(out, "key=s1") {
		t.Errorf("replay --limit 2 replayed more:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^replay: scanned \d+ of about \d+ result events$`).MatchString(errOut) {
		t.Errorf("no progress on stderr:\n%s", errOut)
	}
	if n := replays(t, js); n != 2 {
		t.Fatalf("%d replays published, want 2", n)
	}
	// succeeded counts the details' successes on the results stream.
	succeeded := func() int {
		ok := 0
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.Type == "reservation.details.succeeded" {
				ok++
			}
		}
		return ok
	}
	testworld.WaitFor(t, func() bool { return succeeded() == 2 }, "the replayed details' successes")

	// On a terminal, answered yes: d3 now; d1 and d2 have succeeded since.
	out, errOut, code = cliRun(t, settings{interactive: true}, "y\n", "replay", "--since", "1h", "--operation", "reservation.details")
	if code != exitOK || !strings.Contains(errOut, "Replay these 1 command(s)?") || !strings.Contains(out, "replayed reservation.details key=d3 ") ||
		!strings.Contains(out, "1 replayed") || !strings.Contains(out, "skipped: 2 succeeded since; 1 no command") {
		t.Fatalf("replay answered yes: exit %d\n%s%s", code, out, errOut)
	}
	if n := replays(t, js); n != 3 {
		t.Fatalf("%d replays published, want 3", n)
	}

	// outcome_unknown only when named.
	out, errOut, code = cliRun(t, settings{}, "", "replay", "--since", "1h", "--reason", "outcome_unknown", "--dry-run")
	if code != exitOK || !strings.Contains(out, "would replay reservation.submit key=s1 ") || !strings.Contains(out, "1 would replay") {
		t.Fatalf("replay --reason outcome_unknown: exit %d\n%s%s", code, out, errOut)
	}
	if n := submits(); n != submitted {
		t.Fatalf("the dry run submitted: %d submits, was %d", n, submitted)
	}

	// A failure event the worker did not record, published by someone else: counted, not replayed.
	testworld.WaitFor(t, func() bool { return succeeded() == 3 }, "the replayed details' successes")
	forged := testworld.ForgeFailure(t, js, "", frontpay.ReservationDetails, "forged", map[string]any{"reservationUuid": uuid}).ID
	testworld.WaitFor(t, func() bool {
		return slices.ContainsFunc(testworld.ReadStream(t, js, "FRONTPAY_RESULTS"), func(ev schemas.Event) bool { return ev.ID == forged })
	}, "the forged failure on the results stream")
	out, errOut, code = cliRun(t, settings{}, "", "replay", "--since", "1h", "--operation", "reservation.details", "--yes")
	if code != exitOK || strings.Contains(out, "key=forged") || !strings.Contains(out, "0 replayed") ||
		!strings.Contains(out, "skipped: 3 succeeded since; 1 no command in the failure event to replay; 1 not the failure the worker recorded for the key") {
		t.Fatalf("replay with a forged failure: exit %d\n%s%s", code, out, errOut)
	}
	if n := replays(t, js); n != 3 {
		t.Fatalf("%d replays published, want 3", n)
	}
}

// replays counts the replayed commands in the command stream.
func replays(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	n := 0
	for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_COMMANDS") {
		if ev.ReplayOf != "" {
			n++
		}
	}
	return n
}

// submitPayload is a valid submit whose dates are made now: the payment link is due in a day.
func submitPayload(t *testing.T) string {
	t.Helper()
	now := time.Now()
	b, err := json.Marshal(map[string]any{
		"customerDetails": map[string]any{
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "kari@example.no",
			"name": "Kari Nordmann", "preferredLanguage": "no",
			"address": map[string]any{"street": "Storgata 1", "zip": "0155", "city": "Oslo", "country": "NO"},
		},
		"orderDate": strconv.FormatInt(now.Unix(), 10), "dueDateForPaymentLink": strconv.FormatInt(now.Add(24*time.Hour).Unix(), 10),
		"sendOrderBy":  map[string]any{"sms": false, "email": true},
		"products":     map[string]any{"0": map[string]any{"name": "Wax", "productId": nil, "rate": 100, "tax": "25", "amount": 100}},
		"orderSummary": map[string]any{"subTotal": 80, "totalTax": 20, "grandTotal": 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPublishRefusesAnInvalidCommand(t *testing.T) {
	// No NATS is needed, nor reached: the command is refused first.
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	_, errOut, code := cliRun(t, settings{}, `{"reservationUuid":"RES1","grandTotal":-1}`, "publish", "reservation.capture", "-")
	if code != exitUsage || !strings.Contains(errOut, "data.grandTotal") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = cliRun(t, settings{}, `{}`, "publish", "reservation.nothing", "-")
	if code != exitUsage || !strings.Contains(errOut, "unknown operation") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = cliRun(t, settings{}, `{"reservationUuid":`, "publish", "reservation.details", "-")
	if code != exitUsage || !strings.Contains(errOut, "not JSON") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestLagCheck reads a known backlog with no worker running, as a table, as JSON and as a check.
func TestLagCheck(t *testing.T) {
	ns := testworld.JetStream(t, testworld.WithTopology(consumer.Topology{AckWait: time.Second}))
	t.Setenv("NATS_URL", ns.URL)
	js := ns.JS
	for range 3 {
		publishCommand(t, js, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1"})
	}

	lag := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := cliRun(t, settings{}, "", append([]string{"lag"}, args...)...)
		if code != want {
			t.Fatalf("lag %v: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out + errOut
	}
	if out := lag(exitOK); !regexp.MustCompile(`(?m)^\(all\)\s+3\s+0\s+0\s+0\s+\d`).MatchString(out) {
		t.Fatalf("table:\n%s", out)
	}
	var lags []consumer.ConsumerLag
	if out := lag(exitOK, "--json"); json.Unmarshal([]byte(out), &lags) != nil {
		t.Fatalf("not JSON:\n%s", out)
	}
	pending := map[string]uint64{}
	for _, l := range lags {
		pending[l.Operation] = l.Pending
	}
	// No worker: the commands wait in the stream, and no owner reports what it holds.
	if pending[""] != 3 || pending["reservation.details"] != 0 || len(lags) != 13 {
		t.Fatalf("pending %v", pending)
	}
	lag(exitOK, "--max-pending", "3")
	if out := lag(exitCheck, "--max-pending", "2"); !strings.Contains(out, "threshold crossed: (all): 3 pending > 2") ||
		!strings.Contains(out, "OPERATION") {
		t.Fatalf("over the threshold:\n%s", out)
	}
	lag(exitOK, "--max-age", "1h")
	lag(exitUsage, "--max-age", "soon")

	// With no worker, publish stores the command and finds no result: exit 4 after --wait, 0
	// without waiting.
	out, errOut, code := cliRun(t, settings{}, `{"reservationUuid":"RES1"}`, "publish", "reservation.details", "-", "--wait", "300ms")
	if code != exitFailure || !strings.Contains(out, "published reservation.details.requested id=") ||
		!strings.Contains(errOut, "no result within 300ms (is a worker running?)") {
		t.Fatalf("publish --wait with no worker: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cliRun(t, settings{}, `{"reservationUuid":"RES1"}`, "publish", "reservation.details", "-", "--wait", "0", "--key", "k-1")
	if code != exitOK || !strings.Contains(out, "idempotencykey=k-1") {
		t.Fatalf("publish --wait 0: exit %d\n%s%s", code, out, errOut)
	}
}
