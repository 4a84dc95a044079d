package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nordpay/frontpay-worker/consumer"
)

// failover measures how long commands wait when their owner dies: two worker processes (an owner
// and a standby, production's settings) on a nats-server process, details commands published
// every 20ms, the owner SIGKILLed: the time from the kill to the standby's first result.
func failover(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "failover"
	p, err := newProcWorld(ctx, sc, 6)
	if err != nil {
		return nil, err
	}
	defer p.close()
	res, err := setupReservations(ctx, p.api, p.sb, 2000, false)
	if err != nil {
		return nil, err
	}
	cmds, err := detailsCommands(res, detailsSubject)
	if err != nil {
		return nil, err
	}

	// Results by the worker that published them (its FRONTPAY_WORKER_NAME is their source).
	var mu sync.Mutex
	first := map[string]time.Time{}
	answered := map[string]bool{}
	results := make(chan struct{}, 1)
	sub, err := p.nc.Subscribe("*.*.succeeded", func(m *nats.Msg) {
		var ev struct {
			Source      string `json:"source"`
			CausationID string `json:"causationid"`
		}
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		if _, ok := first[ev.Source]; !ok {
			first[ev.Source] = time.Now()
		}
		answered[ev.CausationID] = true
		mu.Unlock()
		select {
		case results <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// seen returns when source published its first result, and how many commands are answered.
	seen := func(source string) (time.Time, int) {
		mu.Lock()
		defer mu.Unlock()
		return first[source], len(answered)
	}

	owner, err := p.startProcess("owner")
	if err != nil {
		return nil, err
	}
	defer owner.Stop(syscall.SIGTERM, 10*time.Second)
	// The publisher: one command every 20ms, from now on.
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	published := make(chan int, 1)
	go func() {
		n := 0
		defer func() { published <- n }()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ; n < len(cmds); n++ {
			select {
			case <-pubCtx.Done():
				return
			case <-tick.C:
			}
			m := nats.NewMsg(cmds[n].Subject)
			m.Data = cmds[n].Raw
			if err := p.nc.PublishMsg(m); err != nil {
				return
			}
		}
	}()
	wait := func(what string, cond func() bool) error {
		deadline := time.After(2 * time.Minute)
		for !cond() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline:
				return fmt.Errorf("%s: not within 2m", what)
			case <-results:
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil
	}
	if err := wait("the owner's first results", func() bool { _, n := seen("owner"); return n >= 20 }); err != nil {
		return nil, err
	}
	standby, err := p.startProcess("standby")
	if err != nil {
		return nil, err
	}
	defer standby.Stop(syscall.SIGTERM, 10*time.Second)
	// The standby is up once its pull waits beside the owner's.
	cons, err := p.js.Consumer(ctx, p.topo.CommandStream(), consumer.ConsumerName)
	if err != nil {
		return nil, err
	}
	if err := wait("the standby's pull", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting >= 2
	}); err != nil {
		return nil, err
	}
	killed := time.Now()
	owner.Stop(syscall.SIGKILL, 10*time.Second)
	log.Printf("failover: owner SIGKILLed")
	if err := wait("the standby's first result", func() bool { t, _ := seen("standby"); return !t.IsZero() }); err != nil {
		return nil, err
	}
	taken, _ := seen("standby")
	took := taken.Sub(killed)
	stopPub()
	n := <-published
	if err := wait("a result for every command published", func() bool { _, got := seen("standby"); return got >= n }); err != nil {
		return nil, err
	}
	log.Printf("failover: the standby's first result %s after the kill; %d commands published, all answered", took.Round(time.Millisecond), n)
	limit := consumer.DefaultPinnedTTL + 2*time.Second
	rows := []Row{
		below(sc, "owner SIGKILLed → the standby's first result", took.Seconds(), "s",
			fmt.Sprintf("%.2f s", took.Seconds()), limit.Seconds()+0.0001, fmt.Sprintf("≤ PinnedTTL + 2 s (%s)", limit)),
		info(sc, "commands answered", float64(n), "commands", fmt.Sprintf("%d of %d published", n, n)),
	}
	rows[0].Note = fmt.Sprintf("FRONTPAY_PIN_TTL %s (the default); a details command every 20ms", consumer.DefaultPinnedTTL)
	return rows, nil
}
