package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/embedded"
)

// TestReplayFailedRefund fails a refund while the API is down, replays it once the API is back,
// and checks that the refund happened once and that nothing is replayed a second time.
func TestReplayFailedRefund(t *testing.T) {
	sb := newSandbox(t)
	m := startMain(t, sb.URL)
	t.Setenv("NATS_URL", m.NATSURL)
	api, err := frontpay.New(sb.URL, sandboxToken)
	if err != nil {
		t.Fatal(err)
	}
	uuid, line := paidReservation(t, api, sb.Sandbox)
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
	var out bytes.Buffer
	err = runPublish(t.Context(), []string{"--key", "refund-1", "reservation.refund", file}, nil, &out)
	if err == nil || !strings.Contains(out.String(), `"reason":"upstream_unavailable"`) {
		t.Fatalf("publish during the outage: %v\n%s", err, out.String())
	}
	sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{})

	replay := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runReplay(t.Context(), append([]string{"--operation", "reservation.refund", "--since", "1h"}, args...), &out); err != nil {
			t.Fatalf("replay %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if got := replay("--dry-run"); !strings.Contains(got, "would replay reservation.refund key=refund-1") {
		t.Fatalf("dry run:\n%s", got)
	}
	if n := refunds(sb.Sandbox); n != 0 {
		t.Fatalf("the dry run refunded %d times", n)
	}
	if got := replay("--reason", "business_rule"); !strings.Contains(got, "0 replayed") {
		t.Fatalf("replay of another reason:\n%s", got)
	}
	if got := replay(); !strings.Contains(got, "replayed reservation.refund key=refund-1") {
		t.Fatalf("replay:\n%s", got)
	}
	waitFor(t, "the replayed refund", func() bool { return refunds(sb.Sandbox) == 1 })
	nc, err := nats.Connect(m.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitFor(t, "the replay's success event", func() bool {
		for _, ev := range readStream(t, js, "FRONTPAY_RESULTS") {
			if ev.Type == "reservation.refund.succeeded" && ev.IdempotencyKey == "refund-1" {
				return true
			}
		}
		return false
	})
	if got := replay(); !strings.Contains(got, "0 replayed") {
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

func TestPublishRefusesAnInvalidCommand(t *testing.T) {
	var out bytes.Buffer
	err := runPublish(t.Context(), []string{"reservation.capture", "-"}, strings.NewReader(`{"reservationUuid":"RES1","grandTotal":-1}`), &out)
	if err == nil || !strings.Contains(err.Error(), "data.grandTotal") {
		t.Fatalf("got %v", err)
	}
	if err := runPublish(t.Context(), []string{"reservation.nothing", "-"}, strings.NewReader(`{}`), &out); err == nil ||
		!strings.Contains(err.Error(), "unknown operation") {
		t.Fatalf("got %v", err)
	}
}

// TestLagCheck reads a known backlog with no worker running, as a table, as JSON and as a check.
func TestLagCheck(t *testing.T) {
	ns, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	t.Setenv("NATS_URL", ns.ClientURL())
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := (consumer.Topology{AckWait: time.Second}).Ensure(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		publishCommand(t, js, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1"})
	}

	var out bytes.Buffer
	if err := runLag(t.Context(), nil, &out); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\(all\)\s+3\s+0\s+0\s+0\s+\d`).MatchString(out.String()) {
		t.Fatalf("table:\n%s", out.String())
	}
	out.Reset()
	if err := runLag(t.Context(), []string{"--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var lags []consumer.ConsumerLag
	if err := json.Unmarshal(out.Bytes(), &lags); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	pending := map[string]uint64{}
	for _, l := range lags {
		pending[l.Operation] = l.Pending
	}
	// No worker: the commands wait in the stream, and no owner reports what it holds.
	if pending[""] != 3 || pending["reservation.details"] != 0 || len(lags) != 13 {
		t.Fatalf("pending %v", pending)
	}
	if err := runLag(t.Context(), []string{"--max-pending", "3"}, io.Discard); err != nil {
		t.Fatalf("at the threshold: %v", err)
	}
	if err := runLag(t.Context(), []string{"--max-pending", "2"}, io.Discard); !errors.Is(err, errThreshold) {
		t.Fatalf("over the threshold: %v", err)
	}
	if err := runLag(t.Context(), []string{"--max-age", "1h"}, io.Discard); err != nil {
		t.Fatalf("young backlog: %v", err)
	}
}
