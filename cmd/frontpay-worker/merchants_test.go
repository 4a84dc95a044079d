package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/nordpay/frontpay-worker/internal/fleet"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// End-to-end tests of a deployment of several merchants (CONTRACT.md section 9, issue 10): the
// real worker (Main) against an embedded NATS server over TCP and the sandbox over HTTP, which
// serves a token for each merchant, each its own account.

// fleetPrefix is FRONTPAY_SUBJECT_PREFIX of the tests' deployments.
const fleetPrefix = "plat."

// fleetReload is how soon a change of the merchants file must take effect (CONTRACT.md section 9:
// within 30 s; the worker reads the file every fleet.DefaultReload).
const fleetReload = 30 * time.Second

// quickReload is how often the tests' replicas read the merchants file (app.Main.MerchantsReload),
// so that they see a change within a second rather than wait out the worker's own interval.
const quickReload = 500 * time.Millisecond

// TestMerchantsReloadInterval: the worker's own interval leaves room within the contract's 30 s
// for the lanes to stop and start once the file was read; the tests below read it more often.
func TestMerchantsReloadInterval(t *testing.T) {
	if fleet.DefaultReload > fleetReload/2 {
		t.Errorf("the merchants file is read every %s: a change could wait most of the %s it has", fleet.DefaultReload, fleetReload)
	}
}

// fleetWorld is a deployment of several merchants under test: the NATS server, the sandbox, the
// merchants file with a token file per merchant, and the replicas' common log.
type fleetWorld struct {
	t    *testing.T
	dir  string
	topo consumer.Topology
	ns   *testworld.NATS
	sb   *testworld.API
	nc   *nats.Conn
	js   jetstream.JetStream
	file string // the merchants file
	log  testworld.SyncBuffer

	mu      sync.Mutex
	tokens  map[string]string // merchant → its token now
	secrets map[string]string // merchant → its callback secret, if any
	rates   map[string]int    // merchant → its rate, if any
	clients map[string]*client.Client
	sent    []string // the ids of the commands published
}

// newFleetWorld starts NATS and the sandbox with an account (a token) for each of merchants, and
// writes their token files; the merchants file lists none of them yet (writeMerchants). Every
// token and secret holds "SECRET": when the test ends, after its replicas stopped, their log
// must show none.
func newFleetWorld(t *testing.T, merchants ...string) *fleetWorld {
	t.Helper()
	w := &fleetWorld{t: t, dir: t.TempDir(), topo: consumer.Topology{Prefix: fleetPrefix, Merchants: true},
		tokens: map[string]string{}, secrets: map[string]string{}, rates: map[string]int{}, clients: map[string]*client.Client{}}
	w.file = filepath.Join(w.dir, "merchants.yaml")
	w.ns = testworld.JetStream(t)
	w.nc, w.js = w.ns.Conn, w.ns.JS
	w.sb = testworld.Sandbox(t, sandbox.Options{RateLimit: -1, Seed: 10})
	for _, id := range merchants {
		tok := "tok-" + id + "-SECRET"
		if err := w.sb.AddToken(tok); err != nil {
			t.Fatal(err)
		}
		w.setToken(id, tok)
	}
	// Registered before any replica's Close, so run after them all.
	t.Cleanup(func() {
		if t.Failed() {
			log := w.log.String()
			t.Logf("the replicas' log (last 64 KiB):\n%s", log[max(0, len(log)-64<<10):])
		}
		for _, leak := range findLeaks("the replicas' log", w.log.String(), false) {
			t.Error(leak)
		}
	})
	return w
}

// writeAtomic writes a file as Kubernetes updates a mounted Secret or ConfigMap: whole, at once.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (w *fleetWorld) tokenFile(id string) string { return filepath.Join(w.dir, id+".token") }

// token returns the merchant's token now.
func (w *fleetWorld) token(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tokens[id]
}

// setToken writes the merchant's token file.
func (w *fleetWorld) setToken(id, token string) {
	w.mu.Lock()
	w.tokens[id] = token
	w.mu.Unlock()
	writeAtomic(w.t, w.tokenFile(id), token+"\n")
}

// setSecret gives the merchant a callback secret, in a file for the merchants file.
func (w *fleetWorld) setSecret(id, secret string) {
	w.mu.Lock()
	w.secrets[id] = secret
	w.mu.Unlock()
	writeAtomic(w.t, filepath.Join(w.dir, id+".callback"), secret+"\n")
}

