package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ownership: one worker at a time works on the commands, in stream order.
//
// Every worker pulls from the one durable consumer in the priority group PriorityGroup with the
// pinned-client policy. The server delivers to one of them, the owner, and marks each message
// with the owner's pin id (header Nats-Pin-Id); the others' pulls wait. The owner keeps a FIFO per
// reservation (or order) in memory, in stream order: the heads of different reservations run
// concurrently, and the next command of a reservation starts once the one before it has its
// result (order.go).
//
// Taking over. A worker that sees a pin id it did not reset under on a message (it became the
// owner: the first time, or after the pin moved) drops the message, stops consuming, resets the
// consumer (Stream.ResetConsumer: the server forgets what it delivered and sends everything above
// the ack floor again, in stream order) and consumes again under that pin. Without the reset a
// new owner would get later commands before the redeliveries of earlier ones, which the server
// makes only after AckWait: order would break. Commands that were finished but not acked come back
// as duplicates and are answered from their records; delivery counts start at 1 again after a
// reset, so only the records recognise them.
//
// Losing the pin (the server answers a pull with 423 Nats-Wrong-Pin-Id: PinnedTTL without a pull,
// an unpin, or a change of the consumer's leader, since the pin is not replicated): the worker
// starts nothing new and drops what it holds without acking; commands already running finish.
// Their record writes are compare-and-swap and their leases fence them, so a worker that does not
// know yet that it lost the pin cannot cause a second effect, and since every worker runs a
// reservation's commands in stream order and acks a command only after its result, order holds
// even while two workers believe they own the commands. The acks of a stale owner count (the
// server does not check acks against the pin): each is the ack of a finished command.
//
// An owner that died. The server moves the pin only when it has a message to deliver, and the
// commands a dead owner held come back only after AckWait: a standby would wait that long. So a
// worker that does not own the commands looks at the consumer every third of PinnedTTL, and when
// nobody is pinned while commands are delivered and unacked (their owner died, or stopped
// without handing over), it resets the consumer itself: the server then delivers them again, pins
// whoever pulls first, and that worker takes over as above.
//
// Copies. A held command (waiting for its turn or for a retry) may outlive AckWait: the server
// sends it again to the owner, which drops the copy by its stream sequence.
//
// Stopping. A worker that stops unpins at once, so that a standby takes over without waiting for
// PinnedTTL; one that dies loses the pin after PinnedTTL.

// pinHeader is the header in which the server names the pinned client a message was delivered to.
const pinHeader = "Nats-Pin-Id"

// ownership is what a worker knows of its pin. Guarded by Worker.mu.
type ownership struct {
	epoch     uint64 // changes whenever what is held is dropped: deliveries of older epochs are ignored
	pin       string // the pin id the consumer was reset under
	synced    bool   // reset under pin: messages carrying it are in order
	resyncing bool
	cc        jetstream.ConsumeContext // the current pulls; set and stopped under Worker.consumeMu
	// whileOwner ends the run of Config.WhileOwner of the current ownership; nil: none runs.
	whileOwner context.CancelFunc
}

// consume starts pulling under the current epoch.
func (w *Worker) consume(ctx context.Context) error {
	w.consumeMu.Lock()
	defer w.consumeMu.Unlock()
	return w.consumeLocked(ctx)
}

// consumeLocked is consume with consumeMu held.
func (w *Worker) consumeLocked(ctx context.Context) error {
	w.mu.Lock()
	epoch, stopping := w.own.epoch, w.stopping
	w.mu.Unlock()
	if stopping {
		return nil
	}
	// Pull at least three times per PinnedTTL, so that a live owner keeps its pin.
	expiry := max(min(w.cfg.pinnedTTL()/3, 30*time.Second), time.Second)
	cc, err := w.consumer.Consume(func(m jetstream.Msg) { w.receive(ctx, epoch, m) },
		jetstream.PullPriorityGroup(PriorityGroup),
		jetstream.PullMaxMessages(max(w.cfg.Concurrency, 64)),
		jetstream.PullExpiry(expiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrPinIDMismatch) {
				w.lostPin()
				return
			}
			w.log.Debug("consume", "err", err)
		}))
	if err != nil {
		return err
	}
	// A resync or stop that began meanwhile waits for consumeMu, then stops this one.
	w.mu.Lock()
	w.own.cc = cc
	w.mu.Unlock()
	return nil
}

// stopConsuming stops the current pulls and waits until the subscription is gone from the
// server: a pull request still waiting there would be given messages after a reset, lost with the
// subscription, and sent again only after AckWait, out of order. Caller holds consumeMu.
func (w *Worker) stopConsuming() {
	w.mu.Lock()
	cc := w.own.cc
	w.own.cc = nil
	w.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Stop()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		w.log.Warn("consume did not stop within 5s")
	}
	// The unsubscription is on its way before anything sent after it: make sure it arrived.
	if err := w.js.Conn().FlushTimeout(5 * time.Second); err != nil {
		w.log.Debug("flush", "err", err)
	}
}

