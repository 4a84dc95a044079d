package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// planned is one command of the workload: its key, data and event.
type planned struct {
	Command
	data      map[string]any
	ev        schemas.Event
	raw       []byte
	pay       *payment  // a capture or charge: what a refund of it may name
	published time.Time // first publication
	answered  time.Time // the result's time
}

// line is a product line of a reservation, amounts in whole NOK.
type line struct {
	id     int64
	amount int64
}

// payment is a capture or charge the workload published; ref is known once it succeeded.
type payment struct {
	key    string
	source string          // captured or charged
	lines  map[int64]int64 // product line id → NOK; a charge's line id is known after a details read
	total  int64
	ref    string
}

// resv is a reservation of the workload and what was planned on it.
type resv struct {
	merchant  string // "" in a one-merchant deployment
	uuid      string
	submitKey string
	amounts   []int64 // the submitted lines, in order
	lines     []line  // with ids, read after payment
	captured  map[int64]int64
	charged   int64
	grand     int64
	captures  int
	charges   int
	cancel    bool // kept for a cancel in phase 3: nothing captured or charged
	payments  []*payment
	unsettled bool // a phase-2 command failed: its state is not known well enough for phase 3
}

// driver publishes the workload and follows its results.
type driver struct {
	cfg       config
	cl        *cluster
	js        jetstream.JetStream
	merchants []string                    // the merchants' ids; "" alone in the engine scenario
	apis      map[string]*frontpay.Client // a client of each merchant's account
	rng       *rand.Rand
	runID     string
	progress  func(format string, args ...any)
	topo      consumer.Topology

	n, order int
	cmds     []*planned
	byKey    map[string]*planned
	dupes    int // duplicate publications

	mu      sync.Mutex
	stream  jetstream.Stream
	results []Result
	final   map[string]schemas.Event // first terminal result per key
	next    uint64
}

// newDriver returns the driver of a workload; apis has a client of each merchant's account,
// keyed by merchant id ("" alone in the engine scenario).
func newDriver(cfg config, cl *cluster, js jetstream.JetStream, apis map[string]*frontpay.Client, progress func(string, ...any)) *driver {
	d := &driver{
		cfg: cfg, cl: cl, js: js, apis: apis, progress: progress,
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0xc4a05)),
		runID: strconv.FormatUint(uint64(cfg.Seed)%(36*36*36*36*36), 36),
		byKey: map[string]*planned{}, final: map[string]schemas.Event{}, next: 1, merchants: []string{""},
	}
	if cfg.Scenario == scenarioMerchants {
		d.topo = consumer.Topology{Prefix: merchantsPrefix, Merchants: true}
		d.merchants = merchantIDs(cfg.Merchants)
	}
	return d
}

// plan adds a command of op for merchant on reservation (or none) with data; marker defaults to
// the key's.
func (d *driver) plan(op frontpay.Operation, merchant string, r *resv, data map[string]any, key, marker string) *planned {
	if marker == "" {
		marker = keyMarker(op, key)
	}
	p := &planned{Command: Command{Key: key, Op: op, Merchant: merchant, Marker: marker, Copies: 1}, data: data}
	if r != nil {
		p.Reservation = r.uuid
		data["reservationUuid"] = r.uuid
	}
	raw, _ := json.Marshal(data)
	p.ev = schemas.Event{
		SpecVersion: "1.0", ID: newID(d.rng), Source: "chaos", Type: schemas.CommandSubject("", op),
		Time: time.Now().UTC().Format(time.RFC3339), DataContentType: "application/json",
		IdempotencyKey: key, CorrelationID: "chaos-" + d.runID, Data: raw,
	}
	p.raw, _ = json.Marshal(p.ev)
	d.cmds = append(d.cmds, p)
	d.byKey[key] = p
	return p
}

func (d *driver) key() string {
	d.n++
	return fmt.Sprintf("chaos-%s-%05d", d.runID, d.n)
}