// writeMerchants writes the merchants file: these merchants, each with its token file and, where
// set, its rate and callback secret file. The apiUrl is left out: each replica's
// FRONTPAY_API_URL, so that a replica's calls can be told apart (tokenFront).
func (w *fleetWorld) writeMerchants(ids ...string) {
	w.mu.Lock()
	var b strings.Builder
	b.WriteString("merchants:\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  - id: %s\n    tokenFile: %s\n", id, w.tokenFile(id))
		if r, ok := w.rates[id]; ok {
			fmt.Fprintf(&b, "    rate: %d\n", r)
		}
		if _, ok := w.secrets[id]; ok {
			fmt.Fprintf(&b, "    callbackSecretFile: %s\n", filepath.Join(w.dir, id+".callback"))
		}
	}
	w.mu.Unlock()
	writeAtomic(w.t, w.file, b.String())
}

// start runs a replica of the worker in this process, calling the API at apiURL, with the
// merchants file; it is closed when the test ends. Its owner's pin outlives every wait of the
// tests (FRONTPAY_PIN_TTL 2m), so that a merchant that moves only moves by being handed over.
func (w *fleetWorld) start(apiURL string) *app.Main {
	w.t.Helper()
	cfg := &app.Config{
		NATSConfig: app.NATSConfig{NATSURL: w.ns.URL, SubjectPrefix: fleetPrefix, MerchantsFile: w.file},
		APIURL:     apiURL, APITimeout: 5 * time.Second, MaxAttempts: 3, RetryInitial: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond, ReadbackMarker: "on", CallbackShare: 10, HTTPAddr: "127.0.0.1:0",
		DataDir: w.dir, LogFormat: "json", LogLevel: "debug", Concurrency: 8, AckWait: time.Minute,
		PinnedTTL: 2 * time.Minute, DrainTimeout: 5 * time.Second, LeaseMargin: 100 * time.Millisecond,
		Replicas: 1, WorkerName: "test",
	}
	if err := cfg.Validate(); err != nil {
		w.t.Fatal(err)
	}
	m := app.NewMain(cfg, newLogger(&w.log, cfg.LogFormat, cfg.LogLevel))
	m.MerchantsReload = quickReload
	if err := m.Run(w.t.Context()); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = m.Close() })
	return m
}

// client returns a publisher of the merchant's commands, as a shop would have.
func (w *fleetWorld) client(id string) *client.Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clients[id]; c != nil {
		return c
	}
	c, err := client.New(w.nc, client.WithPrefix(fleetPrefix), client.WithMerchant(id))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(c.Close)
	w.clients[id] = c
	return c
}

// submit publishes a reservation.submit of body with key at merchant id.
func (w *fleetWorld) submit(id, key string, body json.RawMessage) (*client.Command, error) {
	cmd, err := client.NewCommand(frontpay.ReservationSubmit, body, client.Key(key))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(w.t.Context(), 30*time.Second)
	defer cancel()
	if err := w.client(id).Publish(ctx, cmd); err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.sent = append(w.sent, cmd.ID())
	w.mu.Unlock()
	return cmd, nil
}

// mustSubmit is submit that ends the test on an error.
func (w *fleetWorld) mustSubmit(id, key string, body json.RawMessage) *client.Command {
	w.t.Helper()
	cmd, err := w.submit(id, key, body)
	if err != nil {
		w.t.Fatal(err)
	}
	return cmd
}

// await waits for the result of a command published at merchant id.
func (w *fleetWorld) await(id string, cmd *client.Command) (*client.Result, error) {
	ctx, cancel := context.WithTimeout(w.t.Context(), time.Minute)
	defer cancel()
	return w.client(id).Await(ctx, cmd.ID())
}

// mustSucceed waits for a command's success.
func (w *fleetWorld) mustSucceed(id string, cmd *client.Command) *client.Result {
	w.t.Helper()
	res, err := w.await(id, cmd)
	if err != nil {
		w.t.Fatalf("%s's %s %s: %v", id, cmd.Op(), cmd.Key(), err)
	}
	return res
}

// storedEvent is an event of a stream with the subject it was stored on.
type storedEvent struct {
	subject string
	schemas.Event
}