// receive takes one delivery: it checks the pin, drops copies, and holds the command.
func (w *Worker) receive(ctx context.Context, epoch uint64, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	pin := m.Headers().Get(pinHeader)
	w.mu.Lock()
	switch {
	case w.stopping:
		w.mu.Unlock()
		return
	case !w.own.synced || pin != w.own.pin:
		// This worker became the owner, or the pin moved: first the reset. (A pull that lost
		// the pin goes on without one, and its next message may carry a new pin: so this comes
		// before the epoch's check.)
		w.startResync(ctx, pin)
		w.mu.Unlock()
		return
	case epoch != w.own.epoch:
		w.mu.Unlock()
		return // from pulls stopped since
	}
	if t := w.held[md.Sequence.Stream]; t != nil && t.epoch == epoch {
		w.mu.Unlock()
		return // a copy sent after AckWait: the command is held already
	}
	w.mu.Unlock()

	t := w.decode(m, md, epoch)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping || epoch != w.own.epoch {
		return
	}
	w.hold(t)
}

// startResync drops what is held and starts resetting the consumer under pin. Caller holds mu.
func (w *Worker) startResync(ctx context.Context, pin string) {
	if w.own.resyncing {
		return
	}
	w.own.resyncing = true
	w.dropHeld()
	go w.resync(ctx, pin)
}

// resync stops consuming, resets the consumer so that the server sends everything above the ack
// floor again in stream order, and consumes again under pin.
func (w *Worker) resync(ctx context.Context, pin string) {
	w.consumeMu.Lock()
	defer w.consumeMu.Unlock()
	w.stopConsuming()
	w.log.Info("taking over the commands: resetting the consumer", "pin", pin)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := w.stream.ResetConsumer(rctx, w.consumerName())
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("reset consumer", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	w.mu.Lock()
	w.own.pin, w.own.synced, w.own.resyncing = pin, true, false
	w.owning(ctx)
	w.mu.Unlock()
	w.obs.TakeOver()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := w.consumeLocked(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		w.log.Warn("consume", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// lostPin drops what is held: another worker owns the commands now. Running commands finish.
func (w *Worker) lostPin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.own.synced {
		return
	}
	w.log.Info("lost the commands to another worker")
	w.own.synced = false
	w.disown()
	w.dropHeld()
}

// dropHeld forgets every delivery not started yet; started ones run on. Caller holds mu.
func (w *Worker) dropHeld() {
	w.own.epoch++
	for seq, t := range w.held {
		if !t.started {
			delete(w.held, seq)
			t.endTrace("dropped", nil)
		}
	}
	clear(w.fifos)
}

// owning starts what runs while this worker owns the commands (Config.WhileOwner), unless it
// runs already. Caller holds mu.
func (w *Worker) owning(ctx context.Context) {
	if w.cfg.WhileOwner == nil || w.own.whileOwner != nil || w.stopping {
		return
	}
	octx, cancel := context.WithCancel(ctx)
	w.own.whileOwner = cancel
	w.reporting.Go(func() { w.cfg.WhileOwner(octx) })
}

// disown ends what runs while this worker owns the commands. Caller holds mu.
func (w *Worker) disown() {
	if w.own.whileOwner != nil {
		w.own.whileOwner()
		w.own.whileOwner = nil
	}
}

// watch resets the consumer when nobody owns the commands delivered and unacked; see above. It
// runs until ctx ends.
func (w *Worker) watch(ctx context.Context) {
	tick := time.NewTicker(max(w.cfg.pinnedTTL()/3, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		owner := w.own.synced || w.own.resyncing
		w.mu.Unlock()
		if owner {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if orphaned(ictx, w.consumer) {
			w.log.Info("commands held by no owner: resetting the consumer")
			if _, err := w.stream.ResetConsumer(ictx, w.consumerName()); err != nil {
				w.log.Warn("reset consumer", "err", err)
			}
		}
		cancel()
	}
}

// orphaned reports whether the consumer has commands delivered and unacked while nobody is pinned.
func orphaned(ctx context.Context, c jetstream.Consumer) bool {
	info, err := c.Info(ctx)
	if err != nil || info.NumAckPending == 0 {
		return false
	}
	for _, g := range info.PriorityGroups {
		if g.Group == PriorityGroup && g.PinnedClientID != "" {
			return false
		}
	}
	return true
}

// stop ends consuming and hands the ownership over; commands waiting for a retry are handed back.
func (w *Worker) stop() {
	w.mu.Lock()
	w.stopping = true
	owner := w.own.synced
	w.disown()
	w.dropHeld()
	waiting := w.waiting
	w.waiting = map[*task]*time.Timer{}
	w.mu.Unlock()
	w.consumeMu.Lock()
	w.stopConsuming()
	w.consumeMu.Unlock()
	if owner {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := w.stream.UnpinConsumer(ctx, w.consumerName(), PriorityGroup); err != nil {
			w.log.Debug("unpin", "err", err)
		}
		cancel()
	}
	for t, timer := range waiting {
		if timer.Stop() {
			w.handBack(t)
		}
	}
}