// newID is a random (version 4) UUID from rng.
func newID(rng *rand.Rand) string {
	var u [16]byte
	for i := range u {
		u[i] = byte(rng.Uint32())
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Command data of each operation. Amounts are whole NOK; the key goes where its effect will show.

func submitData(key string, amounts []int64, now time.Time) map[string]any {
	products := map[string]any{}
	var sum int64
	for i, a := range amounts {
		products[strconv.Itoa(i)] = map[string]any{"name": fmt.Sprintf("Line %c", 'A'+i), "productId": nil, "rate": a, "tax": "0", "amount": a}
		sum += a
	}
	return map[string]any{
		"customerDetails": map[string]any{
			"type": "private", "countryCode": "+47", "msisdn": "46567468", "email": "chaos@example.no", "name": "Chaos Monkey",
			"preferredLanguage": "en", "personalNumber": nil, "organizationId": nil,
			"address": map[string]any{"street": "Storgata 1", "zip": "0150", "city": "Oslo", "country": "NO"},
		},
		"orderDate":             strconv.FormatInt(now.Unix(), 10),
		"dueDateForPaymentLink": strconv.FormatInt(now.Add(24*time.Hour).Unix(), 10),
		"referenceNo":           key, "customerReference": nil,
		"sendOrderBy":    map[string]any{"sms": false, "email": true},
		"products":       products,
		"orderSummary":   map[string]any{"subTotal": sum, "totalTax": 0, "grandTotal": sum},
		"chargeValidity": nil, "customerNotes": nil, "tnc": nil,
	}
}

func captureData(key string, lines map[int64]int64) (map[string]any, int64) {
	products := map[string]any{}
	var sum int64
	i := 0
	for _, id := range sortedIDs(lines) {
		products[strconv.Itoa(i)] = map[string]any{"id": id, "amount": lines[id]}
		sum += lines[id]
		i++
	}
	return map[string]any{"products": products, "grandTotal": sum, "additionalText": key}, sum
}

func chargeData(key string, amount int64) map[string]any {
	return map[string]any{
		"products":   map[string]any{"0": map[string]any{"name": key, "productId": nil, "rate": amount, "tax": "0", "amount": amount}},
		"grandTotal": amount, "additionalText": key,
	}
}

func refundData(p *payment, id, amount int64) map[string]any {
	return map[string]any{
		"type": "reservation", "grandTotal": amount, "source": p.source, "reference": p.ref,
		"products": []any{map[string]any{"id": id, "amount": amount}},
	}
}

func sortedIDs(m map[int64]int64) []int64 { return slices.Sorted(maps.Keys(m)) }

// publish publishes the commands in order, each once, and a share of them a second time a few
// commands later: half as the very same message without Nats-Msg-Id (a publisher's retry the
// stream cannot drop), half as a new event with a new id and the same key and data.
func (d *driver) publish(ctx context.Context, cmds []*planned) error {
	type pub struct {
		p   *planned
		dup int // 0: the command; 1: same bytes, no Nats-Msg-Id; 2: new id
	}
	var seq []pub
	var pending []pub // duplicates waiting for their place
	for _, p := range cmds {
		seq = append(seq, pub{p: p})
		if d.rng.Float64() < d.cfg.DupShare {
			pending = append(pending, pub{p: p, dup: 1 + d.rng.IntN(2)})
		}
		// A waiting duplicate goes out after a few more commands.
		for len(pending) > 0 && d.rng.IntN(4) == 0 {
			seq = append(seq, pending[0])
			pending = pending[1:]
		}
	}
	seq = append(seq, pending...)
	for _, s := range seq {
		m := nats.NewMsg(schemas.CommandSubject(d.topo.SubjectPrefix(s.p.Merchant), s.p.Op))
		switch s.dup {
		case 0:
			d.order++
			s.p.Order, s.p.published = d.order, time.Now()
			m.Data = s.p.raw
			m.Header.Set(jetstream.MsgIDHeader, s.p.ev.ID)
		case 1:
			m.Data = s.p.raw
		case 2:
			ev := s.p.ev
			ev.ID = newID(d.rng)
			m.Data, _ = json.Marshal(ev)
			m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		}
		if s.dup > 0 {
			s.p.Copies++
			d.dupes++
		}
		if err := publishRetry(ctx, d.js, m); err != nil {
			return err
		}
	}
	return nil
}

// publishRetry publishes until the stream acknowledges, through a NATS restart; Nats-Msg-Id
// makes a retry of a publish whose ack was lost harmless.
func publishRetry(ctx context.Context, js jetstream.JetStream, m *nats.Msg) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w (last error %v)", m.Subject, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// poll reads the result events stored since the last poll.
func (d *driver) poll(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if d.stream == nil {
		s, err := d.js.Stream(ctx, d.topo.ResultStream())
		if err != nil {
			return err
		}
		d.stream = s
	}
	info, err := d.stream.Info(ctx)
	if err != nil {
		d.stream = nil
		return err
	}
	for ; d.next <= info.State.LastSeq; d.next++ {
		m, err := d.stream.GetMsg(ctx, d.next)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return fmt.Errorf("result seq %d is not an event: %w", d.next, err)
		}
		d.results = append(d.results, Result{Seq: d.next, Subject: m.Subject, Event: ev})
		if _, seen := d.final[ev.IdempotencyKey]; !seen && ev.CausationID != "" {
			d.final[ev.IdempotencyKey] = ev
		}
	}
	return nil
}

// await polls until every command of cmds has a result or the deadline passes. onResult sees
// each command's result once, as it arrives.
func (d *driver) await(ctx context.Context, what string, cmds []*planned, deadline time.Time, onResult func(*planned, schemas.Event)) error {
	start := time.Now()
	seen := map[string]bool{}
	lastReport := time.Now()
	for {
		if err := d.poll(ctx); err != nil && ctx.Err() == nil {
			d.progress("reading results: %v (will retry)", err)
		}
		d.mu.Lock()
		var fresh []*planned
		for _, p := range cmds {
			if _, ok := d.final[p.Key]; ok && !seen[p.Key] {
				seen[p.Key] = true
				fresh = append(fresh, p)
			}
		}
		finals := make([]schemas.Event, len(fresh))
		for i, p := range fresh {
			finals[i] = d.final[p.Key]
		}
		d.mu.Unlock()
		for i, p := range fresh {
			if t, err := time.Parse(time.RFC3339Nano, finals[i].Time); err == nil {
				p.answered = t
			} else {
				p.answered = time.Now()
			}
			if onResult != nil {
				onResult(p, finals[i])
			}
		}
		if len(seen) == len(cmds) {
			d.progress("%s: %d/%d results in %s", what, len(seen), len(cmds), time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: only %d of %d commands have a result at the deadline", what, len(seen), len(cmds))
		}
		if time.Since(lastReport) > 10*time.Second {
			d.progress("%s: %d/%d results so far", what, len(seen), len(cmds))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// succeeded decodes a success's response, false for a failure.
func succeeded(ev schemas.Event, into any) bool {
	if !strings.HasSuffix(ev.Type, ".succeeded") {
		return false
	}
	var s schemas.Success
	if json.Unmarshal(ev.Data, &s) != nil {
		return false
	}
	return into == nil || json.Unmarshal(s.Response, into) == nil
}

// phaseSubmit publishes the submits and has the customer pay each reservation that succeeds.
func (d *driver) phaseSubmit(ctx context.Context, count int, deadline time.Time) ([]*resv, error) {
	var cmds []*planned
	byKey := map[string]*resv{}
	now := time.Now()
	for i := range count {
		key := d.key()
		amounts := []int64{100 + d.rng.Int64N(900), 50 + d.rng.Int64N(450)}
		m := d.merchants[i%len(d.merchants)] // round-robin
		cmds = append(cmds, d.plan(frontpay.ReservationSubmit, m, nil, submitData(key, amounts, now), key, ""))
		byKey[key] = &resv{merchant: m, submitKey: key, amounts: amounts, captured: map[int64]int64{}, grand: amounts[0] + amounts[1]}
	}
	if err := d.publish(ctx, cmds); err != nil {
		return nil, err
	}
	d.progress("phase 1: published %d submits", len(cmds))
	var paid []*resv
	var payErr error
	err := d.await(ctx, "phase 1 (submit, pay)", cmds, deadline, func(p *planned, ev schemas.Event) {
		var res frontpay.SubmitReservationResult
		if !succeeded(ev, &res) || res.ReservationUUID == "" {
			return
		}
		if err := d.cl.pay(res.ReservationUUID); err != nil {
			payErr = errors.Join(payErr, err)
			return
		}
		r := byKey[p.Key]
		r.uuid = res.ReservationUUID
		paid = append(paid, r)
	})
	if payErr != nil {
		d.progress("phase 1: paying failed: %v", payErr)
	}
	// Line ids come from the details.
	var ready []*resv
	for _, r := range paid {
		det, err := d.details(ctx, r)
		if err != nil {
			return nil, err
		}
		for i, p := range det.ProductList {
			id, _ := strconv.ParseInt(p.ID.String(), 10, 64)
			if i < len(r.amounts) {
				r.lines = append(r.lines, line{id: id, amount: r.amounts[i]})
			}
		}
		ready = append(ready, r)
	}
	return ready, err
}

// details reads a reservation with a token of its merchant's account.
func (d *driver) details(ctx context.Context, r *resv) (*frontpay.Reservation, error) {
	var last error
	for range 5 {
		res, err := d.apis[r.merchant].Details(ctx, r.uuid)
		if err == nil {
			return &res.Data, nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("details of %s: %w", r.uuid, last)
}

// phaseMove publishes captures (full and partial) and charges, spread over the reservations
// round-robin until budget is spent; a share of the reservations is kept for a cancel.
func (d *driver) phaseMove(ctx context.Context, rs []*resv, budget int, deadline time.Time) error {
	movable, cmds, owner := d.planMoves(rs, budget)
	if err := d.publish(ctx, cmds); err != nil {
		return err
	}
	d.progress("phase 2: published %d captures and charges on %d reservations", len(cmds), len(movable))
	return d.awaitMoves(ctx, movable, cmds, owner, deadline)
}

// awaitMoves waits for the results of phase 2 and learns the payments they made.
func (d *driver) awaitMoves(ctx context.Context, movable []*resv, cmds []*planned, owner map[string]*resv, deadline time.Time) error {
	err := d.await(ctx, "phase 2 (capture, charge)", cmds, deadline, func(p *planned, ev schemas.Event) {
		r := owner[p.Key]
		var res frontpay.PaymentResult
		if !succeeded(ev, &res) || res.UUID == "" {
			r.unsettled = true
			return
		}
		p.pay.ref = res.UUID
		r.payments = append(r.payments, p.pay)
	})
	// A charge's product line is new: read its id by the line's name, the charge's key.
	for _, r := range movable {
		if r.unsettled || r.charges == 0 {
			continue
		}
		det, err := d.details(ctx, r)
		if err != nil {
			return err
		}
		for _, pay := range r.payments {
			if pay.source != "charged" {
				continue
			}
			for _, l := range det.ProductList {
				if l.Name == pay.key {
					id, _ := strconv.ParseInt(l.ID.String(), 10, 64)
					pay.lines = map[int64]int64{id: pay.total}
				}
			}
		}
	}
	return err
}

// planMoves plans phase 2: the reservations that get captures and charges, the commands in
// publish order, and the reservation of each command's key.
func (d *driver) planMoves(rs []*resv, budget int) ([]*resv, []*planned, map[string]*resv) {
	var movable []*resv
	nth := map[string]int{}
	for _, r := range rs {
		// One in seven of each merchant's reservations, never its first, stays reserved for a
		// cancel: every merchant has captures and charges. The count starts further on for each
		// merchant, so that merchants of few reservations have cancels too.
		nth[r.merchant]++
		if n := nth[r.merchant]; n > 1 && (n+slices.Index(d.merchants, r.merchant))%7 == 4 {
			r.cancel = true
			continue
		}
		movable = append(movable, r)
	}
	perRes := map[*resv][]*planned{}
	for progress := true; budget > 0 && progress; {
		progress = false
		for _, r := range movable {
			if budget == 0 {
				break
			}
			if p := d.nextMove(r); p != nil {
				perRes[r] = append(perRes[r], p)
				budget--
				progress = true
			}
		}
	}
	owner := map[string]*resv{}
	for r, ps := range perRes {
		for _, p := range ps {
			owner[p.Key] = r
		}
	}
	return movable, interleave(d.rng, movable, perRes), owner
}

// nextMove plans the next capture or charge of r, nil when none is left.
func (d *driver) nextMove(r *resv) *planned {
	var runway []line
	for _, l := range r.lines {
		if left := l.amount - r.captured[l.id]; left > 0 {
			runway = append(runway, line{id: l.id, amount: left})
		}
	}
	canCapture := len(runway) > 0 && r.captures < 4
	canCharge := r.grand-r.charged >= 5 && r.charges < 2
	switch {
	case canCapture && (!canCharge || d.rng.Float64() < 0.7):
		lines := map[int64]int64{}
		if r.captures == 0 && d.rng.Float64() < 0.35 {
			for _, l := range runway { // capture in full
				lines[l.id] = l.amount
			}
		} else {
			l := runway[d.rng.IntN(len(runway))]
			amount := l.amount
			if amount >= 2 {
				amount = 1 + d.rng.Int64N(amount-1)
			}
			lines[l.id] = amount
		}
		for id, a := range lines {
			r.captured[id] += a
		}
		r.captures++
		key := d.key()
		data, total := captureData(key, lines)
		p := d.plan(frontpay.ReservationCapture, r.merchant, r, data, key, "")
		p.pay = &payment{key: key, source: "captured", lines: lines, total: total}
		return p
	case canCharge:
		amount := 5 + d.rng.Int64N(min(r.grand-r.charged-5, 95)+1)
		r.charged += amount
		r.charges++
		key := d.key()
		p := d.plan(frontpay.ReservationCharge, r.merchant, r, chargeData(key, amount), key, "")
		p.pay = &payment{key: key, source: "charged", total: amount}
		return p
	}
	return nil
}

// phaseSettle publishes, per reservation in this order, resends, refunds and then a cancel (the
// reservations kept for it) or a complete (most of the others). Resends fill the budget.
func (d *driver) phaseSettle(ctx context.Context, rs []*resv, budget int, deadline time.Time) error {
	open, cmds := d.planSettle(rs, budget)
	if err := d.publish(ctx, cmds); err != nil {
		return err
	}
	d.progress("phase 3: published %d resends, refunds, cancels and completes on %d reservations", len(cmds), len(open))
	return d.await(ctx, "phase 3 (resend, refund, cancel, complete)", cmds, deadline, nil)
}

// planSettle plans phase 3: the reservations it works on and the commands in publish order.
func (d *driver) planSettle(rs []*resv, budget int) ([]*resv, []*planned) {
	var open []*resv
	tail := map[*resv][]*planned{} // refunds, cancel, complete
	for _, r := range rs {
		if r.unsettled || (!r.cancel && len(r.payments) == 0) {
			continue
		}
		open = append(open, r)
		if r.cancel {
			key := d.key()
			tail[r] = append(tail[r], d.plan(frontpay.ReservationCancel, r.merchant, r, map[string]any{"note": key}, key, ""))
			continue
		}
		for _, pay := range r.payments {
			if len(pay.lines) == 0 || d.rng.Float64() >= 0.5 {
				continue
			}
			id := sortedIDs(pay.lines)[d.rng.IntN(len(pay.lines))]
			amount := pay.lines[id]
			if pay.source == "captured" && amount >= 2 && d.rng.Float64() < 0.6 {
				amount = 1 + d.rng.Int64N(amount-1) // partial
			}
			if pay.source == "charged" {
				amount = pay.total // a charge is refunded in full only
			}
			key := d.key()
			tail[r] = append(tail[r], d.plan(frontpay.ReservationRefund, r.merchant, r, refundData(pay, id, amount), key, refundMarker(pay.ref, amount*100)))
		}
		if d.rng.Float64() < 0.75 {
			key := d.key()
			tail[r] = append(tail[r], d.plan(frontpay.ReservationComplete, r.merchant, r, map[string]any{"note": key}, key, ""))
		}
	}
	used := 0
	for _, ps := range tail {
		used += len(ps)
	}
	head := map[*resv][]*planned{} // resends, before the rest
	for left, progress := budget-used, true; left > 0 && progress; {
		progress = false
		for _, r := range open {
			if left == 0 || len(head[r]) >= 4 {
				continue
			}
			key := d.key()
			head[r] = append(head[r], d.plan(frontpay.ReservationResend, r.merchant, r,
				map[string]any{"countryCode": nil, "msisdn": nil, "email": key + "@example.no"}, key, ""))
			left--
			progress = true
		}
	}
	perRes := map[*resv][]*planned{}
	for _, r := range open {
		perRes[r] = append(head[r], tail[r]...)
	}
	return open, interleave(d.rng, open, perRes)
}

// interleave merges the reservations' command lists at random, keeping each list's order.
func interleave(rng *rand.Rand, rs []*resv, per map[*resv][]*planned) []*planned {
	var queues [][]*planned
	for _, r := range rs {
		if len(per[r]) > 0 {
			queues = append(queues, per[r])
		}
	}
	var out []*planned
	for len(queues) > 0 {
		i := rng.IntN(len(queues))
		out = append(out, queues[i][0])
		if queues[i] = queues[i][1:]; len(queues[i]) == 0 {
			queues = append(queues[:i], queues[i+1:]...)
		}
	}
	return out
}
