package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Forgetting a reservation or an order (CONTRACT.md section 10, `frontpay-worker forget`).
//
// What the worker stores about a reservation, and how PlanForget finds it:
//
//   - Result events whose subject is the UUID (every result of a command that names it, and
//     status events), or whose response names it (reservationUuid, orderUuid: the success of the
//     submit or session that created it). Their idempotency keys are the reservation's keys.
//   - Idempotency records whose Resource is the reservation, or whose recorded event names it.
//     Their events' keys are the reservation's keys too.
//   - Results and records whose event names no reservation but shows the UUID as a word: a
//     history answer lists the events of every reservation, with the contact each payment link
//     was sent to, and is erased (scrubbed) whole.
//   - Commands whose data names the UUID (reservationUuid, orderUuid), and commands naming no
//     reservation whose idempotency key is one of its keys: the submit or session that created
//     it, a command that reused that key (its idempotency_conflict) or broke the rules with it
//     (its invalid_command). Results naming no reservation with one of its keys likewise.
//   - Dead letters: read as the command they were copied from where they are JSON objects, and
//     otherwise matched by the UUID appearing as a word (not inside a longer name) in the body
//     or a header value. A message that is no command is matched the same way in every stream.
//
// An order.create's answer names no order, so its command is found only by its key, given as a
// ForgetTarget key.
//
// What Apply does: messages are deleted with SecureDeleteMsg (the server overwrites them on
// disk); records are scrubbed (record.scrub) with a compare-and-swap, keeping what money safety
// needs. It skips what the worker still needs: a command above the consumer's ack floor (not
// answered yet, or answered among commands still waiting), and a record that is not finished.
// Commands go first, then dead letters, results and records, so that a forget cut short finds
// the rest again from what is left.

// ForgetTarget names what to forget.
type ForgetTarget struct {
	Reservations []string // reservation UUIDs
	Orders       []string // order UUIDs
	// Keys are idempotency keys whose commands, results and records are forgotten with the rest
	// (an order.create, whose answer names no order, is found only this way).
	Keys []string
	// Merchant is whose key space Keys are in, in a deployment of several merchants.
	Merchant string
}

// ForgetItem is one message or record that forget erases, or keeps.
type ForgetItem struct {
	Record  bool   // a record of the state bucket, rather than a stream message
	Stream  string // the stream; for a record, the state bucket
	Seq     uint64 // the stream sequence; for a record, the revision found
	Subject string // the message's subject; for a record, its key in the bucket
	// What describes a record: its operation, state and idempotency key.
	What string
	// Kept says why the item is left as it is (the worker still needs it); "" when it is to be
	// erased or scrubbed.
	Kept string
}

// ForgetOutcome is what Apply did with an item.
type ForgetOutcome string

// Apply's outcomes.
const (
	ForgetErased   ForgetOutcome = "erased"       // the message was deleted securely
	ForgetScrubbed ForgetOutcome = "scrubbed"     // the record holds no personal data any more
	ForgetGone     ForgetOutcome = "already gone" // aged out, or erased by another forget, meanwhile
	// ForgetBusy: the record's key is being worked on again (a replay started since the plan);
	// forget it again once it is finished.
	ForgetBusy ForgetOutcome = "kept: its command is being worked on"
)

// ForgetPlan is what PlanForget found, in the order Apply erases it.
type ForgetPlan struct {
	Items []ForgetItem
	topo  Topology
}

// Kept counts the items left as they are.
func (p *ForgetPlan) Kept() int {
	n := 0
	for _, it := range p.Items {
		if it.Kept != "" {
			n++
		}
	}
	return n
}

// PlanForget finds the messages and records that hold what the worker stored about the target,
// reading each stream (and the bucket's records) once, up to what it held when the read started;
// the result stream is read twice. progress, when not nil, is called as messages are read with
// the stream, the messages read and the stream's messages.
func PlanForget(ctx context.Context, js jetstream.JetStream, topo Topology, target ForgetTarget,
	progress func(stream string, read, total uint64)) (*ForgetPlan, error) {
	f := &forgetter{js: js, topo: topo, names: map[string]bool{}, keys: map[string]bool{}, progress: progress}
	for _, pair := range []struct {
		resource string
		uuids    []string
	}{{"reservation", target.Reservations}, {"order", target.Orders}} {
		for _, u := range pair.uuids {
			if err := frontpay.ValidateUUID(pair.resource+"Uuid", u); err != nil {
				return nil, err
			}
			f.names[pair.resource+"."+u] = true
			f.uuids = append(f.uuids, u)
		}
	}
	for _, k := range target.Keys {
		f.addKey(target.Merchant, k)
	}
	if f.progress == nil {
		f.progress = func(string, uint64, uint64) {}
	}
	return f.plan(ctx)
}

