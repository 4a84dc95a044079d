package fleet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
)

// Spreading merchants over the replicas.
//
// Every replica writes a heartbeat to the state bucket (member.<instance>) every second and
// watches everyone's. A replica is alive while its heartbeat is less than three seconds old, by
// the watcher's own clock (no clocks are compared). Merchants are assigned by rendezvous hashing
// with bounded loads: in the order of their ids, each goes to the first replica, in the order of
// the rendezvous hash of (merchant, replica), that has fewer than ceil(M/R) merchants yet. Every
// replica computes the same assignment from the same members and merchants, the loads differ by
// one at most, and a change of members moves few merchants. A replica that stops deletes its heartbeat, so
// the others take its merchants over at once; one that dies loses them once its heartbeat is
// three seconds old (and the server's pin on each, after PinnedTTL).

const (
	heartbeatEvery = time.Second
	aliveFor       = 3 * heartbeatEvery
	// forgetAfter is the age past which a heartbeat left by a replica that died is deleted.
	forgetAfter = 10 * time.Minute
)

// members is what a replica knows of the others.
type members struct {
	kv   jetstream.KeyValue
	self string
	log  *slog.Logger

	mu      sync.Mutex
	seen    map[string]time.Time // instance → when its last heartbeat arrived here
	changed chan struct{}        // a member came or went (capacity 1)
	synced  chan struct{}        // closed once the heartbeats stored before the watch are in
}

func newMembers(kv jetstream.KeyValue, self string, log *slog.Logger) *members {
	return &members{kv: kv, self: self, log: log, seen: map[string]time.Time{}, changed: make(chan struct{}, 1), synced: make(chan struct{})}
}

func memberKey(instance string) string { return consumer.KeyPrefixMember + instance }

// run beats and watches until ctx ends, then deletes this replica's heartbeat.
func (ms *members) run(ctx context.Context) error {
	w, err := ms.kv.Watch(ctx, consumer.KeyPrefixMember+"*")
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	ms.beat(ctx)
	initial := true
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := ms.kv.Delete(dctx, memberKey(ms.self)); err != nil {
				ms.log.Debug("leave", "err", err)
			}
			return nil
		case <-beat.C:
			ms.beat(ctx)
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("membership watch ended")
			}
			if e == nil {
				if initial { // the values stored before the watch are in
					initial = false
					close(ms.synced)
				}
				continue
			}
			ms.update(e, initial)
		}
	}
}

// beat writes this replica's heartbeat and forgets those of replicas long dead.
func (ms *members) beat(ctx context.Context) {
	if _, err := ms.kv.PutString(ctx, memberKey(ms.self), time.Now().UTC().Format(time.RFC3339)); err != nil {
		ms.log.Debug("heartbeat", "err", err)
	}
	ms.mu.Lock()
	var gone []string
	for inst, at := range ms.seen {
		if time.Since(at) > forgetAfter {
			gone = append(gone, inst)
		}
	}
	ms.mu.Unlock()
	for _, inst := range gone {
		_ = ms.kv.Delete(ctx, memberKey(inst))
	}
}

// update takes one heartbeat (or its deletion) in. A heartbeat stored before this replica
// watched is dated by the server's clock, the only date it has; every later one by its arrival.
func (ms *members) update(e jetstream.KeyValueEntry, stored bool) {
	inst := strings.TrimPrefix(e.Key(), consumer.KeyPrefixMember)
	at := time.Now()
	if stored && e.Created().Before(at) {
		at = e.Created()
	}
	ms.mu.Lock()
	_, was := ms.seen[inst]
	if e.Operation() == jetstream.KeyValuePut {
		ms.seen[inst] = at
	} else {
		delete(ms.seen, inst)
	}
	_, is := ms.seen[inst]
	ms.mu.Unlock()
	if was != is {
		ms.signal()
	}
}

func (ms *members) signal() {
	select {
	case ms.changed <- struct{}{}:
	default:
	}
}

// alive returns the replicas alive now, this one always among them, sorted.
func (ms *members) alive() []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := []string{ms.self}
	for inst, at := range ms.seen {
		if inst != ms.self && time.Since(at) < aliveFor {
			out = append(out, inst)
		}
	}
	slices.Sort(out)
	return out
}

// assign returns the replica that runs each merchant, among members (not empty).
func assign(merchants, members []string) map[string]string {
	limit := (len(merchants) + len(members) - 1) / max(len(members), 1)
	load := map[string]int{}
	out := map[string]string{}
	for _, m := range slices.Sorted(slices.Values(merchants)) {
		ranked := slices.Clone(members)
		slices.SortFunc(ranked, func(a, b string) int { return cmp.Compare(score(m, b), score(m, a)) })
		for _, r := range ranked {
			if load[r] < limit {
				out[m], load[r] = r, load[r]+1
				break
			}
		}
	}
	return out
}

// score is the rendezvous hash of a merchant and a replica.
func score(merchant, replica string) uint64 {
	sum := sha256.Sum256([]byte(merchant + "\x00" + replica))
	return binary.BigEndian.Uint64(sum[:8])
}