// stored returns every event of a stream.
func (w *fleetWorld) stored(stream string) []storedEvent {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, stream)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		w.t.Fatal(err)
	}
	batch, err := c.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		w.t.Fatal(err)
	}
	var out []storedEvent
	for m := range batch.Messages() {
		e := storedEvent{subject: m.Subject()}
		if err := json.Unmarshal(m.Data(), &e.Event); err != nil {
			w.t.Fatalf("%s holds %q: %v", stream, m.Data(), err)
		}
		out = append(out, e)
	}
	return out
}

// answers returns the result events of the results stream by the command they answer, each by
// its event id: a command answered once has one.
func (w *fleetWorld) answers() map[string]map[string]storedEvent {
	out := map[string]map[string]storedEvent{}
	for _, e := range w.stored(w.topo.ResultStream()) {
		if e.CausationID == "" {
			continue // a status event
		}
		if out[e.CausationID] == nil {
			out[e.CausationID] = map[string]storedEvent{}
		}
		out[e.CausationID][e.ID] = e
	}
	return out
}

// checkAnsweredOnce checks that every command published has exactly one result, and returns the
// answers. It waits for the results stream to hold one for each: a client can see a result
// before the stream stored it.
func (w *fleetWorld) checkAnsweredOnce() map[string]map[string]storedEvent {
	w.t.Helper()
	w.mu.Lock()
	sent := slices.Clone(w.sent)
	w.mu.Unlock()
	var answers map[string]map[string]storedEvent
	testworld.WaitFor(w.t, func() bool {
		answers = w.answers()
		return !slices.ContainsFunc(sent, func(id string) bool { return len(answers[id]) == 0 })
	}, "a stored result for every command")
	for _, id := range sent {
		if n := len(answers[id]); n != 1 {
			w.t.Errorf("command %s has %d results", id, n)
		}
	}
	return answers
}

// consumerInfo reads a consumer of the command stream; nil when it does not exist.
func (w *fleetWorld) consumerInfo(name string) *jetstream.ConsumerInfo {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, w.topo.CommandStream(), name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	} else if err != nil {
		w.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return info
}

// submits returns the reservation submits the sandbox applied with a token, in order.
func (w *fleetWorld) submits(token string) []sandbox.Effect {
	var out []sandbox.Effect
	for _, e := range w.sb.Ledger() {
		if e.Op == string(frontpay.ReservationSubmit) && e.Token == token {
			out = append(out, e)
		}
	}
	return out
}

// TestMerchantsOwnWorlds: three merchants, the same idempotency key and the same reservation at
// two of them: two reservations, each made with its merchant's token, each answered on its
// merchant's subject with the extension merchant; the third merchant's token sees no call of theirs.
func TestMerchantsOwnWorlds(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t, "shop1", "shop2", "shop3")
	w.writeMerchants("shop1", "shop2", "shop3")
	w.start(w.sb.URL)

	body := testworld.SubmitData()
	cmds := map[string]*client.Command{"shop1": w.mustSubmit("shop1", "order-1", body), "shop2": w.mustSubmit("shop2", "order-1", body)}
	uuids := map[string]string{}
	for id, cmd := range cmds {
		res := w.mustSucceed(id, cmd)
		uuids[id] = res.Value.(*frontpay.SubmitReservationResult).ReservationUUID
	}
	if uuids["shop1"] == uuids["shop2"] {
		t.Fatalf("one reservation %s for both merchants", uuids["shop1"])
	}
	for id, uuid := range uuids {
		effects := w.submits(w.token(id))
		if len(effects) != 1 || effects[0].UUID != uuid {
			t.Errorf("%s's token made the submits %+v, want one of %s", id, effects, uuid)
		}
	}
	if tr, err := w.sb.TokenTraffic(w.token("shop3")); err != nil || tr.Requests != 0 {
		t.Errorf("shop3's token: %+v %v, want no request", tr, err)
	}
	// shop3 works on: its own key of the same name is a first command too.
	third := w.mustSubmit("shop3", "order-1", body)
	w.mustSucceed("shop3", third)
	if n := len(w.submits(w.token("shop3"))); n != 1 {
		t.Errorf("shop3's token made %d submits, want 1", n)
	}
	cmds["shop3"] = third

	answers := w.checkAnsweredOnce()
	for id, cmd := range cmds {
		evs := answers[cmd.ID()]
		if len(evs) != 1 {
			t.Errorf("%s's command has %d results", id, len(evs))
		}
		for _, e := range evs {
			want := schemas.ResultSubject(fleetPrefix+id+".", frontpay.ReservationSubmit, true)
			if e.subject != want || e.Merchant != id || e.IdempotencyKey != "order-1" || e.Type != "reservation.submit.succeeded" {
				t.Errorf("%s's result: subject %s, merchant %q, key %q, type %s; want subject %s, merchant %s",
					id, e.subject, e.Merchant, e.IdempotencyKey, e.Type, want, id)
			}
		}
	}
}