// forgetter is one PlanForget.
type forgetter struct {
	js       jetstream.JetStream
	topo     Topology
	names    map[string]bool // "reservation.<uuid>", "order.<uuid>": the targets
	uuids    []string        // the targets' UUIDs, for messages that are no command
	keys     map[string]bool // the targets' idempotency keys, each in its merchant's space (schemas.MerchantKey)
	progress func(stream string, read, total uint64)
}

func (f *forgetter) addKey(merchant, k string) {
	if k != "" {
		f.keys[schemas.MerchantKey(merchant, k)] = true
	}
}

func (f *forgetter) plan(ctx context.Context) (*ForgetPlan, error) {
	floor, err := f.ackFloors(ctx)
	if err != nil {
		return nil, err
	}
	// The keys of the results that name a target, so that the records, commands and results
	// naming none (a submit's) are found by them.
	err = f.scan(ctx, f.topo.ResultStream(), func(m jetstream.Msg, _ uint64) {
		if ev, ok := decodeEvent(m.Data()); ok && f.anyTarget(eventNames(ev)) {
			f.addKey(ev.Merchant, ev.IdempotencyKey)
		}
	})
	if err != nil {
		return nil, err
	}
	records, err := f.records(ctx)
	if err != nil {
		return nil, err
	}
	p := &ForgetPlan{topo: f.topo}
	err = f.scan(ctx, f.topo.CommandStream(), func(m jetstream.Msg, seq uint64) {
		merchant, op, ok := f.topo.commandOf(m.Subject())
		if !f.command(merchant, op, ok, m.Headers(), m.Data()) {
			return
		}
		it := ForgetItem{Stream: f.topo.CommandStream(), Seq: seq, Subject: m.Subject()}
		if seq > floor(merchant) {
			it.Kept = "not answered yet (above the consumer's ack floor): the worker still needs it"
		}
		p.Items = append(p.Items, it)
	})
	if err != nil {
		return nil, err
	}
	err = f.scan(ctx, f.topo.DeadLetterStream(), func(m jetstream.Msg, seq uint64) {
		merchant, op, ok := f.topo.commandOf(m.Headers().Get(publisher.HeaderDeadLetterSubject))
		if f.command(merchant, op, ok, m.Headers(), m.Data()) {
			p.Items = append(p.Items, ForgetItem{Stream: f.topo.DeadLetterStream(), Seq: seq, Subject: m.Subject()})
		}
	})
	if err != nil {
		return nil, err
	}
	err = f.scan(ctx, f.topo.ResultStream(), func(m jetstream.Msg, seq uint64) {
		if f.result(m) {
			p.Items = append(p.Items, ForgetItem{Stream: f.topo.ResultStream(), Seq: seq, Subject: m.Subject()})
		}
	})
	if err != nil {
		return nil, err
	}
	p.Items = append(p.Items, records...)
	return p, nil
}

// ackFloors returns, for a merchant ("" in a one-merchant deployment), the sequence up to which
// its commands are answered: the ack floor of its consumer and, with several merchants, at most
// the unknown merchants' consumer's, which reads them all. Without a consumer, nothing is answered.
func (f *forgetter) ackFloors(ctx context.Context) (func(merchant string) uint64, error) {
	stream, err := f.js.Stream(ctx, f.topo.CommandStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return func(string) uint64 { return 0 }, nil
	} else if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", f.topo.CommandStream(), err)
	}
	floors := map[string]uint64{}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		floors[info.Name] = info.AckFloor.Stream
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", f.topo.CommandStream(), err)
	}
	return func(merchant string) uint64 {
		floor, ok := floors[ConsumerFor(merchant)]
		if f.topo.Merchants {
			unknown, found := floors[UnknownMerchantsConsumer]
			switch {
			case !found:
				return 0
			case !ok:
				return unknown
			}
			return min(floor, unknown)
		}
		return floor
	}, nil
}

