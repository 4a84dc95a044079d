package main

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// asWorker makes the test binary run the real main, for the tests that kill a worker process.
const asWorker = "FRONTPAY_TEST_AS_WORKER"

// TestMain runs main when the test binary is a worker process of a test; otherwise it runs the
// tests with the goroutine-leak check: a test's in-process workers (Main), servers and tools
// stop when it ends.
func TestMain(m *testing.M) {
	if os.Getenv(asWorker) == "1" {
		main()
		os.Exit(0)
	}
	testworld.Main(m)
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := demo(t.Context(), &out, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"← reservation.submit.succeeded", "← reservation.capture.succeeded",
		"← reservation.refund.succeeded", "← reservation.complete.succeeded", "· done:",
		`◆ reservation.status.changed   {"uuid":`, `"status":"reserved"`, `"status":"captured"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestKilledWorker kills a worker process with SIGKILL while its capture is at the API, before
// or after the API applied it, starts another, and checks that every command is answered once
// and no capture happened twice.
func TestKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	for _, tc := range []struct {
		name  string
		fault sandbox.Fault
		// resent: whether the second worker must send the killed capture again.
		resent bool
	}{
		{"before the effect", sandbox.Fault{Latency: time.Minute, Times: 1}, true},
		{"after the effect", sandbox.Fault{DropShare: 1, HangAfterEffect: time.Minute, Times: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			killWorkerMidCall(t, tc.fault, tc.resent)
		})
	}
}

func killWorkerMidCall(t *testing.T, fault sandbox.Fault, resent bool) {
	ns := testworld.JetStream(t)
	var calls testworld.Calls
	sb := testworld.Sandbox(t, sandbox.Options{Token: sandboxToken, RateLimit: -1, Seed: 7}, calls.Wrap)
	capturesSeen := func() int { return calls.Count(frontpay.ReservationCapture, "") }
	api := sb.Client(t, sandboxToken)
	// The first capture hangs at the API until its worker is killed: the worker is gone mid-call.
	sb.SetFault(frontpay.ReservationCapture, fault)

	env := append(os.Environ(), asWorker+"=1",
		"NATS_URL="+ns.URL, "FRONTPAY_API_URL="+sb.URL, "FRONTPAY_API_TOKEN="+sandboxToken,
		"FRONTPAY_HTTP_ADDR=127.0.0.1:0", "FRONTPAY_API_TIMEOUT=2s", "FRONTPAY_ACK_WAIT=1s", "FRONTPAY_PIN_TTL=3s", "FRONTPAY_API_RATE=0",
		"FRONTPAY_LEASE_MARGIN=500ms", "FRONTPAY_RETRY_INITIAL=50ms", "FRONTPAY_RETRY_MAX=200ms",
		"FRONTPAY_LOG_FORMAT=json", "FRONTPAY_LOG_LEVEL=debug", "FRONTPAY_DRAIN_TIMEOUT=5s")
	first := startWorker(t, env)

	js := ns.JS
	testworld.WaitFor(t, func() bool {
		_, err := js.Stream(t.Context(), "FRONTPAY_COMMANDS")
		return err == nil
	}, "the worker's streams")

	const n = 4
	ids := map[string]string{} // command id → reservation
	for i := range n {
		uuid, line := sb.PaidReservation(t, api)
		id := publishCommand(t, js, frontpay.ReservationCapture, map[string]any{
			"reservationUuid": uuid, "grandTotal": 40, "products": []any{map[string]any{"id": line, "amount": 40}},
			"additionalText": "parcel " + string(rune('A'+i)),
		})
		ids[id] = uuid
	}
	testworld.WaitFor(t, func() bool { return capturesSeen() > 0 }, "a capture at the API")
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := startWorker(t, env)
	results := map[string]map[string]schemas.Event{} // command id → result ids
	testworld.WaitFor(t, func() bool {
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.CausationID == "" {
				continue // a status event of the history poll
			}
			if results[ev.CausationID] == nil {
				results[ev.CausationID] = map[string]schemas.Event{}
			}
			results[ev.CausationID][ev.ID] = ev
		}
		return len(results) == n
	}, "a result for every command")
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("worker after SIGTERM: %v", err)
	}

	for id, evs := range results {
		if len(evs) != 1 {
			t.Errorf("command %s has %d distinct results", id, len(evs))
		}
		for _, ev := range evs {
			if ev.Type != "reservation.capture.succeeded" {
				t.Errorf("command %s: %s %s", id, ev.Type, ev.Data)
			}
		}
	}
	captures := map[string]int{}
	for _, e := range sb.Ledger() {
		if e.Op == string(frontpay.ReservationCapture) {
			captures[e.UUID]++
		}
	}
	for _, uuid := range ids {
		if captures[uuid] != 1 {
			t.Errorf("reservation %s captured %d times", uuid, captures[uuid])
		}
	}
	if want := n + map[bool]int{true: 1}[resent]; capturesSeen() != want {
		t.Errorf("the API saw %d captures, want %d", capturesSeen(), want)
	}
}

// startWorker starts the worker as a process of its own; its log goes to the test log on failure.
func startWorker(t *testing.T, env []string) *exec.Cmd {
	t.Helper()
	var log testworld.SyncBuffer
	var cmd *exec.Cmd
	t.Cleanup(func() { // runs after startWorkerInto's: once the process has ended
		if t.Failed() && cmd != nil {
			t.Logf("worker %d log:\n%s", cmd.Process.Pid, log.String())
		}
	})
	cmd = startWorkerInto(t, env, &log)
	return cmd
}

// startWorkerInto starts the worker as a process of its own, its output going to out; it is
// killed when the test ends, unless it has ended.
func startWorkerInto(t *testing.T, env []string, out *testworld.SyncBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// publishCommand publishes a command of op, unchecked, so that tests can publish what the worker
// must refuse (the tools build theirs with package client, which checks them), and returns its
// id, which is its key.
func publishCommand(t *testing.T, js jetstream.JetStream, op frontpay.Operation, data any) string {
	t.Helper()
	c := testworld.NewCommand(t, op, data, client.Source("test"))
	testworld.Publish(t, js, c.Msg(""))
	return c.ID
}

// TestKilledOwner runs two worker processes, an owner and a standby, while every reservation of
// eight gets a slow capture and then a complete. The owner is SIGKILLed with captures at the API:
// the standby takes the commands over (after FRONTPAY_PIN_TTL) and finishes them all, in order,
// each answered once and each taking effect once.
func TestKilledOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	t.Parallel()
	ns := testworld.JetStream(t)
	sb := testworld.Sandbox(t, sandbox.Options{Token: sandboxToken, RateLimit: -1, Seed: 8})
	sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 400 * time.Millisecond})
	api := sb.Client(t, sandboxToken)
	env := append(os.Environ(), asWorker+"=1", "NATS_URL="+ns.URL, "FRONTPAY_API_TOKEN="+sandboxToken,
		"FRONTPAY_HTTP_ADDR=127.0.0.1:0", "FRONTPAY_API_TIMEOUT=2s", "FRONTPAY_PIN_TTL=3s", "FRONTPAY_API_RATE=0",
		"FRONTPAY_LEASE_MARGIN=500ms", "FRONTPAY_RETRY_INITIAL=50ms", "FRONTPAY_RETRY_MAX=200ms",
		"FRONTPAY_LOG_FORMAT=json", "FRONTPAY_LOG_LEVEL=debug", "FRONTPAY_DRAIN_TIMEOUT=5s")
	// Each worker reaches the API through a front of its own, which tells whose captures are in
	// flight: the owner's.
	var fronts [2]*testworld.Front
	var workers [2]*exec.Cmd
	for i := range workers {
		fronts[i] = testworld.NewFront(t, sb)
		workers[i] = startWorker(t, append(env, "FRONTPAY_API_URL="+fronts[i].URL))
	}

	js := ns.JS
	testworld.WaitFor(t, func() bool {
		_, err := js.Stream(t.Context(), "FRONTPAY_COMMANDS")
		return err == nil
	}, "the worker's streams")
	type pair struct{ uuid, capture, complete string }
	var pairs []pair
	for i := range 8 {
		uuid, line := sb.PaidReservation(t, api)
		pairs = append(pairs, pair{uuid: uuid,
			capture: publishCommand(t, js, frontpay.ReservationCapture, map[string]any{
				"reservationUuid": uuid, "grandTotal": 40, "products": []any{map[string]any{"id": line, "amount": 40}},
				"additionalText": "pair " + strconv.Itoa(i),
			}),
			complete: publishCommand(t, js, frontpay.ReservationComplete, map[string]any{"reservationUuid": uuid, "note": "pair " + strconv.Itoa(i)}),
		})
	}
	owner := -1
	testworld.WaitFor(t, func() bool {
		for i, f := range fronts {
			if f.Calls.Active(frontpay.ReservationCapture) >= 2 {
				owner = i
				return true
			}
		}
		return false
	}, "captures of the owner at the API")
	if err := workers[owner].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = workers[owner].Wait()

	results := map[string]map[string]schemas.Event{} // command id → result ids
	testworld.WaitFor(t, func() bool {
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.CausationID == "" {
				continue
			}
			if results[ev.CausationID] == nil {
				results[ev.CausationID] = map[string]schemas.Event{}
			}
			results[ev.CausationID][ev.ID] = ev
		}
		return len(results) == 2*len(pairs)
	}, "a result for every command")
	for id, evs := range results {
		for _, ev := range evs {
			if len(evs) != 1 || !strings.HasSuffix(ev.Type, ".succeeded") {
				t.Errorf("command %s: %d results, %s %s", id, len(evs), ev.Type, ev.Data)
			}
		}
	}
	effects := map[string][]string{} // reservation → its effects in ledger order
	for _, e := range sb.Ledger() {
		if e.Op == string(frontpay.ReservationCapture) || e.Op == string(frontpay.ReservationComplete) {
			effects[e.UUID] = append(effects[e.UUID], e.Op)
		}
	}
	for _, p := range pairs {
		if got := strings.Join(effects[p.uuid], ","); got != "reservation.capture,reservation.complete" {
			t.Errorf("reservation %s: effects %s", p.uuid, got)
		}
	}
	if standby := fronts[1-owner]; standby.Calls.Count("", "") == 0 {
		t.Error("the standby made no call")
	}
}