// TestUnknownMerchantReplayed: a command of a merchant that is not in the file is answered
// invalid_command / unknownMerchant on its own result subject without any call; once the merchant
// is in the file (no restart), replay --merchant replays it and it succeeds, once. The replay of
// one merchant leaves another's failures alone.
func TestUnknownMerchantReplayed(t *testing.T) {
	w := newFleetWorld(t, "shop1", "ghost")
	w.writeMerchants("shop1")
	w.start(w.sb.URL)
	t.Setenv("NATS_URL", w.ns.URL)
	t.Setenv("FRONTPAY_SUBJECT_PREFIX", fleetPrefix)
	t.Setenv("FRONTPAY_MERCHANTS_FILE", w.file)

	// A failure of shop1's, which a replay of ghost's must leave.
	details, err := client.Details(schemas.NewID(), client.Key("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.client("shop1").Publish(t.Context(), details); err != nil {
		t.Fatal(err)
	}
	var f *client.Failure
	if _, err := w.await("shop1", details); !errors.As(err, &f) || f.Reason != schemas.NotFound {
		t.Fatalf("shop1's details of no reservation: %v", err)
	}

	calls := func() int {
		n := 0
		for _, tr := range w.sb.Traffic() {
			n += tr.Requests
		}
		return n
	}
	before := calls()
	cmd := w.mustSubmit("ghost", "g1", testworld.SubmitData())
	_, err = w.await("ghost", cmd)
	if !errors.As(err, &f) || f.Reason != schemas.InvalidCommand || f.Message != "unknownMerchant" {
		t.Fatalf("ghost's submit: %v, want invalid_command unknownMerchant", err)
	}
	if got := f.Event.Merchant; got != "ghost" {
		t.Errorf("the failure's merchant: %q", got)
	}
	if n := calls(); n != before {
		t.Errorf("the API was called %d times for the unknown merchant's command", n-before)
	}
	if evs := w.checkAnsweredOnce()[cmd.ID()]; len(evs) != 1 {
		t.Errorf("%d results for ghost's command", len(evs))
	} else {
		for _, e := range evs {
			if want := schemas.ResultSubject(fleetPrefix+"ghost.", frontpay.ReservationSubmit, false); e.subject != want {
				t.Errorf("ghost's failure on %s, want %s", e.subject, want)
			}
		}
	}

	w.writeMerchants("shop1", "ghost")
	testworld.WaitWithin(t, fleetReload, func() bool {
		return w.consumerInfo(consumer.ConsumerFor("ghost")) != nil
	}, "ghost's consumer, after ghost was added to the file")
	out, errOut, code := cliRun(t, settings{}, "", "replay", "--merchant", "ghost", "--yes")
	if code != exitOK || !strings.Contains(out, "replayed merchant=ghost reservation.submit key=g1") ||
		!strings.Contains(out, "1 selected, 1 replayed") || strings.Contains(out, "key=s1") {
		t.Fatalf("replay --merchant ghost: exit %d\n%s%s", code, out, errOut)
	}
	var succeeded []storedEvent
	testworld.WaitFor(t, func() bool {
		succeeded = nil
		for _, e := range w.stored(w.topo.ResultStream()) {
			if e.IdempotencyKey == "g1" && e.Type == "reservation.submit.succeeded" {
				succeeded = append(succeeded, e)
			}
		}
		return len(succeeded) > 0
	}, "the replayed command's success")
	if e := succeeded[0]; len(succeeded) != 1 || e.Merchant != "ghost" ||
		e.subject != schemas.ResultSubject(fleetPrefix+"ghost.", frontpay.ReservationSubmit, true) {
		t.Errorf("the replay's success: %d events, the first on %s of merchant %q", len(succeeded), e.subject, e.Merchant)
	}
	if n := len(w.submits(w.token("ghost"))); n != 1 {
		t.Errorf("ghost's token made %d submits, want 1", n)
	}
	out, errOut, code = cliRun(t, settings{}, "", "replay", "--merchant", "ghost", "--yes")
	if code != exitOK || !strings.Contains(out, "0 replayed") {
		t.Fatalf("a second replay --merchant ghost: exit %d\n%s%s", code, out, errOut)
	}
	w.checkAnsweredOnce()
}

// TestMerchantTokenRotated: while a merchant's commands flow, its token file gets a new token
// (the sandbox knows both, for the same account, and the old one is revoked once the worker
// uses the new one). The calls move to the new token within 30 s, and every command is
// answered exactly once, with success.
func TestMerchantTokenRotated(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t, "shop1")
	w.rates["shop1"] = 1200 // 20 commands a second flow
	w.writeMerchants("shop1")
	w.start(w.sb.URL)
	oldToken := w.token("shop1")

	// Four publishers, each waiting for its command's result before the next.
	var (
		mu       sync.Mutex
		answered int
		failed   []string
		ids      []string
	)
	flow, stop := context.WithCancel(t.Context())
	var publishers sync.WaitGroup
	for p := range 4 {
		publishers.Go(func() {
			for i := 0; flow.Err() == nil; i++ {
				cmd, err := w.submit("shop1", fmt.Sprintf("rotation-%d-%d", p, i), testworld.SubmitData())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, cmd.ID())
				mu.Unlock()
				_, err = w.await("shop1", cmd)
				mu.Lock()
				answered++
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", cmd.Key(), err))
				}
				mu.Unlock()
			}
		})
	}
	defer func() { stop(); publishers.Wait() }()
	flowing := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return answered >= n }
	}
	testworld.WaitFor(t, flowing(20), "commands flowing")

	newToken := "tok-shop1-rotated-SECRET"
	if err := w.sb.RotateToken(oldToken, newToken); err != nil {
		t.Fatal(err)
	}
	w.setToken("shop1", newToken)
	testworld.WaitWithin(t, fleetReload, func() bool { return len(w.submits(newToken)) > 0 }, "a submit with the new token")
	// The worker of the old token has stopped once ten calls of the new one followed its last.
	testworld.WaitFor(t, func() bool {
		ledger := w.sb.Ledger()
		lastOld := -1
		for i, e := range ledger {
			if e.Token == oldToken {
				lastOld = i
			}
		}
		n := 0
		for _, e := range ledger[lastOld+1:] {
			if e.Token == newToken {
				n++
			}
		}
		return n >= 10
	}, "the old token's last call")
	if err := w.sb.RevokeToken(oldToken); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	more := answered + 20
	mu.Unlock()
	testworld.WaitFor(t, flowing(more), "commands flowing after the old token was revoked")
	stop()
	publishers.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Errorf("%d of %d commands failed: %s", len(failed), len(ids), strings.Join(failed, "; "))
	}
	w.checkAnsweredOnce()
	if o, n := len(w.submits(oldToken)), len(w.submits(newToken)); o+n != len(ids) || n == 0 {
		t.Errorf("%d submits with the old token and %d with the new one, for %d commands", o, n, len(ids))
	}
}