// scan calls each with every message the stream held when the scan started.
func (f *forgetter) scan(ctx context.Context, name string, each func(m jetstream.Msg, seq uint64)) error {
	s, err := f.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	next, last, total := info.State.FirstSeq, info.State.LastSeq, info.State.Msgs
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	var read uint64
	for next <= last {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			seq := md.Sequence.Stream
			if seq > last {
				return nil
			}
			read++
			f.progress(name, read, total)
			each(m, seq)
			// Without waiting for the rest of the batch, or, where the messages at the end were
			// erased (a forget before this one), for a fetch to time out.
			if next = seq + 1; next > last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if n > 0 {
			continue
		}
		// An empty batch may only mean a busy server: stop when no message up to last is left
		// (the rest aged out, or was erased, meanwhile).
		m, err := s.GetMsg(ctx, next, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Sequence > last {
			return nil
		} else if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
	return nil
}

// records finds the idempotency records of the targets, and learns their keys.
func (f *forgetter) records(ctx context.Context) ([]ForgetItem, error) {
	bucket := f.topo.StateBucket()
	kv, err := f.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	byKey := map[string]bool{}
	for k := range f.keys {
		byKey[recordKey("", k)] = true // k is in its merchant's space already
	}
	w, err := kv.WatchFiltered(ctx, []string{KeyPrefixRecord + ">"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read bucket %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	var items []ForgetItem
	var read uint64
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e == nil {
			return items, nil // every record as it was when the watch started
		}
		read++
		f.progress(bucket, read, read+e.Delta())
		var rec record
		if json.Unmarshal(e.Value(), &rec) != nil {
			continue // not a record this worker can read: nothing of it to scrub
		}
		ev, _ := decodeEvent(rec.Event)
		names := eventNames(ev)
		if rec.Resource != "" {
			names = append(names, rec.Resource)
		}
		switch {
		case f.anyTarget(names) || byKey[e.Key()]:
			f.addKey(ev.Merchant, ev.IdempotencyKey)
		case len(names) > 0 || !f.mentioned(nil, rec.Event):
			continue
		}
		it := ForgetItem{Record: true, Stream: bucket, Seq: e.Revision(), Subject: e.Key(),
			What: fmt.Sprintf("%s %s key=%s", rec.Op, rec.State, ev.IdempotencyKey)}
		if !rec.done() {
			it.Kept = fmt.Sprintf("its command is being worked on (state %s)", rec.State)
		} else if changed, err := rec.scrub(); err != nil {
			return nil, fmt.Errorf("record %s: %w", e.Key(), err)
		} else if !changed {
			continue // scrubbed before
		}
		items = append(items, it)
	}
}

// anyTarget reports whether one of names ("reservation.<uuid>", "order.<uuid>") is a target.
func (f *forgetter) anyTarget(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return f.names[n] })
}

// command reports whether a message of the command or dead-letter stream holds a target's
// data: a command whose data names a target, or that names none and has one of its keys; a
// message that is no command, where a target's UUID shows in it as a word.
func (f *forgetter) command(merchant string, op frontpay.Operation, known bool, header nats.Header, data []byte) bool {
	if known {
		raw := schemas.Structured(header, data)
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil && obj != nil {
			o := schemas.OriginOf(op, raw)
			if o.Resource != "" {
				return f.names[op.Resource()+"."+o.Resource]
			}
			return f.keys[schemas.MerchantKey(merchant, o.Key)]
		}
	}
	return f.mentioned(header, data)
}

// result reports whether a message of the result stream holds a target's data: an event that
// names a target, or that names none and has one of its keys or shows a target's UUID as a word
// (a history answer lists the events of every reservation, with the contact each link was sent
// to).
func (f *forgetter) result(m jetstream.Msg) bool {
	ev, ok := decodeEvent(m.Data())
	if !ok {
		return f.mentioned(m.Headers(), m.Data())
	}
	names := eventNames(ev)
	return f.anyTarget(names) || (len(names) == 0 && (f.keys[schemas.MerchantKey(ev.Merchant, ev.IdempotencyKey)] || f.mentioned(nil, m.Data())))
}

// mentioned reports whether a target's UUID shows as a word in data or in a header value.
func (f *forgetter) mentioned(header nats.Header, data []byte) bool {
	for _, u := range f.uuids {
		if containsWord(data, u) {
			return true
		}
		for _, vs := range header {
			for _, v := range vs {
				if containsWord([]byte(v), u) {
					return true
				}
			}
		}
	}
	return false
}

// containsWord reports whether w occurs in b with no letter, digit, '-' or '_' either side:
// RES12 is not found in RES123.
func containsWord(b []byte, w string) bool {
	word := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	for from := 0; ; {
		i := bytes.Index(b[from:], []byte(w))
		if i < 0 {
			return false
		}
		i += from
		end := i + len(w)
		if (i == 0 || !word(b[i-1])) && (end == len(b) || !word(b[end])) {
			return true
		}
		from = i + 1
	}
}

// decodeEvent reads a result or status event.
func decodeEvent(b []byte) (schemas.Event, bool) {
	var ev schemas.Event
	ok := len(b) > 0 && json.Unmarshal(b, &ev) == nil && ev.Type != ""
	return ev, ok
}

// eventNames lists the reservations and orders an event names, as "reservation.<uuid>" or
// "order.<uuid>": its subject, and the reservationUuid or orderUuid of a success's response.
func eventNames(ev schemas.Event) []string {
	resource, _, _ := strings.Cut(ev.Type, ".")
	var names []string
	if ev.Subject != "" {
		names = append(names, resource+"."+ev.Subject)
	}
	if !strings.HasSuffix(ev.Type, ".succeeded") {
		return names
	}
	var data struct {
		Response json.RawMessage `json:"response"`
	}
	var response map[string]json.RawMessage
	if json.Unmarshal(ev.Data, &data) != nil || json.Unmarshal(data.Response, &response) != nil {
		return names
	}
	for field, resource := range map[string]string{"reservationUuid": "reservation", "orderUuid": "order"} {
		var id string
		if json.Unmarshal(response[field], &id) == nil && id != "" {
			names = append(names, resource+"."+id)
		}
	}
	return names
}

// redactEvent returns a result event without the personal data it carries: the command of a
// failure, its errors (the API's words about the command's fields, which may quote them) and the
// response of a success become null. Its envelope (id, type, subject, idempotencykey,
// causationid, correlationid, time) and its outcome stay. It also returns the names of
// eventNames, as the event had them.
func redactEvent(raw json.RawMessage) (json.RawMessage, []string, error) {
	var ev schemas.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, nil, fmt.Errorf("decode recorded event: %w", err)
	}
	names := eventNames(ev)
	var data any
	if strings.HasSuffix(ev.Type, ".succeeded") {
		var s schemas.Success
		if err := json.Unmarshal(ev.Data, &s); err != nil {
			return nil, nil, fmt.Errorf("decode recorded success: %w", err)
		}
		s.Response = nil
		data = s
	} else {
		var fl schemas.Failure
		if err := json.Unmarshal(ev.Data, &fl); err != nil {
			return nil, nil, fmt.Errorf("decode recorded failure: %w", err)
		}
		fl.Command, fl.Errors = nil, nil
		data = fl
	}
	var err error
	if ev.Data, err = json.Marshal(data); err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(ev)
	return out, names, err
}

