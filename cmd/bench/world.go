package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/nordpay/frontpay-worker/internal/proc"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// token is the sandbox's bearer token.
const token = "bench-token"

// source is the source of the commands the benchmark publishes.
const source = "frontpay-bench"

// epoch is the origin of the benchmark's monotonic timestamps (nanoseconds since epoch).
var epoch = time.Now()

// now is the benchmark's timestamp: nanoseconds since epoch, monotonic, never 0.
func now() int64 { return int64(time.Since(epoch)) + 1 }

// world is one scenario's setting: a JetStream server with a file store in a temporary directory
// (embedded, internal/testworld's as the tests have it, or a nats-server process: newProcWorld),
// the worker's topology, and the sandbox over loopback HTTP behind a recorder.
type world struct {
	dir  string
	url  string              // the NATS server's
	nc   *nats.Conn          // the benchmark's own connection: setup, publishing, results
	js   jetstream.JetStream // on nc, with room for the asynchronous publishes of a backlog
	topo consumer.Topology
	sb   *testworld.API
	rec  *recorder
	api  *frontpay.Client // the benchmark's client, for setup

	ns        *testworld.NATS // the embedded server, or
	natsProc  *proc.Proc      // the nats-server process,
	workerBin string          // and the worker's binary, of a newProcWorld
}

// newWorld starts a world on an embedded server; close it with close.
func newWorld(sbOpts sandbox.Options) (_ *world, err error) {
	w := &world{topo: consumer.Topology{AckWait: 30 * time.Second}, rec: newRecorder()}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.dir, err = os.MkdirTemp("", "frontpay-bench-"); err != nil {
		return nil, err
	}
	if w.ns, err = testworld.StartJetStream(w.dir, testworld.WithTopology(w.topo)); err != nil {
		return nil, err
	}
	w.url = w.ns.URL
	return w, w.open(w.ns.Conn, sbOpts)
}

// open completes a world whose server runs: the benchmark's connection nc, the sandbox with
// sbOpts behind the recorder, and the benchmark's client of it.
func (w *world) open(nc *nats.Conn, sbOpts sandbox.Options) (err error) {
	w.nc = nc
	if w.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return err
	}
	sbOpts.Token = token
	w.sb = testworld.StartSandbox(sbOpts, w.rec.wrap)
	w.api, err = frontpay.New(w.sb.URL, token, frontpay.WithTimeout(30*time.Second))
	return err
}

func (w *world) close() {
	if w.sb != nil {
		w.sb.Close()
	}
	if w.ns != nil {
		w.ns.Close()
	} else if w.nc != nil {
		w.nc.Close()
	}
	if w.natsProc != nil {
		w.natsProc.Stop(syscall.SIGTERM, 10*time.Second)
	}
	if w.dir != "" {
		_ = os.RemoveAll(w.dir)
	}
}

// drainTimeout is the DrainTimeout of the scenarios' workers where shutting down is not measured:
// commands in flight are handed back sooner than production's 20s.
const drainTimeout = 2 * time.Second

// workerOptions are what a scenario sets of a worker run in this process by internal/app, as
// cmd/frontpay-worker runs it; the rest is production's defaults, but for the history poll (off)
// and the HTTP server's address (any free port).
type workerOptions struct {
	// Topology is the one the scenario ensured; zero: the world's. Its prefix is
	// FRONTPAY_SUBJECT_PREFIX.
	Topology consumer.Topology
	// File is FRONTPAY_MERCHANTS_FILE; "": the one merchant of the benchmark's token.
	File string
	// Name is FRONTPAY_WORKER_NAME, the source of its events; "": production's.
	Name         string
	Concurrency  int
	APITimeout   time.Duration // 0: production's 30s
	DrainTimeout time.Duration // 0: production's 20s
	// APIRate is FRONTPAY_API_RATE, requests a minute: the one merchant's, and a file merchant's
	// without a rate of its own; 0: no limit.
	APIRate int
	// Untraced and TookOver are app.Main's: no tracer at all (by default the worker has the
	// no-op provider, as production without OTEL_* variables), and what is told of take-overs.
	Untraced bool
	TookOver func(merchant string)
}