// TestMerchantsAddedAndRemoved: the merchants file changes without a restart. Within 30 s a
// merchant added is served and a merchant removed is no longer: its commands wait in the stream
// (no answer, no dead letter, not answered as an unknown merchant's) until it is added back,
// within 30 s of that change too, and then each is answered once. A file with a fault changes
// nothing.
func TestMerchantsAddedAndRemoved(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t, "keep", "gone", "added")
	w.writeMerchants("keep", "gone")
	w.start(w.sb.URL)
	w.mustSucceed("gone", w.mustSubmit("gone", "before", testworld.SubmitData()))

	// A file with a fault is not taken, in part or at all: the merchants of before go on.
	w.rates["keep"] = -1
	w.writeMerchants("keep")
	testworld.WaitWithin(t, fleetReload, func() bool {
		return strings.Contains(w.log.String(), "merchants[0] (keep): rate: must be 0 (no limit) or more")
	}, "the faulty file refused")
	w.mustSucceed("gone", w.mustSubmit("gone", "after-a-faulty-file", testworld.SubmitData()))
	delete(w.rates, "keep")

	w.writeMerchants("keep", "added")
	testworld.WaitWithin(t, fleetReload, func() bool {
		if w.consumerInfo(consumer.ConsumerFor("added")) == nil {
			return false
		}
		gone := w.consumerInfo(consumer.ConsumerFor("gone"))
		return gone == nil || !slices.ContainsFunc(gone.PriorityGroups, func(g jetstream.PriorityGroupState) bool {
			return g.PinnedClientID != ""
		})
	}, "the change: added's consumer made, gone's without an owner")
	waiting := []*client.Command{w.mustSubmit("gone", "while-gone-1", testworld.SubmitData()), w.mustSubmit("gone", "while-gone-2", testworld.SubmitData())}
	w.mustSucceed("added", w.mustSubmit("added", "new-1", testworld.SubmitData()))
	w.mustSucceed("keep", w.mustSubmit("keep", "keep-1", testworld.SubmitData()))
	testworld.WaitFor(t, func() bool {
		info := w.consumerInfo(consumer.UnknownMerchantsConsumer)
		return info != nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "the unknown merchants' consumer past gone's commands")
	answers := w.answers()
	for _, cmd := range waiting {
		for _, e := range answers[cmd.ID()] {
			t.Errorf("gone's command %s, published after gone was removed, was answered: %s %s", cmd.Key(), e.Type, e.Data)
		}
	}
	if info := w.consumerInfo(consumer.ConsumerFor("gone")); info == nil {
		t.Error("gone's consumer was deleted")
	} else if info.NumPending+uint64(info.NumAckPending) != uint64(len(waiting)) {
		t.Errorf("gone's consumer holds %d commands not delivered and %d not acknowledged, want %d waiting",
			info.NumPending, info.NumAckPending, len(waiting))
	}
	dl, err := w.js.Stream(t.Context(), w.topo.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := dl.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead letters: %+v %v", info.State, err)
	}

	w.writeMerchants("keep", "added", "gone")
	testworld.WaitWithin(t, fleetReload, func() bool {
		answers := w.answers()
		return !slices.ContainsFunc(waiting, func(cmd *client.Command) bool { return len(answers[cmd.ID()]) == 0 })
	}, "gone's waiting commands answered once gone is added back")
	for _, cmd := range waiting {
		w.mustSucceed("gone", cmd)
	}
	if n := len(w.submits(w.token("gone"))); n != 2+len(waiting) {
		t.Errorf("gone's token made %d submits, want %d", n, 2+len(waiting))
	}
	if n := len(w.submits(w.token("added"))); n != 1 {
		t.Errorf("added's token made %d submits, want 1", n)
	}
	w.checkAnsweredOnce()
}

