package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The NATS accounts of a deployment that serves several merchants (CONTRACT.md section 9), and
// the durable results consumers it lets each shop read.
const (
	accountsConf      = "nats/accounts/nats-server.conf"
	accountsConsumers = "nats/accounts/consumers"
)

// nkeyVar is a public key variable of accountsConf: <USER>_NKEY: U...
var nkeyVar = regexp.MustCompile(`(?m)^([A-Z0-9_]+)_NKEY: (U[A-Z2-7]{55})$`)

// accountsServer is a nats-server started from accountsConf as it is, but for where it listens
// and stores, and the example public keys: each is replaced by a fresh user key whose seed the
// test holds.
type accountsServer struct {
	url  string
	keys map[string]nkeys.KeyPair // by user: worker, shop1, shop2 (the variables WORKER_NKEY, ...)
}

func startAccountsServer(t *testing.T) *accountsServer {
	t.Helper()
	b, err := os.ReadFile(accountsConf)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{} // example public key → user
	for _, m := range nkeyVar.FindAllStringSubmatch(string(b), -1) {
		users[m[2]] = strings.ToLower(m[1])
	}
	opts, err := server.ProcessConfigFile(accountsConf)
	if err != nil {
		t.Fatalf("%s: %v", accountsConf, err)
	}
	if len(opts.Users) > 0 || !opts.JetStream {
		t.Fatalf("%s: %d users with passwords, JetStream %v: this test knows nkey users with JetStream only", accountsConf, len(opts.Users), opts.JetStream)
	}
	s := &accountsServer{keys: map[string]nkeys.KeyPair{}}
	for _, u := range opts.Nkeys {
		name, ok := users[u.Nkey]
		if !ok {
			t.Fatalf("%s: user %s is not given by a <USER>_NKEY variable", accountsConf, u.Nkey)
		}
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		if u.Nkey, err = kp.PublicKey(); err != nil {
			t.Fatal(err)
		}
		s.keys[name] = kp
	}
	for _, name := range []string{"worker", "shop1", "shop2"} {
		if s.keys[name] == nil {
			t.Fatalf("%s: no user %s", accountsConf, name)
		}
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	s.url = testworld.Server(t, opts).ClientURL()
	return s
}

// natsUser is a connection of a user of accountsConf, with the permission violations the
// server reports to it, in the order it reports them.
type natsUser struct {
	*nats.Conn
	name       string
	violations chan error
}

func (s *accountsServer) connect(t *testing.T, name string, opts ...nats.Option) *natsUser {
	t.Helper()
	kp := s.keys[name]
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	u := &natsUser{name: name, violations: make(chan error, 100)}
	opts = append(opts, nats.Name(name), nats.Nkey(pub, kp.Sign),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				u.violations <- err
			}
		}))
	if u.Conn, err = nats.Connect(s.url, opts...); err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(u.Close)
	// What is left was not expected; it explains a publish or a request that timed out.
	t.Cleanup(func() {
		for len(u.violations) > 0 {
			t.Errorf("%s: the server refused: %v", name, <-u.violations)
		}
	})
	return u
}

// shop connects as a merchant's shop, with the inbox prefix its grant allows.
func (s *accountsServer) shop(t *testing.T, merchant string) *natsUser {
	t.Helper()
	return s.connect(t, merchant, nats.CustomInboxPrefix("_INBOX_"+merchant))
}

// denied waits for the server to refuse the user's last publish or subscription on subject
// (what: "Publish" or "Subscription"). Every violation reported before it is an error.
func (u *natsUser) denied(t *testing.T, what, subject string) {
	t.Helper()
	if err := u.Flush(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("for %s to %q", what, subject)
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case err := <-u.violations:
			if strings.Contains(err.Error(), want) {
				return
			}
			t.Errorf("%s: %v", u.name, err)
		case <-deadline.C:
			t.Errorf("%s: %s to %s was allowed", u.name, what, subject)
			return
		}
	}
}