// startWorker starts the worker as cmd/frontpay-worker's run does (app.Main: its own NATS
// connection, the lanes of internal/fleet, metrics, the HTTP server), logging JSON at info level
// to io.Discard, and returns once it consumes. Close stops it.
func (w *world) startWorker(ctx context.Context, o workerOptions) (*app.Main, error) {
	topo := o.Topology
	if topo == (consumer.Topology{}) {
		topo = w.topo
	}
	cfg := &app.Config{
		NATSConfig: app.NATSConfig{NATSURL: w.url, SubjectPrefix: topo.Prefix, MerchantsFile: o.File},
		APIURL:     w.sb.URL, APIToken: token, APITimeout: cmp.Or(o.APITimeout, 30*time.Second),
		RetryMax: 5 * time.Minute, APIRate: o.APIRate, HTTPAddr: "127.0.0.1:0", Concurrency: o.Concurrency,
		AckWait: topo.AckWait, PinnedTTL: topo.PinnedTTL, DrainTimeout: cmp.Or(o.DrainTimeout, 20*time.Second),
		Replicas: topo.Replicas, WorkerName: cmp.Or(o.Name, "frontpay-worker"),
	}
	m := app.NewMain(cfg, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	m.Untraced, m.TookOver = o.Untraced, o.TookOver
	if err := m.Run(ctx); err != nil {
		return nil, fmt.Errorf("worker %s: %w", cfg.WorkerName, err)
	}
	return m, nil
}

// drain drains a connection, closing it after 10s at most.
func drain(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		nc.Close()
	}
}

// inMsgs is how many messages clients have sent the embedded server so far.
func (w *world) inMsgs() int64 {
	v, err := w.ns.Server().Varz(nil)
	if err != nil {
		return 0
	}
	return v.InMsgs
}

// opsPerCommand is the messages clients sent the server per command, less the command's own
// publish.
func opsPerCommand(msgs int64, n int) float64 { return float64(msgs)/float64(max(n, 1)) - 1 }

// recorder wraps the sandbox: for every API request it notes when it arrived, its answer's status
// and how long the sandbox took, and sums the durations by reservation UUID.
type recorder struct {
	mu       sync.Mutex
	byUUID   map[string]time.Duration
	arrivals []int64 // now() of every API request since the last reset
	statuses map[int]int
}

func newRecorder() *recorder {
	return &recorder{byUUID: map[string]time.Duration{}, statuses: map[int]int{}}
}

// reset forgets everything recorded.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byUUID, r.arrivals, r.statuses = map[string]time.Duration{}, nil, map[int]int{}
}

// apiTime returns the time the API spent on requests naming uuid since the last reset.
func (r *recorder) apiTime(uuid string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byUUID[uuid]
}

// perCommand is the API requests since the last reset per command, for n commands.
func (r *recorder) perCommand(n int) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(len(r.arrivals)) / float64(max(n, 1))
}

// counts returns the arrival times of the requests since the last reset and the count of answers
// by status.
func (r *recorder) counts() ([]int64, map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := make(map[int]int, len(r.statuses))
	for k, v := range r.statuses {
		st[k] = v
	}
	return append([]int64(nil), r.arrivals...), st
}

func (r *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/api/") {
			h.ServeHTTP(w, req)
			return
		}
		start := time.Now()
		arrived := now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, req)
		took := time.Since(start)
		uuid := reservationOfPath(req.URL.Path)
		r.mu.Lock()
		if uuid != "" {
			r.byUUID[uuid] += took
		}
		r.arrivals = append(r.arrivals, arrived)
		r.statuses[sw.status]++
		r.mu.Unlock()
	})
}

