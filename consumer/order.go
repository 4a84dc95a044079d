package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Per-reservation order.
//
// Each operation has its own consumer, so a capture and a later complete of the same reservation
// reach the workers through different consumers and could run in either order. The sequencer
// restores publish order: one more durable consumer reads every command subject and appends each
// command's stream sequence to its reservation's (or order's) queue in the state bucket, then acks.
// A worker runs a command only when
//
//  1. the sequencer's ack floor has reached the command's sequence, so every earlier command of
//     the stream is in its queue, and
//  2. the command's sequence is the lowest in its reservation's queue.
//
// It removes the sequence once the command's result is published, before acking. A command whose
// turn has not come waits in-process without holding one of the worker's slots, woken when a
// command of its reservation finishes in the same process and looking every 100ms for those that
// finish elsewhere; after 30s it is handed back. Commands of different reservations never wait for
// each other; commands without a reservation or order
// (submit, session, order.create, history) are not queued.

// queueKey is the state bucket key of a resource's queue.
func queueKey(resource string) string { return "queue." + resource }

// queue is the stored value: pending stream sequences, ascending, and the highest one removed.
// A command runs only when it heads its queue, so sequences leave it in ascending order: one at or
// below Done is a command that already ran, which a late sequencer delivery (a copy JetStream sent
// again after AckWait) must not queue a second time.
type queue struct {
	Seqs []uint64 `json:"seqs"`
	Done uint64   `json:"done,omitempty"`
}

// queues edits the per-resource queues with compare-and-swap.
type queues struct {
	kv jetstream.KeyValue
}

func (q *queues) load(ctx context.Context, resource string) (queue, uint64, error) {
	var qu queue
	e, err := q.kv.Get(ctx, queueKey(resource))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return qu, 0, nil
	}
	if err != nil {
		return qu, 0, fmt.Errorf("read queue of %s: %w", resource, err)
	}
	if err := json.Unmarshal(e.Value(), &qu); err != nil {
		return qu, 0, fmt.Errorf("decode queue of %s: %w", resource, err)
	}
	return qu, e.Revision(), nil
}

// edit applies change to the queue until the compare-and-swap holds. change reports whether it
// changed anything.
func (q *queues) edit(ctx context.Context, resource string, change func(*queue) bool) error {
	for {
		qu, rev, err := q.load(ctx, resource)
		if err != nil {
			return err
		}
		if !change(&qu) {
			return nil
		}
		b, _ := json.Marshal(qu)
		if rev == 0 {
			_, err = q.kv.Create(ctx, queueKey(resource), b)
		} else {
			_, err = q.kv.Update(ctx, queueKey(resource), b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write queue of %s: %w", resource, err)
		}
		return nil
	}
}

// add puts seq in the resource's queue; adding it twice, or after it was removed, is harmless.
func (q *queues) add(ctx context.Context, resource string, seq uint64) error {
	return q.edit(ctx, resource, func(qu *queue) bool {
		i, found := slices.BinarySearch(qu.Seqs, seq)
		if found || seq <= qu.Done {
			return false
		}
		qu.Seqs = slices.Insert(qu.Seqs, i, seq)
		return true
	})
}

// remove takes seq out of the resource's queue.
func (q *queues) remove(ctx context.Context, resource string, seq uint64) error {
	return q.edit(ctx, resource, func(qu *queue) bool {
		i, found := slices.BinarySearch(qu.Seqs, seq)
		if !found {
			return false
		}
		qu.Seqs = slices.Delete(qu.Seqs, i, i+1)
		qu.Done = max(qu.Done, seq)
		return true
	})
}

// head returns the lowest pending sequence of the resource, 0 when none.
func (q *queues) head(ctx context.Context, resource string) (uint64, error) {
	qu, _, err := q.load(ctx, resource)
	if err != nil || len(qu.Seqs) == 0 {
		return 0, err
	}
	return qu.Seqs[0], nil
}

// queueOf returns the queue of a command the worker has parsed (cmd nil when it is invalid):
// the same as resourceOf, without reading the bytes a second time when ParseCommand already
// found the UUID (it checks it with the same frontpay.ValidateUUID).
func queueOf(op frontpay.Operation, cmd *schemas.Command, raw []byte) string {
	switch {
	case cmd == nil:
		return resourceOf(op, raw)
	case cmd.Resource == "":
		return ""
	}
	return op.Resource() + "." + cmd.Resource
}

// resourceOf returns the reservation or order UUID a command's data names, "" when it names none
// or the bytes are not a command. The sequencer and the workers use this one function (through
// queueOf), so a command is queued exactly when its worker will look for it in the queue.
func resourceOf(op frontpay.Operation, raw []byte) string {
	var ev struct {
		Data struct {
			ReservationUUID string `json:"reservationUuid"`
			OrderUUID       string `json:"orderUuid"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &ev) != nil {
		return ""
	}
	uuid := ev.Data.ReservationUUID
	field := "reservationUuid"
	if op.Resource() == "order" {
		uuid, field = ev.Data.OrderUUID, "orderUuid"
	}
	if op == frontpay.ReservationHistory || uuid == "" || frontpay.ValidateUUID(field, uuid) != nil {
		return ""
	}
	return op.Resource() + "." + uuid
}

// sequencer keeps the queues from the sequencer consumer and knows how far it has read.
type sequencer struct {
	queues   *queues
	consumer jetstream.Consumer
	prefix   string

	mu      sync.Mutex
	floor   uint64
	checked time.Time
}

// index queues one command; the caller acks it afterwards.
func (s *sequencer) index(ctx context.Context, op frontpay.Operation, raw []byte, seq uint64) error {
	if r := resourceOf(op, raw); r != "" {
		return s.queues.add(ctx, r, seq)
	}
	return nil
}

// floorReached reports whether every command up to seq has been queued, asking the server for
// the sequencer's ack floor at most every few milliseconds.
func (s *sequencer) floorReached(ctx context.Context, seq uint64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.floor >= seq {
		return true, nil
	}
	if time.Since(s.checked) < 5*time.Millisecond {
		return false, nil
	}
	info, err := s.consumer.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read sequencer position: %w", err)
	}
	s.checked = time.Now()
	s.floor = info.AckFloor.Stream
	return s.floor >= seq, nil
}

// turn reports whether the command with stream sequence seq may run now: every earlier command of
// the stream is queued and none of its resource's is still pending. With checkStale, a pending
// sequence whose message has left the stream (deleted by an operator, or aged out) is dropped from
// the queue, so that it cannot block the reservation for ever.
func (s *sequencer) turn(ctx context.Context, stream jetstream.Stream, resource string, seq uint64, checkStale bool) (bool, error) {
	if ok, err := s.floorReached(ctx, seq); !ok || err != nil {
		return false, err
	}
	head, err := s.queues.head(ctx, resource)
	if err != nil || head == 0 || head >= seq {
		return err == nil, err
	}
	if !checkStale {
		return false, nil
	}
	if _, err := stream.GetMsg(ctx, head); errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, s.queues.remove(ctx, resource, head)
	}
	return false, nil
}