// allowedSoFar checks that the server refused nothing the user did so far: it publishes where
// no user may, and every violation reported before that one is an error.
func (u *natsUser) allowedSoFar(t *testing.T) {
	t.Helper()
	const nowhere = "deploy-test.nobody.may.publish.here"
	if err := u.Publish(nowhere, nil); err != nil {
		t.Fatal(err)
	}
	u.denied(t, "Publish", nowhere)
}

// publishDenied publishes data on subject, with a reply subject in the user's inbox as an API
// request has, and waits for the server to refuse it.
func (u *natsUser) publishDenied(t *testing.T, subject string, data []byte) {
	t.Helper()
	if err := u.PublishRequest(subject, u.NewInbox(), data); err != nil {
		t.Fatal(err)
	}
	u.denied(t, "Publish", subject)
}

// subscribeDenied subscribes to subject and waits for the server to refuse it; the subscription
// stays, so that the caller can show that nothing arrives.
func (u *natsUser) subscribeDenied(t *testing.T, subject string) *nats.Subscription {
	t.Helper()
	sub, err := u.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	u.denied(t, "Subscription", subject)
	return sub
}

// merchantsSetup is a server from accountsConf on which the worker has set up what it sets up
// in a deployment of several merchants, and the operator has made each shop's results
// consumer from accountsConsumers.
type merchantsSetup struct {
	prefix string            // FRONTPAY_SUBJECT_PREFIX of merchantsOverlay, for which accountsConf is written
	topo   consumer.Topology // names and subjects of that prefix
	srv    *accountsServer
	worker *natsUser
	js     jetstream.JetStream // the worker's
	kv     jetstream.KeyValue
	pub    *publisher.Publisher // the worker's
	// consumers are the worker's handles of the merchants' consumers, each kept for every pull:
	// it carries the pin, and a pull without it waits for the pin to expire.
	consumers map[string]jetstream.Consumer
}

// exampleMerchants are the merchants of accountsConf.
var exampleMerchants = []string{"shop1", "shop2"}

