package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// clusterWorker is one worker Main of a cluster test, with its log.
type clusterWorker struct {
	name string
	main *Main
	log  *testworld.SyncBuffer
}

// startClusterWorker runs a whole worker in this process against the cluster at urls with
// FRONTPAY_REPLICAS=3; its events carry source name.
func startClusterWorker(tb testing.TB, urls, apiURL, name string, concurrency int) *clusterWorker {
	tb.Helper()
	cfg := &Config{
		NATSConfig: NATSConfig{NATSURL: urls},
		APIURL:     apiURL, APIToken: sandboxToken, APITimeout: 5 * time.Second, MaxAttempts: 3,
		RetryInitial: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, HTTPAddr: "127.0.0.1:0",
		Concurrency: concurrency, AckWait: 2 * time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: 3 * time.Second,
		LeaseMargin: 500 * time.Millisecond, Replicas: 3, WorkerName: name,
	}
	w := &clusterWorker{name: name, log: &testworld.SyncBuffer{}}
	w.main = NewMain(cfg, slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", name))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.main.Run(ctx); err != nil {
		tb.Fatalf("%s: %v\n%s", name, err, w.log.String())
	}
	tb.Cleanup(func() { _ = w.main.Close() })
	return w
}

// crash stops the worker as abruptly as a process can be stopped in-process: its NATS connection
// is cut without draining (acks, record writes and publishes in flight are lost, calls already at
// the API go on), then the rest of it is released.
func (w *clusterWorker) crash() {
	w.main.nc.Close()
	_ = w.main.Close()
}

// problems returns the worker's log lines at WARN and above, but for the disconnect that
// closing it logs.
func (w *clusterWorker) problems() []string {
	return w.lines(func(line string) bool {
		return (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) &&
			!strings.HasSuffix(line, `msg="NATS disconnected" worker=`+w.name+` err=<nil>`)
	})
}

// notable returns the problems and the lines of takeovers and read-backs.
func (w *clusterWorker) notable() []string {
	return w.lines(func(line string) bool {
		return strings.Contains(line, `msg="took over command"`) || strings.Contains(line, `msg="read back"`) ||
			strings.Contains(line, `msg="taking over the commands`) || strings.Contains(line, `msg="lost the commands`) ||
			slices.Contains(w.problems(), line)
	})
}

func (w *clusterWorker) lines(match func(string) bool) []string {
	var out []string
	for line := range strings.SplitSeq(w.log.String(), "\n") {
		if match(line) {
			out = append(out, line)
		}
	}
	return out
}

// count returns how many of the worker's log lines contain s.
func (w *clusterWorker) count(s string) int { return strings.Count(w.log.String(), s) }

// clusterCommand is a command of the scale-out test.
type clusterCommand struct {
	op   frontpay.Operation
	key  string // idempotencykey; also the capture's additionalText or the complete's note
	uuid string
	id   string // set once built
	msg  *nats.Msg
}

// buildClusterCommand builds the message of cmd, with Nats-Msg-Id = id, so that a publish retried
// after a lost answer is dropped as a duplicate.
func buildClusterCommand(cmd *clusterCommand, data map[string]any) error {
	c, err := client.NewCommand(cmd.op, data, client.Key(cmd.key), client.Source("cluster-test"))
	if err != nil {
		return err
	}
	cmd.id = c.ID()
	cmd.msg = testworld.CommandMsg("", cmd.op, c.ID(), c.JSON())
	return nil
}

// streamLeader returns the index of the node leading stream, -1 when unknown.
func streamLeader(js jetstream.JetStream, c *embedded.Cluster, stream string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return -1
	}
	for i := range c.Len() {
		if c.Name(i) == info.Cluster.Leader {
			return i
		}
	}
	return -1
}

