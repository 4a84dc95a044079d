package consumer

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Per-reservation order, in the owner's memory.
//
// The owner receives commands in stream order (owner.go). Each command that names a reservation
// or an order joins that resource's FIFO; the head of each FIFO is ready to run, and the next
// command of a resource becomes ready when the one before it is settled (its result published
// and the command acked) or dropped. Commands of different resources never wait for each other;
// commands that name none (submit, session, order.create, history), invalid commands and dead
// letters are ready at once. Concurrency workers take ready commands in the order they became
// ready.
//
// A command waiting for a retry or for another worker's lease does not hold a worker: it leaves
// the run queue and comes back when its wait ends, still at the head of its FIFO.

// task is one delivery of one message, from the moment it is held until it is settled, dropped
// or handed back.
type task struct {
	msg      jetstream.Msg
	raw      []byte // the command in structured mode, as parsed (schemas.Structured)
	seq      uint64
	epoch    uint64
	received time.Time // when the server stored the command
	op       frontpay.Operation
	resource string // "reservation.<uuid>" or "order.<uuid>"; "" for none

	// What the message is: a valid command, an invalid one, or a dead letter.
	cmd        *schemas.Command
	invalid    *schemas.InvalidError
	deadLetter string // why the message is no command

	started bool   // taken by a worker: it runs to its end even if the epoch changes
	probed  bool   // the record was tried or read once: read it, rather than create it blindly
	claim   *claim // the key's record as last read or written
	// body is the request as sent (the command's, with the read-back marker where it carries one).
	body     frontpay.Validator
	lastErr  error     // the last attempt's error, for upstream_unavailable
	reads    int       // failed baseline reads of a command without a record yet
	resumeAt time.Time // when the wait the task is in ends
	errs     int       // infrastructure errors in a row

	ctx     context.Context // the trace the delivery's work is in (tracing.go)
	span    trace.Span      // the delivery's span; nil without Config.Tracer
	waiting trace.Span      // the span of the wait the task is in; nil when none
}

// decode reads a delivery: which operation, and whether it is a valid command.
func (w *Worker) decode(m jetstream.Msg, md *jetstream.MsgMetadata, epoch uint64) *task {
	t := &task{msg: m, seq: md.Sequence.Stream, epoch: epoch, received: md.Timestamp}
	op, ok := schemas.OpFromSubject(w.subjects(), m.Subject())
	t.op = op
	if !ok {
		t.deadLetter = "not a command subject"
		return t
	}
	// A binary-mode command (ce- headers) reads as its structured form.
	t.raw = schemas.Structured(m.Headers(), m.Data())
	cmd, err := schemas.ParseCommand(op, t.raw, w.now())
	switch e := err.(type) {
	case nil:
		t.cmd = cmd
		if cmd.Resource != "" {
			t.resource = op.Resource() + "." + cmd.Resource
		}
	case *schemas.InvalidError:
		t.invalid = e
	default:
		t.deadLetter = "not a JSON object"
	}
	w.traceTask(t)
	return t
}

// hold takes a decoded delivery in: into its resource's FIFO, and ready when it heads it.
// Caller holds mu.
func (w *Worker) hold(t *task) {
	w.held[t.seq] = t
	if t.resource == "" {
		w.runq.push(t)
		return
	}
	q := append(w.fifos[t.resource], t)
	w.fifos[t.resource] = q
	if len(q) == 1 {
		w.runq.push(t)
	}
}

// release lets go of a started task that is settled or handed back: the next command of its
// resource becomes ready.
func (w *Worker) release(t *task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held[t.seq] == t {
		delete(w.held, t.seq)
	}
	delete(w.waiting, t)
	if q := w.fifos[t.resource]; t.resource != "" && len(q) > 0 && q[0] == t {
		if q = q[1:]; len(q) > 0 {
			w.fifos[t.resource] = q
			w.runq.push(q[0])
		} else {
			delete(w.fifos, t.resource)
		}
	}
	w.active.Done()
}

// later puts t back on the run queue once its wait d is over.
func (w *Worker) later(t *task, d time.Duration) {
	t.resumeAt = w.now().Add(d)
	_, t.waiting = w.child(t.ctx, "frontpay.wait")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		// Handed back by stop's caller once it returns.
		go w.handBack(t)
		return
	}
	w.waiting[t] = time.AfterFunc(d, func() {
		w.mu.Lock()
		_, ok := w.waiting[t]
		delete(w.waiting, t)
		w.mu.Unlock()
		if !ok {
			// stop took the waiting tasks but was too late to stop this timer: it is ours to
			// hand back.
			w.handBack(t)
			return
		}
		w.runq.push(t)
	})
}

// runQueue is the queue of ready tasks that the Concurrency workers take from.
type runQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []*task
	closed bool
}

func newRunQueue() *runQueue {
	q := &runQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *runQueue) push(t *task) {
	q.mu.Lock()
	q.items = append(q.items, t)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop returns the next ready task, waiting for one; nil once the queue is closed.
func (q *runQueue) pop() *task {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	t := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return t
}

func (q *runQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