// subjects is the prefix of a merchant's subjects: <prefix><merchant>.
func (m *merchantsSetup) subjects(t *testing.T, merchant string) string {
	t.Helper()
	p, err := schemas.MerchantPrefix(m.prefix, merchant)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func setupMerchants(ctx context.Context, t *testing.T) *merchantsSetup {
	t.Helper()
	m := &merchantsSetup{srv: startAccountsServer(t), consumers: map[string]jetstream.Consumer{}}
	m.prefix = configMapData(t, find(build(t, merchantsOverlay), "ConfigMap", "frontpay-worker"))["FRONTPAY_SUBJECT_PREFIX"]
	if m.prefix == "" {
		t.Fatalf("%s: no FRONTPAY_SUBJECT_PREFIX: the merchants' streams cannot be made without one", merchantsOverlay)
	}
	m.topo = consumer.Topology{Prefix: m.prefix, Merchants: true}
	m.worker = m.srv.connect(t, "worker")
	var err error
	if m.js, err = jetstream.New(m.worker.Conn); err != nil {
		t.Fatal(err)
	}
	m.pub = publisher.New(m.js, nil, 0)

	// The worker's set-up (CONTRACT.md section 9), as the worker does it with its own user: the
	// streams with the merchant as a wildcard first token, the bucket, the unknown merchants'
	// consumer and a pinned consumer per merchant.
	if m.kv, err = m.topo.Ensure(ctx, m.js); err != nil {
		t.Fatalf("the worker sets up: %v", err)
	}
	for _, merchant := range exampleMerchants {
		if err := m.topo.EnsureMerchant(ctx, m.js, m.kv, merchant); err != nil {
			t.Fatalf("the worker adds merchant %s: %v", merchant, err)
		}
		if m.consumers[merchant], err = m.js.Consumer(ctx, m.topo.CommandStream(), consumer.ConsumerFor(merchant)); err != nil {
			t.Fatalf("consumer of %s: %v", merchant, err)
		}
	}

	// The operator's results consumers, as `nats consumer add <results stream> --config` makes
	// them (here with the worker's credentials, which have the JetStream API).
	files, err := filepath.Glob(filepath.Join(accountsConsumers, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(exampleMerchants) {
		t.Fatalf("%s holds %d consumers, want one for each of %v", accountsConsumers, len(files), exampleMerchants)
	}
	results := m.topo.ResultStream()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Durable string `json:"durable_name"`
			Filter  string `json:"filter_subject"`
		}
		mustJSON(t, f, b, &c)
		merchant := strings.TrimSuffix(filepath.Base(f), "-results.json")
		if c.Durable != merchant+"-results" || c.Filter != m.subjects(t, merchant)+">" {
			t.Errorf("%s: durable %q filter %q, want %s-results and %s>", f, c.Durable, c.Filter, merchant, m.subjects(t, merchant))
		}
		req, err := json.Marshal(map[string]any{"stream_name": results, "config": json.RawMessage(b)})
		if err != nil {
			t.Fatal(err)
		}
		jsAPI(t, m.worker.Conn, "$JS.API.CONSUMER.CREATE."+results+"."+c.Durable, req)
	}
	return m
}

// publishResult publishes, as the worker, the success of a command that arrived as msg.
func (m *merchantsSetup) publishResult(ctx context.Context, t *testing.T, merchant string, msg jetstream.Msg) {
	t.Helper()
	op, ok := schemas.OpFromSubject(m.subjects(t, merchant), msg.Subject())
	if !ok {
		t.Fatalf("%s is no command subject of %s", msg.Subject(), merchant)
	}
	if _, err := schemas.ParseCommand(op, msg.Data(), time.Now()); err != nil {
		t.Fatal(err)
	}
	ev, err := schemas.NewSuccess("frontpay-worker", schemas.OriginOf(op, msg.Data()),
		schemas.Success{HTTPStatus: 202, Message: "reservationCapturedSuccessfully", Response: json.RawMessage(`{"uuid":"CAP123234"}`)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.publishEvent(ctx, t, schemas.ResultSubject(m.subjects(t, merchant), op, true), ev)
}

func (m *merchantsSetup) publishEvent(ctx context.Context, t *testing.T, subject string, ev schemas.Event) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.pub.Publish(ctx, subject, ev.ID, b); err != nil {
		t.Fatalf("the worker publishes %s: %v", subject, err)
	}
}

// fetch pulls one message, as the worker, from a merchant's consumer, in the priority group
// the worker pulls in.
func (m *merchantsSetup) fetch(t *testing.T, merchant string) jetstream.Msg {
	t.Helper()
	batch, err := m.consumers[merchant].Fetch(1, jetstream.FetchPriorityGroup(consumer.PriorityGroup), jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		return msg
	}
	t.Fatalf("the worker pulled nothing from frontpay-%s: %v", merchant, batch.Error())
	return nil
}

// streamMsgs is the number of messages in a stream.
func (m *merchantsSetup) streamMsgs(ctx context.Context, t *testing.T, name string) uint64 {
	t.Helper()
	s, err := m.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

const testReservation = "RES1943140879"

func captureCommand(t *testing.T) *client.Command {
	t.Helper()
	cmd, err := client.Capture(testReservation, &frontpay.CaptureRequest{
		Products:   frontpay.Lines[frontpay.CaptureLine]{{ID: frontpay.Num("298"), Amount: frontpay.Num("5")}},
		GrandTotal: frontpay.Num("5"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestNATSAccountsWorkAsDeployed: with the users of accountsConf, a shop publishes a command
// with the client package and gets its result, its status event by core subscription and both
// from its results consumer; the worker sets up, pulls, acks, keeps records, publishes results,
// status events, dead letters and answers for unknown merchants, forwards callbacks to another
// replica and re-publishes commands; and the server refuses none of it.
func TestNATSAccountsWorkAsDeployed(t *testing.T) {
	ctx := testworld.Context(t)
	m := setupMerchants(ctx, t)
	shop1 := m.srv.shop(t, "shop1")
	s1 := m.subjects(t, "shop1")

	// A command and its result, as a shop sends and awaits it.
	c1, err := client.New(shop1.Conn, client.WithPrefix(m.prefix), client.WithMerchant("shop1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	status, err := shop1.SubscribeSync(schemas.StatusSubject(s1, "reservation"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := captureCommand(t)
	if err := c1.Publish(ctx, cmd); err != nil {
		t.Fatalf("shop1 publishes its command: %v", err)
	}
	msg := m.fetch(t, "shop1")
	if err := msg.InProgress(); err != nil {
		t.Fatal(err)
	}
	// The records: created, updated and read, and watched as replicas watch each other.
	watch, err := m.kv.Watch(ctx, "deploy-test.>", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatalf("the worker watches its bucket: %v", err)
	}
	defer func() { _ = watch.Stop() }()
	rev, err := m.kv.Create(ctx, "deploy-test.shop1.record", []byte("sending"))
	if err != nil {
		t.Fatalf("the worker creates a record: %v", err)
	}
	if _, err := m.kv.Update(ctx, "deploy-test.shop1.record", []byte("succeeded"), rev); err != nil {
		t.Fatalf("the worker updates a record: %v", err)
	}
	if e, err := m.kv.Get(ctx, "deploy-test.shop1.record"); err != nil || string(e.Value()) != "succeeded" {
		t.Fatalf("the worker reads its record: %v", err)
	}
	select {
	case e := <-watch.Updates():
		if e == nil || e.Key() != "deploy-test.shop1.record" {
			t.Fatalf("the worker's watch saw %v", e)
		}
	case <-ctx.Done():
		t.Fatal("the worker's watch saw nothing")
	}
	m.publishResult(ctx, t, "shop1", msg)
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("the worker acks: %v", err)
	}
	res, err := c1.Await(ctx, cmd.ID())
	if err != nil {
		t.Fatalf("shop1 awaits its result: %v", err)
	}
	if p, ok := res.Value.(*frontpay.PaymentResult); !ok || p.UUID != "CAP123234" {
		t.Errorf("shop1's result: %+v", res.Value)
	}

	// A status event, seen by the shop's subscription.
	st, err := schemas.NewStatus("frontpay-worker", "shop1", "reservation", schemas.StatusChange{
		UUID: testReservation, Status: "captured", Amount: "5", At: time.Now().UTC().Format(time.RFC3339), Source: "callback",
	})
	if err != nil {
		t.Fatal(err)
	}
	m.publishEvent(ctx, t, schemas.StatusSubject(s1, "reservation"), st)
	if got, err := status.NextMsg(10 * time.Second); err != nil || !strings.Contains(string(got.Data), st.ID) {
		t.Fatalf("shop1's status subscription: %v", err)
	}

	// Both again from shop1's results consumer.
	js1, err := jetstream.New(shop1.Conn)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := js1.Consumer(ctx, m.topo.ResultStream(), "shop1-results")
	if err != nil {
		t.Fatalf("shop1 opens its results consumer: %v", err)
	}
	batch, err := rc.Fetch(2, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for r := range batch.Messages() {
		subjects = append(subjects, r.Subject())
		if err := r.DoubleAck(ctx); err != nil {
			t.Fatalf("shop1 acks a result: %v", err)
		}
	}
	if want := []string{s1 + "reservation.capture.succeeded", s1 + "reservation.status.changed"}; !slices.Equal(subjects, want) {
		t.Errorf("shop1 read %v from its results consumer (%v), want %v", subjects, batch.Error(), want)
	}

	// A message that is not a command goes to the dead letters.
	if _, err := js1.Publish(ctx, s1+"reservation.capture.requested", []byte("not json")); err != nil {
		t.Fatalf("shop1 publishes: %v", err)
	}
	junk := m.fetch(t, "shop1")
	if err := m.pub.DeadLetter(ctx, schemas.DeadLetterSubject(m.prefix, junk.Subject()), junk, "not a JSON object"); err != nil {
		t.Fatalf("the worker publishes a dead letter: %v", err)
	}
	if err := junk.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if n := m.streamMsgs(ctx, t, m.topo.DeadLetterStream()); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}

	// The answer to a command of a merchant that is not in the file.
	unknown, err := schemas.NewFailure("frontpay-worker", schemas.OriginOf(frontpay.ReservationCapture, cmd.JSON()),
		schemas.Failure{Reason: schemas.InvalidCommand, Message: "unknownMerchant", Command: cmd.JSON()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.publishEvent(ctx, t, m.subjects(t, "shop9")+"reservation.capture.failed", unknown)

	// A callback forwarded to the replica that owns the merchant, and its answer.
	owner := m.srv.connect(t, "worker")
	sub, err := owner.Subscribe(m.prefix+"frontpay.callback.*", func(r *nats.Msg) { _ = r.Respond([]byte("done")) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := owner.Flush(); err != nil {
		t.Fatal(err)
	}
	if r, err := m.worker.Request(m.prefix+"frontpay.callback.shop1", []byte("orderUuid=ODR1"), 10*time.Second); err != nil || string(r.Data) != "done" {
		t.Fatalf("a callback forwarded to the owner: %v", err)
	}

	// `frontpay-worker replay` re-publishes a command with the worker's credentials.
	if err := m.pub.Publish(ctx, s1+"reservation.capture.requested", schemas.NewID(), cmd.JSON()); err != nil {
		t.Fatalf("the worker re-publishes a command: %v", err)
	}

	for _, u := range []*natsUser{m.worker, owner, shop1} {
		u.allowedSoFar(t)
	}
}

// TestNATSAccountsIsolateShops: a shop cannot publish another shop's commands, results, status
// events, dead letters, records or callbacks, nor its own results; it cannot read another's
// results, commands, dead letters or inbox, use the JetStream API beyond its results consumer,
// or pull the worker's consumers; and nothing it tried is stored.
func TestNATSAccountsIsolateShops(t *testing.T) {
	ctx := testworld.Context(t)
	m := setupMerchants(ctx, t)
	shop1 := m.srv.shop(t, "shop1")
	p, s1, s2 := m.prefix, m.subjects(t, "shop1"), m.subjects(t, "shop2")
	results, commands := m.topo.ResultStream(), m.topo.CommandStream()
	cmd := captureCommand(t).JSON()
	stores := []string{commands, results, m.topo.DeadLetterStream(), "KV_" + m.topo.StateBucket()}
	before := map[string]uint64{}
	for _, s := range stores {
		before[s] = m.streamMsgs(ctx, t, s) // the bucket holds the worker's marks of its merchants
	}

	for _, subject := range []string{
		s2 + "reservation.capture.requested", // another shop's command
		s1 + "reservation.capture.succeeded", // a result, its own
		s1 + "reservation.capture.failed",
		s2 + "reservation.capture.succeeded", // another's
		s1 + "reservation.status.changed",    // a status event
		schemas.DeadLetterSubject(p, s1+"reservation.capture.requested"),
		p + "frontpay.callback.shop1",                         // a forwarded callback
		"$KV." + m.topo.StateBucket() + ".deploy-test.forged", // a record
		"$JS.API.STREAM.INFO." + results,
		"$JS.API.STREAM.LIST",
		"$JS.API.STREAM.MSG.GET." + results,
		"$JS.API.DIRECT.GET." + results,
		"$JS.API.CONSUMER.CREATE." + results + ".shop1-mine." + s1 + "reservation.capture.succeeded",
		"$JS.API.CONSUMER.DURABLE.CREATE." + results + ".shop1-results",
		"$JS.API.CONSUMER.DELETE." + results + ".shop1-results",
		"$JS.API.CONSUMER.MSG.NEXT." + results + ".shop2-results",
		"$JS.API.CONSUMER.MSG.NEXT." + commands + ".frontpay-shop2", // the worker's
		"$JS.ACK." + commands + ".frontpay-shop1.1.1.1.0.0",
		"_INBOX.forged", // the worker's inbox
	} {
		shop1.publishDenied(t, subject, cmd)
	}
	for _, s := range stores {
		if n := m.streamMsgs(ctx, t, s); n != before[s] {
			t.Errorf("%s stored %d messages that shop1 was refused", s, n-before[s])
		}
	}

	// Subscriptions the server refuses; the one to shop2's result stays, to show that nothing
	// comes: the worker publishes shop2's result before shop1's, so it would be there first.
	theirs := shop1.subscribeDenied(t, s2+"reservation.capture.succeeded")
	for _, subject := range []string{
		s2 + "*.*.failed", s2 + "reservation.status.changed", p + "*.*.*.succeeded", ">",
		s1 + "reservation.capture.requested", p + "frontpay.deadletter.>", p + "frontpay.callback.*",
		"_INBOX.>", "_INBOX_shop2.>", "$KV." + m.topo.StateBucket() + ".>",
	} {
		shop1.subscribeDenied(t, subject)
	}
	mine, err := shop1.SubscribeSync(s1 + "reservation.capture.succeeded")
	if err != nil {
		t.Fatal(err)
	}
	if err := shop1.Flush(); err != nil {
		t.Fatal(err)
	}
	shop2 := m.srv.shop(t, "shop2")
	for _, c := range []struct {
		user     *natsUser
		merchant string
	}{{shop2, "shop2"}, {shop1, "shop1"}} {
		cl, err := client.New(c.user.Conn, client.WithPrefix(p), client.WithMerchant(c.merchant))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Publish(ctx, captureCommand(t)); err != nil {
			t.Fatalf("%s publishes its command: %v", c.merchant, err)
		}
	}
	for _, merchant := range []string{"shop2", "shop1"} {
		msg := m.fetch(t, merchant)
		m.publishResult(ctx, t, merchant, msg)
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mine.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("shop1's own result: %v", err)
	}
	if n, _, _ := theirs.Pending(); n != 0 {
		t.Errorf("shop1 received %d of shop2's results", n)
	}
	for _, u := range []*natsUser{shop1, shop2} {
		u.allowedSoFar(t)
	}
}

// TestNATSMerchantsNeedAPrefix: without a subject prefix, the merchants' streams would begin
// with a wildcard, and nats-server refuses them, which is why nats/accounts and merchantsOverlay
// use one. Should a server accept them one day, this test says the prefix is no longer needed.
func TestNATSMerchantsNeedAPrefix(t *testing.T) {
	js := testworld.JetStream(t).JS
	commands := consumer.Topology{Prefix: "*."}.Streams()[0]
	_, err := js.CreateStream(t.Context(), commands)
	if err == nil || !strings.Contains(err.Error(), "overlap with jetstream api") {
		t.Errorf("a stream of %v: %v, want refused as overlapping the JetStream API", commands.Subjects[:2], err)
	}
}

// TestNATSAccountsRefuseStrangers: no connection without a user of the file.
func TestNATSAccountsRefuseStrangers(t *testing.T) {
	s := startAccountsServer(t)
	if nc, err := nats.Connect(s.url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("a connection without credentials was accepted")
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(s.url, nats.NoReconnect(), nats.Nkey(pub, kp.Sign)); err == nil {
		nc.Close()
		t.Error("a connection with an nkey the file does not name was accepted")
	}
}