// TestClusterScaleOut runs three workers on a three-node JetStream cluster with replicated streams
// and bucket, has them answer some hundred commands published concurrently while a NATS node is
// stopped and started again (moving the consumer's leader, and with it the pin) and the owner is
// crashed, then the next owner closed, each replaced, and checks that every command got exactly
// one success, every money command exactly one effect at the API, each reservation its effects in
// publish order, and that the ownership moved.
func TestClusterScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("a NATS cluster and several workers")
	}
	t.Parallel()
	const (
		reservations = 100 // × (capture, capture, complete, details) = 400 commands
		concurrency  = 16
	)
	began := time.Now()
	c, err := embedded.StartCluster(3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown) // registered first: runs after the workers are closed
	t.Logf("cluster of 3 ready in %s: %s", time.Since(began).Round(time.Millisecond), c.URLs())

	sb := newSandbox(t)
	api := sb.Client(t, sandboxToken)
	var workers []*clusterWorker
	var fronts []*testworld.Front
	startWorker := func(name string) {
		f := testworld.NewFront(t, sb.Sandbox)
		fronts = append(fronts, f)
		workers = append(workers, startClusterWorker(t, c.URLs(), f.URL, name, concurrency))
	}
	defer func() {
		for _, w := range workers {
			p := w.problems()
			t.Logf("%s: %d warn/error log lines; took over %d, read back %d (applied %d), not settled %d", w.name, len(p),
				w.count(`msg="took over command"`), w.count(`msg="read back"`), w.count(" verdict=applied"),
				w.count(`msg="command not settled`))
			if t.Failed() || testing.Verbose() {
				n := w.notable()
				for _, line := range n[:min(len(n), 40)] {
					t.Log(line)
				}
			}
		}
	}()
	for i := range 3 {
		startWorker(fmt.Sprintf("worker-%d", i+1))
	}

	_, js := testworld.Connect(t, c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))

	// The commands: per reservation capture 40, capture 40, complete, details, in that order.
	setup := time.Now()
	var cmds []*clusterCommand
	perReservation := map[string][]*clusterCommand{}
	for i := range reservations {
		uuid, line := sb.PaidReservation(t, api)
		products := []any{map[string]any{"id": line, "amount": 40}}
		for j, spec := range []struct {
			op   frontpay.Operation
			data map[string]any
		}{
			{frontpay.ReservationCapture, map[string]any{"reservationUuid": uuid, "grandTotal": 40, "products": products}},
			{frontpay.ReservationCapture, map[string]any{"reservationUuid": uuid, "grandTotal": 40, "products": products}},
			{frontpay.ReservationComplete, map[string]any{"reservationUuid": uuid}},
			{frontpay.ReservationDetails, map[string]any{"reservationUuid": uuid}},
		} {
			cmd := &clusterCommand{op: spec.op, key: fmt.Sprintf("r%03d-%d-%s", i, j, spec.op), uuid: uuid}
			switch spec.op {
			case frontpay.ReservationCapture:
				spec.data["additionalText"] = cmd.key
			case frontpay.ReservationComplete:
				spec.data["note"] = cmd.key
			}
			if err := buildClusterCommand(cmd, spec.data); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
			perReservation[uuid] = append(perReservation[uuid], cmd)
		}
	}
	total := len(cmds)
	t.Logf("%d paid reservations, %d commands, in %s", reservations, total, time.Since(setup).Round(time.Millisecond))

	// Publish concurrently: 8 publishers, each owning whole reservations and publishing a
	// reservation's commands one after the other, each once the stream has the one before. The
	// third quarter of the reservations waits until a NATS node is down, the last quarter until
	// it is up again: the owner closed in step 4 then has captures of its own to work on however
	// far the workers got while the node restarted.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var pubWG sync.WaitGroup
	pubErrs := make(chan error, 8)
	var published atomic.Int64
	nodeDown, nodeUp := make(chan struct{}), make(chan struct{})
	for p := range 8 {
		pubWG.Go(func() {
			for i := p; i < reservations; i += 8 {
				var gate chan struct{}
				switch {
				case i >= reservations*3/4:
					gate = nodeUp
				case i >= reservations/2:
					gate = nodeDown
				}
				if gate != nil {
					select {
					case <-gate:
					case <-ctx.Done():
						return
					}
				}
				for _, cmd := range cmds[4*i : 4*i+4] {
					if _, err := testworld.Store(ctx, js, cmd.msg); err != nil {
						pubErrs <- err
						return
					}
					published.Add(1)
				}
			}
		})
	}

	results, err := js.Stream(ctx, "FRONTPAY_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	// Every request has a short deadline of its own: one sent just as its node stops is never
	// answered.
	stored := func() uint64 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err := results.Info(rctx)
		if err != nil {
			return 0 // a leader election: ask again
		}
		return info.State.Msgs
	}
	atLeast := func(share float64) func() bool {
		return func() bool { return stored() >= uint64(share*float64(total)) }
	}
	phase := func(what string) {
		t.Logf("%6.2fs %s (%d published, %d results)", time.Since(start).Seconds(), what, published.Load(), stored())
	}

	// 1. Half the commands are published. A quarter of all answered: stop the node leading the command stream (the meta leader when
	// unknown).
	testworld.WaitFor(t, atLeast(0.25), "a quarter of the results")
	down := streamLeader(js, c, "FRONTPAY_COMMANDS")
	if down < 0 {
		down = max(c.Leader(), 0)
	}
	c.Stop(down)
	phase(fmt.Sprintf("stopped NATS %s (command stream leader)", c.Name(down)))
	close(nodeDown)

	// owner returns the worker whose captures are at the API: the one that owns the commands.
	owner := func() int {
		for i, f := range fronts {
			if f.Calls.Active(frontpay.ReservationCapture) >= 2 && !workers[i].main.draining.Load() {
				return i
			}
		}
		return -1
	}

	// 2. Crash the owner (connection cut, no drain) while captures of its are at the API, so that
	// their keys are left in state sending, and start worker-4. A standby takes over after
	// PinnedTTL.
	testworld.WaitFor(t, atLeast(0.40), "40% of the results")
	sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 500 * time.Millisecond})
	testworld.WaitFor(t, func() bool { return owner() >= 0 }, "captures of the owner at the API")
	crashed := owner()
	inFlight := fronts[crashed].Calls.Active(frontpay.ReservationCapture)
	workers[crashed].crash()
	sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{})
	phase(fmt.Sprintf("crashed the owner %s with %d captures at the API", workers[crashed].name, inFlight))
	startWorker("worker-4")
	phase("started worker-4")

	// 3. Start the NATS node again, and publish the last quarter.
	testworld.WaitFor(t, atLeast(0.55), "55% of the results")
	if err := c.Restart(down); err != nil {
		t.Fatal(err)
	}
	phase(fmt.Sprintf("restarted NATS %s", c.Name(down)))
	close(nodeUp)

	// 4. Close the owner (graceful: it hands the commands over at once and drains what it has in
	// flight) and start worker-5.
	testworld.WaitFor(t, atLeast(0.70), "70% of the results")
	sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 200 * time.Millisecond})
	testworld.WaitFor(t, func() bool { return owner() >= 0 }, "captures of the new owner at the API")
	closed := owner()
	if err := workers[closed].main.Close(); err != nil {
		t.Errorf("close %s: %v", workers[closed].name, err)
	}
	sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{})
	phase("closed the owner " + workers[closed].name)
	startWorker("worker-5")
	phase("started worker-5")

	pubWG.Wait()
	close(pubErrs)
	for err := range pubErrs {
		t.Fatal(err)
	}
	phase(fmt.Sprintf("all %d commands published", published.Load()))

	// Every command answered: read the whole result stream once the count allows it.
	byCommand := map[string]map[string]schemas.Event{} // causationid → result id → event
	testworld.WaitFor(t, func() bool {
		if stored() < uint64(total) {
			return false
		}
		clear(byCommand)
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.CausationID == "" {
				continue // a status event
			}
			if byCommand[ev.CausationID] == nil {
				byCommand[ev.CausationID] = map[string]schemas.Event{}
			}
			byCommand[ev.CausationID][ev.ID] = ev
		}
		return len(byCommand) >= total
	}, "a result for every command")
	elapsed := time.Since(start)
	phase("every command answered")
	t.Logf("%d commands in %s: %.0f commands/s", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())

	// Exactly one result per command, and it is a success.
	bySource := map[string]int{}
	answered := map[string]string{} // capture key → the uuid its success names
	for _, cmd := range cmds {
		evs := byCommand[cmd.id]
		if len(evs) != 1 {
			t.Errorf("%s (%s) has %d distinct results", cmd.key, cmd.id, len(evs))
		}
		for _, ev := range evs {
			if ev.Type != string(cmd.op)+".succeeded" || ev.IdempotencyKey != cmd.key {
				t.Errorf("%s: %s key %q %s", cmd.key, ev.Type, ev.IdempotencyKey, ev.Data)
			}
			bySource[ev.Source]++
			var data struct {
				Response struct {
					UUID string `json:"uuid"`
				} `json:"response"`
			}
			if cmd.op == frontpay.ReservationCapture && json.Unmarshal(ev.Data, &data) == nil {
				answered[cmd.key] = data.Response.UUID
			}
		}
		delete(byCommand, cmd.id)
	}
	for id := range byCommand {
		t.Errorf("results for command %s, which was never published", id)
	}

	// Exactly one effect per money command, each reservation's in publish order.
	effects := map[string]int{}    // key → effects
	order := map[string][]string{} // uuid → keys in ledger order
	for _, e := range sb.Ledger() {
		var body struct {
			AdditionalText string `json:"additionalText"`
			Note           string `json:"note"`
		}
		switch e.Op {
		case string(frontpay.ReservationCapture), string(frontpay.ReservationComplete):
			if err := json.Unmarshal(e.Body, &body); err != nil {
				t.Fatalf("ledger %d: %v", e.Seq, err)
			}
			// A capture's note carries the read-back marker after the key.
			key, _, _ := strings.Cut(body.AdditionalText+body.Note, " [fp:")
			effects[key]++
			if e.Op == string(frontpay.ReservationCapture) && answered[key] != e.Reference {
				t.Errorf("%s: the API made capture %s, the success event names %q", key, e.Reference, answered[key])
			}
			order[e.UUID] = append(order[e.UUID], key)
		case "reservation.submit", "customer.pay":
		default:
			t.Errorf("unexpected effect %d: %s %s", e.Seq, e.Op, e.UUID)
		}
	}
	for uuid, rcmds := range perReservation {
		var want []string
		for _, cmd := range rcmds {
			if cmd.op != frontpay.ReservationDetails {
				want = append(want, cmd.key)
				if effects[cmd.key] != 1 {
					t.Errorf("%s: %d effects", cmd.key, effects[cmd.key])
				}
			}
		}
		if !slices.Equal(order[uuid], want) {
			t.Errorf("reservation %s: effects %v, want %v", uuid, order[uuid], want)
		}
	}

	// The work was shared.
	var names []string
	for name := range bySource {
		names = append(names, name)
	}
	sort.Strings(names)
	var share []string
	for _, name := range names {
		share = append(share, fmt.Sprintf("%s=%d", name, bySource[name]))
	}
	t.Logf("results by worker: %s", strings.Join(share, " "))
	// One owner at a time, and the ownership moved.
	if busy := len(names); busy < 2 {
		t.Errorf("only %d worker(s) answered commands, yet two owners were stopped: %v", busy, share)
	}
	var calls []string
	for i, f := range fronts {
		calls = append(calls, fmt.Sprintf("%s=%d", workers[i].name, f.Calls.Count("", "")))
	}
	t.Logf("API calls by worker: %s", strings.Join(calls, " "))

	// The captures cut off by the crash were taken over and resolved by reading them back.
	var takeovers, readBacks int
	for _, w := range workers {
		takeovers += w.count(`msg="took over command"`)
		readBacks += w.count(`msg="read back"`)
	}
	if takeovers == 0 || readBacks == 0 {
		t.Errorf("%d takeovers and %d read-backs after crashing the owner with %d captures at the API", takeovers, readBacks, inFlight)
	}

	// Streams, bucket and consumers are replicated three times.
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	topo := consumer.Topology{Replicas: 3}
	for _, name := range []string{topo.CommandStream(), topo.ResultStream(), topo.DeadLetterStream(), "KV_" + topo.StateBucket()} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas configured, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
		if name == topo.DeadLetterStream() && info.State.Msgs != 0 {
			t.Errorf("%d dead letters", info.State.Msgs)
		}
	}
	cs, err := js.Stream(ctx, topo.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []jetstream.ConsumerConfig{topo.Consumer("")} {
		cons, err := cs.Consumer(ctx, cfg.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", cfg.Durable, err)
		}
		info := cons.CachedInfo()
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("consumer %s: %d replicas configured, cluster %+v", cfg.Durable, info.Config.Replicas, info.Cluster)
		}
	}
}