// statusWriter notes the status of an answer; it passes Hijack through for the sandbox's
// dropped-connection faults.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	s.status, s.wrote = 0, true
	return hj.Hijack()
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// reservation is a reservation set up for the benchmark and the product id of its one line.
type reservation struct {
	UUID string
	Line frontpay.Number
}

// submitRequest is a reservation of one 100 NOK line, as the tests submit it.
func submitRequest() (*frontpay.SubmitReservationRequest, error) {
	var req frontpay.SubmitReservationRequest
	return &req, json.Unmarshal(testworld.SubmitData(), &req)
}

// setupReservations submits n reservations through the client; with paid, the customer pays each
// (sandbox.Pay) and its details are read for the line's product id. 32 at a time.
func setupReservations(ctx context.Context, api *frontpay.Client, sb *testworld.API, n int, paid bool) ([]reservation, error) {
	out := make([]reservation, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(32, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := submitRequest()
			if err != nil {
				errs <- err
				cancel()
				return
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := setupOne(ctx, api, sb, req, paid, &out[i]); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("set up reservations: %w", err)
	}
	return out, ctx.Err()
}

func setupOne(ctx context.Context, api *frontpay.Client, sb *testworld.API, req *frontpay.SubmitReservationRequest, paid bool, out *reservation) error {
	res, err := api.SubmitReservation(ctx, req)
	if err != nil {
		return err
	}
	out.UUID = res.Data.ReservationUUID
	if !paid {
		return nil
	}
	if err := sb.Pay(out.UUID); err != nil {
		return err
	}
	d, err := api.Details(ctx, out.UUID)
	if err != nil {
		return err
	}
	if len(d.Data.ProductList) == 0 {
		return fmt.Errorf("reservation %s has no product lines", out.UUID)
	}
	out.Line = d.Data.ProductList[0].ID
	return nil
}

// command is a command ready to publish.
type command struct {
	ID      string
	UUID    string // the reservation it names
	Subject string
	Raw     []byte
}

// newCommand builds a command event of op on subject, as a shop would publish it.
func newCommand(op frontpay.Operation, subject string, data any) (command, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return command{}, err
	}
	ev := schemas.Event{
		SpecVersion: "1.0", ID: schemas.NewID(), Source: source, Type: schemas.CommandSubject("", op),
		Time: time.Now().UTC().Format(time.RFC3339), DataContentType: "application/json", Data: raw,
	}
	b, err := json.Marshal(ev)
	return command{ID: ev.ID, Subject: subject, Raw: b}, err
}

// captureCommands builds one capture of 40 NOK per reservation, on subject.
func captureCommands(rs []reservation, subject string) ([]command, error) {
	out := make([]command, len(rs))
	for i, r := range rs {
		c, err := newCommand(frontpay.ReservationCapture, subject, map[string]any{
			"reservationUuid": r.UUID, "grandTotal": 40,
			"products": []any{map[string]any{"id": r.Line, "amount": 40}}, "additionalText": "bench",
		})
		if err != nil {
			return nil, err
		}
		c.UUID = r.UUID
		out[i] = c
	}
	return out, nil
}

// detailsSubject is the subject of details commands in a one-merchant deployment without prefix.
var detailsSubject = schemas.CommandSubject("", frontpay.ReservationDetails)

// detailsCommands builds one details command per reservation, on subject.
func detailsCommands(rs []reservation, subject string) ([]command, error) {
	out := make([]command, len(rs))
	for i, r := range rs {
		c, err := newCommand(frontpay.ReservationDetails, subject, map[string]any{"reservationUuid": r.UUID})
		if err != nil {
			return nil, err
		}
		c.UUID = r.UUID
		out[i] = c
	}
	return out, nil
}

// publishAll publishes cmds asynchronously as fast as the stream takes them, noting each one's
// publish time in published, and waits until the stream has stored them all.
func publishAll(ctx context.Context, js jetstream.JetStream, cmds []command, published []int64) error {
	return publishPaced(ctx, js, cmds, published, 0)
}

// publishPaced publishes cmds asynchronously, perSecond a second (0: as fast as possible),
// noting each one's publish time, and waits until the stream has stored them all.
func publishPaced(ctx context.Context, js jetstream.JetStream, cmds []command, published []int64, perSecond float64) error {
	futures := make([]jetstream.PubAckFuture, 0, len(cmds))
	start := time.Now()
	for i := 0; i < len(cmds); {
		upTo := len(cmds)
		if perSecond > 0 {
			upTo = due(time.Since(start), perSecond, len(cmds))
			if upTo <= i {
				time.Sleep(500 * time.Microsecond)
				continue
			}
		}
		for ; i < upTo; i++ {
			m := nats.NewMsg(cmds[i].Subject)
			m.Data = cmds[i].Raw
			m.Header.Set(jetstream.MsgIDHeader, cmds[i].ID)
			published[i] = now()
			// Room among the 4096 awaiting their ack is backpressure, not a failure: on a busy
			// machine the stream can take longer than nats.go's 200 ms to make it.
			f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second))
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			futures = append(futures, f)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return errors.New("publish: the stream did not acknowledge every command within 2m")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// collector notes when the first result event of each command arrives, by subscribing to the
// result subjects (it sees every publication, before and regardless of the stream's storing it).
type collector struct {
	index    map[string]int // command id → index
	result   []atomic.Int64 // now() of the first result, by index
	isFail   []atomic.Bool  // whether the first result was a failure, by index
	got      atomic.Int64
	done     chan struct{}
	mu       sync.Mutex
	failures map[string]int // reason → count
	subs     []*nats.Subscription
}

// collect subscribes to subjects for the results of cmds.
func collect(nc *nats.Conn, cmds []command, subjects ...string) (*collector, error) {
	c := &collector{index: make(map[string]int, len(cmds)), result: make([]atomic.Int64, len(cmds)),
		isFail: make([]atomic.Bool, len(cmds)), done: make(chan struct{}), failures: map[string]int{}}
	for i, cmd := range cmds {
		c.index[cmd.ID] = i
	}
	if len(cmds) == 0 {
		close(c.done)
	}
	for _, s := range subjects {
		sub, err := nc.Subscribe(s, c.handle)
		if err != nil {
			c.stop()
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		c.subs = append(c.subs, sub)
	}
	return c, nc.Flush()
}

func (c *collector) handle(m *nats.Msg) {
	at := now()
	var ev struct {
		CausationID string `json:"causationid"`
		Data        struct {
			Reason string `json:"reason"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	i, ok := c.index[ev.CausationID]
	if !ok || !c.result[i].CompareAndSwap(0, at) {
		return
	}
	if strings.HasSuffix(m.Subject, ".failed") {
		c.isFail[i].Store(true)
		c.mu.Lock()
		c.failures[ev.Data.Reason]++
		c.mu.Unlock()
	}
	if c.got.Add(1) == int64(len(c.result)) {
		close(c.done)
	}
}

// wait waits until every command has a result, or timeout.
func (c *collector) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d results within %s", c.got.Load(), len(c.result), timeout)
	}
}

// results returns the result times by index.
func (c *collector) results() []int64 {
	out := make([]int64, len(c.result))
	for i := range c.result {
		out[i] = c.result[i].Load()
	}
	return out
}

// failed returns the number of failure events and their reasons.
func (c *collector) failed() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, parts := 0, []string{}
	for r, k := range c.failures {
		n += k
		parts = append(parts, fmt.Sprintf("%s ×%d", r, k))
	}
	return n, strings.Join(parts, ", ")
}

func (c *collector) stop() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// apiTimes returns the API time of each command's reservation.
func apiTimes(rec *recorder, cmds []command) []time.Duration {
	out := make([]time.Duration, len(cmds))
	for i, c := range cmds {
		out[i] = rec.apiTime(c.UUID)
	}
	return out
}