// tokenFront is one replica's way in to the sandbox: it counts the calls it passes on by bearer
// token, so that a merchant's calls tell which replica made them.
type tokenFront struct {
	URL   string
	mu    sync.Mutex
	calls map[string]int
}

func newTokenFront(t *testing.T, api http.Handler) *tokenFront {
	f := &tokenFront{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		f.mu.Lock()
		f.calls[token]++
		f.mu.Unlock()
		api.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// count returns the calls made with token.
func (f *tokenFront) count(token string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[token]
}

// owners publishes a submit of each merchant, waits for the results and returns, for each
// merchant, the replica (the index of its front) that made its call: -1 where more than one did.
func (w *fleetWorld) owners(fronts []*tokenFront, merchants []string) map[string]int {
	w.t.Helper()
	before := make([]map[string]int, len(fronts))
	for i, f := range fronts {
		before[i] = map[string]int{}
		for _, id := range merchants {
			before[i][id] = f.count(w.token(id))
		}
	}
	cmds := map[string]*client.Command{}
	for _, id := range merchants {
		cmds[id] = w.mustSubmit(id, "round-"+schemas.NewID(), testworld.SubmitData())
	}
	out := map[string]int{}
	for _, id := range merchants {
		w.mustSucceed(id, cmds[id])
		out[id] = -1
		for i, f := range fronts {
			if f.count(w.token(id)) > before[i][id] {
				if out[id] != -1 {
					out[id] = -1
					break
				}
				out[id] = i
			}
		}
	}
	return out
}

// spread waits until each of the replicas behind fronts makes the calls of per merchants, and
// returns which makes whose.
func (w *fleetWorld) spread(fronts []*tokenFront, merchants []string, per int) map[string]int {
	w.t.Helper()
	var owner map[string]int
	testworld.WaitFor(w.t, func() bool {
		owner = w.owners(fronts, merchants)
		load := make([]int, len(fronts))
		for _, i := range owner {
			if i < 0 {
				return false
			}
			load[i]++
		}
		return !slices.ContainsFunc(load, func(n int) bool { return n != per })
	}, fmt.Sprintf("%d merchants on each replica", per))
	return owner
}

// TestMerchantsSpreadAndHandedOver: two replicas share four merchants, two each; one that stops
// hands its merchants over at once: the other answers them without waiting for the pins to
// expire (FRONTPAY_PIN_TTL is longer than the wait).
func TestMerchantsSpreadAndHandedOver(t *testing.T) {
	t.Parallel()
	merchants := []string{"shop1", "shop2", "shop3", "shop4"}
	w := newFleetWorld(t, merchants...)
	w.writeMerchants(merchants...)
	fronts := []*tokenFront{newTokenFront(t, w.sb), newTokenFront(t, w.sb)}
	replicas := []*app.Main{w.start(fronts[0].URL), w.start(fronts[1].URL)}
	w.spread(fronts, merchants, 2)

	if err := replicas[0].Close(); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	cmds := map[string]*client.Command{}
	for _, id := range merchants {
		before[id] = fronts[0].count(w.token(id))
		cmds[id] = w.mustSubmit(id, "after-stop-"+id, testworld.SubmitData())
	}
	testworld.WaitWithin(t, fleetReload, func() bool {
		answers := w.answers()
		for _, cmd := range cmds {
			if len(answers[cmd.ID()]) == 0 {
				return false
			}
		}
		return true
	}, "every merchant's command answered by the replica left")
	for _, id := range merchants {
		w.mustSucceed(id, cmds[id])
		if n := fronts[0].count(w.token(id)); n != before[id] {
			t.Errorf("the stopped replica made %d calls for %s", n-before[id], id)
		}
	}
	w.checkAnsweredOnce()
}

// TestMerchantCallbacks: a merchant's callbacks arrive at GET /callbacks/frontpay/<merchant> and
// are checked with that merchant's secret; another merchant's secret is refused. A callback that
// arrives at a replica that does not run the merchant is verified by the one that does (the
// read-back spends that replica's budget of the merchant's token) and published once, on the
// merchant's status subject with the extension merchant.
func TestMerchantCallbacks(t *testing.T) {
	t.Parallel()
	merchants := []string{"shop1", "shop2"}
	w := newFleetWorld(t, merchants...)
	w.setSecret("shop1", "cb-shop1-SECRET")
	w.setSecret("shop2", "cb-shop2-SECRET")
	w.writeMerchants(merchants...)
	fronts := []*tokenFront{newTokenFront(t, w.sb), newTokenFront(t, w.sb)}
	replicas := []*app.Main{w.start(fronts[0].URL), w.start(fronts[1].URL)}
	owner := w.spread(fronts, merchants, 1)

	// A reservation of each merchant's, paid by the customer.
	uuids := map[string]string{}
	for _, id := range merchants {
		var req frontpay.SubmitReservationRequest
		if err := json.Unmarshal(testworld.SubmitData(), &req); err != nil {
			t.Fatal(err)
		}
		uuids[id] = schemas.NewID()
		if err := w.sb.ReserveFor(w.token(id), uuids[id], &req); err != nil {
			t.Fatal(err)
		}
	}
	// callback sends the callback of a reservation's payment (100 NOK), signed with secret.
	callback := func(replica *app.Main, path, uuid, secret string) int {
		t.Helper()
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		q := url.Values{"orderUuid": {uuid}, "status": {"reserved"}, "amount": {"100.00"}, "paymentMethod": {"visa"},
			"timestamp": {ts}, "checksum": {sandbox.Checksum(secret, uuid, "reserved", "100.00", ts)}}
		resp, err := http.Get("http://" + replica.HTTPAddr + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, r := range replicas {
		for _, c := range []struct {
			path, uuid, secret string
			want               int
		}{
			{"/callbacks/frontpay/shop1", uuids["shop1"], w.secrets["shop2"], http.StatusUnauthorized},
			{"/callbacks/frontpay/shop2", uuids["shop2"], w.secrets["shop1"], http.StatusUnauthorized},
			{"/callbacks/frontpay/shop9", uuids["shop1"], w.secrets["shop1"], http.StatusNotFound},
			{"/callbacks/frontpay", uuids["shop1"], w.secrets["shop1"], http.StatusNotFound},
		} {
			if code := callback(r, c.path, c.uuid, c.secret); code != c.want {
				t.Errorf("%s of %s's reservation: %d, want %d", c.path, c.uuid, code, c.want)
			}
		}
	}

	for _, id := range merchants {
		runs, other := owner[id], 1-owner[id]
		tok := w.token(id)
		before := []int{fronts[0].count(tok), fronts[1].count(tok)}
		// Answered 503 while the owner cannot take it yet; Front Payment sends it again.
		testworld.WaitFor(t, func() bool {
			code := callback(replicas[other], "/callbacks/frontpay/"+id, uuids[id], w.secrets[id])
			if code != http.StatusAccepted && code != http.StatusServiceUnavailable {
				t.Fatalf("%s's callback: %d", id, code)
			}
			return code == http.StatusAccepted
		}, id+"'s callback taken by the replica that does not run it")
		var changes []storedEvent
		testworld.WaitFor(t, func() bool {
			changes = nil
			for _, e := range w.stored(w.topo.ResultStream()) {
				if e.Subject == uuids[id] {
					changes = append(changes, e)
				}
			}
			return len(changes) > 0
		}, id+"'s status change")
		var data schemas.StatusChange
		if err := json.Unmarshal(changes[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		if want := schemas.StatusSubject(fleetPrefix+id+".", "reservation"); len(changes) != 1 || changes[0].subject != want ||
			changes[0].Merchant != id || data.Status != "reserved" {
			t.Errorf("%s's status changes: %d, the first on %s of merchant %q, %+v; want one on %s",
				id, len(changes), changes[0].subject, changes[0].Merchant, data, want)
		}
		if n := fronts[other].count(tok) - before[other]; n != 0 {
			t.Errorf("the replica that does not run %s made %d calls with its token", id, n)
		}
		if fronts[runs].count(tok) == before[runs] {
			t.Errorf("the replica that runs %s did not read the reservation back", id)
		}
	}
	w.checkAnsweredOnce()
}

// TestMerchantsFileRefusedAtStart: the worker refuses to start with a bad merchants file, naming
// the merchant and the field of every fault, and never a token; and a merchants file needs a
// subject prefix.
func TestMerchantsFileRefusedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	writeAtomic(t, tok, "tok-start-SECRET\n")
	file := filepath.Join(dir, "merchants.yaml")
	writeAtomic(t, file, `merchants:
  - id: Shop1
    tokenFile: `+tok+`
  - id: shop2
    tokenFile: `+filepath.Join(dir, "missing")+`
  - id: shop2
    tokenFile: `+tok+`
    apiUrl: ftp://example.org
    rate: -5
`)
	env := []string{"FRONTPAY_MERCHANTS_FILE=" + file, "NATS_URL=nats://127.0.0.1:1", "FRONTPAY_HTTP_ADDR=127.0.0.1:0"}
	out, code := cliProcess(t, append(env, "FRONTPAY_SUBJECT_PREFIX="+fleetPrefix), "run")
	if code != exitUsage {
		t.Fatalf("run with a bad merchants file: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"merchants[0] (Shop1): id:",
		"merchants[1] (shop2): tokenFile: cannot read the file",
		"merchants[2] (shop2): id: also the id of merchants[1]",
		"merchants[2] (shop2): apiUrl:",
		"merchants[2] (shop2): rate:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRET") {
		t.Errorf("the refusal shows the token:\n%s", out)
	}

	writeAtomic(t, file, "merchants:\n  - id: shop1\n    tokenFile: "+tok+"\n")
	out, code = cliProcess(t, env, "run")
	if code != exitUsage || !strings.Contains(out, "FRONTPAY_SUBJECT_PREFIX: required with FRONTPAY_MERCHANTS_FILE") {
		t.Errorf("run with a merchants file and no prefix: exit %d\n%s", code, out)
	}
}