// BenchmarkClusterThroughput measures commands answered a second by 1, 2 and 3 workers on a
// three-node cluster with replicated streams: each iteration publishes a batch of details
// commands spread over many reservations (commands of one reservation run one at a time) and
// waits until every one has its result. The sandbox has no rate limit, and neither have the
// workers.
func BenchmarkClusterThroughput(b *testing.B) {
	const (
		batch        = 2000
		reservations = 400
		concurrency  = 64 // FRONTPAY_CONCURRENCY's default
	)
	c, err := embedded.StartCluster(3, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Shutdown()
	sb := testworld.Sandbox(b, sandbox.Options{Token: sandboxToken, RateLimit: -1})
	api := sb.Client(b, sandboxToken)
	var uuids []string
	for range reservations {
		uuid, _ := sb.PaidReservation(b, api)
		uuids = append(uuids, uuid)
	}
	nc, js := testworld.Connect(b, c.URLs())

	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			var ws []*clusterWorker
			for i := range n {
				ws = append(ws, startClusterWorker(b, c.URLs(), sb.URL, fmt.Sprintf("bench-%d-%d", n, i+1), concurrency))
			}
			// Results are counted from a plain subscription to the details results.
			var mu sync.Mutex
			pending := map[string]bool{}
			sub, err := nc.Subscribe("reservation.details.*", func(m *nats.Msg) {
				var ev schemas.Event
				if json.Unmarshal(m.Data, &ev) != nil || ev.CausationID == "" {
					return // a command
				}
				mu.Lock()
				delete(pending, ev.CausationID)
				mu.Unlock()
			})
			if err != nil {
				b.Fatal(err)
			}
			_ = sub.SetPendingLimits(-1, -1)
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			left := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(pending)
			}
			var done, failed int
			var total, cpu time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				var msgs []*nats.Msg
				mu.Lock()
				for i := range batch {
					cmd := &clusterCommand{op: frontpay.ReservationDetails, uuid: uuids[i%reservations]}
					if err := buildClusterCommand(cmd, map[string]any{"reservationUuid": cmd.uuid}); err != nil {
						b.Fatal(err)
					}
					pending[cmd.id] = true
					msgs = append(msgs, cmd.msg)
				}
				mu.Unlock()
				b.StartTimer()
				start, cpuStart := time.Now(), processCPU()
				for _, m := range msgs {
					if _, err := js.PublishMsgAsync(m); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("publishing took over a minute")
				}
				deadline := time.Now().Add(5 * time.Minute)
				for left() > 0 {
					if time.Now().After(deadline) {
						b.Fatalf("%d commands unanswered after 5 minutes", left())
					}
					time.Sleep(5 * time.Millisecond)
				}
				total += time.Since(start)
				cpu += processCPU() - cpuStart
				done += batch
			}
			b.StopTimer()
			_ = sub.Unsubscribe()
			for _, w := range ws {
				if err := w.main.Close(); err != nil {
					b.Error(err)
				}
				p := w.problems()
				failed += len(p)
				for _, line := range p[:min(len(p), 10)] {
					b.Log(line)
				}
			}
			b.ReportMetric(float64(done)/total.Seconds(), "commands/s")
			// The whole cluster, the workers, the sandbox and the publisher share this process.
			b.ReportMetric(cpu.Seconds()/total.Seconds(), "cpu-cores")
			b.Logf("%d workers: %d commands in %s (%d warn/error log lines)", n, done, total.Round(time.Millisecond), failed)
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