// Apply erases what the plan found, in its order, and calls done with each item it erased or
// found changed: a message already gone, a record being worked on again. It skips the items the
// plan keeps. Records are scrubbed with a compare-and-swap: one that changed since the plan is
// read again.
func (p *ForgetPlan) Apply(ctx context.Context, js jetstream.JetStream, done func(ForgetItem, ForgetOutcome)) error {
	streams := map[string]jetstream.Stream{}
	var kv jetstream.KeyValue
	for _, it := range p.Items {
		if it.Kept != "" {
			continue
		}
		if it.Record {
			if kv == nil {
				var err error
				if kv, err = js.KeyValue(ctx, it.Stream); err != nil {
					return fmt.Errorf("open bucket %s: %w", it.Stream, err)
				}
			}
			outcome, err := scrubRecord(ctx, kv, it.Subject)
			if err != nil {
				return err
			}
			done(it, outcome)
			continue
		}
		s := streams[it.Stream]
		if s == nil {
			var err error
			if s, err = js.Stream(ctx, it.Stream); err != nil {
				return fmt.Errorf("open stream %s: %w", it.Stream, err)
			}
			streams[it.Stream] = s
		}
		if err := s.SecureDeleteMsg(ctx, it.Seq); err != nil {
			if _, gerr := s.GetMsg(ctx, it.Seq); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("erase %s message %d: %w", it.Stream, it.Seq, err)
			}
			done(it, ForgetGone)
			continue
		}
		done(it, ForgetErased)
	}
	return nil
}

// scrubRecord scrubs the finished record at the bucket key, as it is now.
func scrubRecord(ctx context.Context, kv jetstream.KeyValue, key string) (ForgetOutcome, error) {
	for range 10 {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ForgetGone, nil
		} else if err != nil {
			return "", fmt.Errorf("read record %s: %w", key, err)
		}
		var rec record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return "", fmt.Errorf("decode record %s: %w", key, err)
		}
		if !rec.done() {
			return ForgetBusy, nil
		}
		changed, err := rec.scrub()
		if err != nil {
			return "", fmt.Errorf("record %s: %w", key, err)
		}
		if !changed {
			return ForgetScrubbed, nil
		}
		b, err := json.Marshal(&rec)
		if err != nil {
			return "", err
		}
		_, err = kv.Update(ctx, key, b, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // the worker wrote it meanwhile: look again
		} else if err != nil {
			return "", fmt.Errorf("scrub record %s: %w", key, err)
		}
		return ForgetScrubbed, nil
	}
	return "", fmt.Errorf("scrub record %s: it kept changing", key)
}
