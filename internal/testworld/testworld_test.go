package testworld_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

func TestMain(m *testing.M) { testworld.Main(m) }

// TestRestart: a restarted server keeps its URL and its store, and the connection comes back.
func TestRestart(t *testing.T) {
	n := testworld.JetStream(t)
	ctx := testworld.Context(t)
	if _, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	url := n.URL
	n.Restart(t, func() { testworld.WaitFor(t, func() bool { return !n.Conn.IsConnected() }, "the connection to drop") })
	if n.URL != url {
		t.Errorf("URL %s after the restart, was %s", n.URL, url)
	}
	m := testworld.NewCommand(t, frontpay.ReservationDetails, map[string]any{}).Msg("t.")
	m.Subject = "t.a"
	if seq := testworld.Publish(t, n.JS, m); seq != 1 {
		t.Errorf("stored as %d", seq)
	}
	if !n.Conn.IsConnected() || n.Conn.ConnectedUrl() != url {
		t.Errorf("connected %v to %s", n.Conn.IsConnected(), n.Conn.ConnectedUrl())
	}
}

// TestCalls counts the requests that reach the sandbox, by operation and path.
func TestCalls(t *testing.T) {
	var calls testworld.Calls
	api := testworld.Sandbox(t, sandbox.Options{Token: "tok", RateLimit: -1}, calls.Wrap)
	c := api.Client(t, "tok")
	for range 2 {
		if _, err := c.Details(t.Context(), "RES0000000001"); err == nil {
			t.Fatal("details of a reservation the sandbox lacks")
		}
	}
	if _, err := c.History(t.Context(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op   frontpay.Operation
		s    string
		want int
	}{
		{frontpay.ReservationDetails, "RES0000000001", 2}, {frontpay.ReservationDetails, "RES2", 0},
		{frontpay.ReservationHistory, "", 1}, {"", "", 3}, {frontpay.ReservationCapture, "", 0},
	} {
		if n := calls.Count(tc.op, tc.s); n != tc.want {
			t.Errorf("Count(%q, %q) = %d, want %d", tc.op, tc.s, n, tc.want)
		}
	}
	if calls.Peak(frontpay.ReservationDetails) != 1 || calls.Active(frontpay.ReservationDetails) != 0 {
		t.Errorf("details: peak %d, active %d", calls.Peak(frontpay.ReservationDetails), calls.Active(frontpay.ReservationDetails))
	}
}

// TestGo: a function that returns before it is ready is an error; one that got ready is stopped
// by Stop, which returns its error, once.
func TestGo(t *testing.T) {
	boom := errors.New("boom")
	if _, err := testworld.Go(func(context.Context, func()) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("run that failed at once: %v", err)
	}
	r, err := testworld.Go(func(ctx context.Context, ready func()) error {
		ready()
		ready()
		<-ctx.Done()
		return boom
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
		t.Fatal("done before Stop")
	default:
	}
	if err := r.Stop(); !errors.Is(err, boom) || !errors.Is(r.Stop(), boom) || !errors.Is(r.Err(), boom) {
		t.Errorf("Stop: %v", err)
	}
}

func TestNewCommand(t *testing.T) {
	c := testworld.NewCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1"})
	if c.Key != c.ID || c.Event.IdempotencyKey != "" || !strings.Contains(string(c.Raw), `"reservationUuid":"RES1"`) {
		t.Errorf("%s: %s", c, c.Raw)
	}
	c = testworld.NewCommand(t, frontpay.ReservationDetails, nil, func(e *schemas.Event) { e.IdempotencyKey = "k" })
	if c.Key != "k" {
		t.Errorf("key %s", c.Key)
	}
}

func TestSchemaError(t *testing.T) {
	if err := testworld.SchemaError(schemas.CommandSchema, testworld.NewCommand(t, frontpay.ReservationDetails,
		map[string]any{"reservationUuid": "RES0000000001"}).Raw); err != nil {
		t.Errorf("a details command: %v", err)
	}
	if testworld.SchemaError(schemas.ResultSchema, []byte(`{}`)) == nil || testworld.SchemaError("none.json", []byte(`{}`)) == nil ||
		testworld.SchemaError(schemas.ResultSchema, []byte(`{`)) == nil {
		t.Error("no error")
	}
}
