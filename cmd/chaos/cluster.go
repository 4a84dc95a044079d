package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/proc"
)

const sandboxToken = "sandbox-token"

// cluster is the system under test: one nats-server, one sandbox, the worker replicas.
type cluster struct {
	cfg                 config
	dir                 string
	natsBin, workerBin  string
	natsPort            int
	natsURL, sandboxURL string
	progress            func(format string, args ...any)
	mu                  sync.Mutex
	nats, sandbox       *proc.Proc
	workers             []*worker // the live incarnation of each replica
	retired             []*worker // killed or stopped incarnations, with their last scrape
	incarnations        int
	kills, natsRestarts int
	natsDown            time.Duration
	faults              map[frontpay.Operation]sandbox.Fault
	extraEnv            []string // added to the workers' environment, overriding
	merchants           []string // the merchants scenario's ids; nil in the engine scenario
	merchantsFile       string   // FRONTPAY_MERCHANTS_FILE of the merchants scenario
	stopScrape          chan struct{}
	scrapeDone          chan struct{}
}

func (c *cluster) startNATS() error {
	p, err := proc.StartNATS(context.Background(), c.natsBin, filepath.Join(c.dir, "jetstream"), c.natsPort,
		filepath.Join(c.dir, "nats-server.log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nats = p
	c.mu.Unlock()
	return nil
}

func (c *cluster) startSandbox() error {
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c.sandboxURL = "http://" + addr
	env := proc.Env("FRONTPAY_LOG_FORMAT=json", "FRONTPAY_LOG_LEVEL="+c.cfg.LogLevel)
	args := []string{"sandbox", "--addr", addr, "--token", sandboxToken, "--rate=-1", "--seed", strconv.FormatInt(c.cfg.Seed, 10)}
	if c.merchants != nil {
		// A token a merchant, each an account with its own rate limit.
		args = []string{"sandbox", "--addr", addr, "--rate", strconv.Itoa(c.cfg.MerchantRate), "--seed", strconv.FormatInt(c.cfg.Seed, 10)}
		for _, m := range c.merchants {
			args = append(args, "--token", merchantToken(m))
		}
	}
	p, err := proc.Start("sandbox", filepath.Join(c.dir, "sandbox.log"), c.workerBin, args, env)
	if err != nil {
		return err
	}
	c.sandbox = p
	if err := proc.WaitFor(context.Background(), 30*time.Second, "the sandbox", func() bool {
		resp, err := http.Get(c.sandboxURL + "/sandbox/ledger")
		if err != nil {
			return p.Exited()
		}
		resp.Body.Close()
		return true
	}); err != nil {
		return err
	}
	// The workload's own reads go with a second token of each merchant's account, without a
	// limit, so that they neither spend nor show in the worker's budget.
	for _, m := range c.merchants {
		if err := c.control(http.MethodPost, "/sandbox/tokens", "", map[string]string{"token": readerToken(m), "rotates": merchantToken(m)}); err != nil {
			return err
		}
		if err := c.control(http.MethodPut, "/sandbox/ratelimit", readerToken(m), map[string]int{"perMinute": -1}); err != nil {
			return err
		}
	}
	return nil
}

// control sends a test control request to the sandbox, for one token's account when token is
// set; it expects 204.
func (c *cluster) control(method, path, token string, body any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.sandboxURL+path, bytes.NewReader(b))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("sandbox %s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// workerEnv is the worker's configuration: short waits so that crashes are recovered in seconds.
func (c *cluster) workerEnv(replica int) []string {
	return append(proc.Env(
		"NATS_URL="+c.natsURL,
		"FRONTPAY_API_URL="+c.sandboxURL,
		"FRONTPAY_API_TOKEN="+sandboxToken,
		"FRONTPAY_HTTP_ADDR=127.0.0.1:0",
		"FRONTPAY_ACK_WAIT=2s", "FRONTPAY_PIN_TTL=3s",
		"FRONTPAY_LEASE_MARGIN=500ms",
		"FRONTPAY_API_TIMEOUT=3s",
		"FRONTPAY_RETRY_INITIAL=50ms",
		"FRONTPAY_RETRY_MAX=1s",
		"FRONTPAY_MAX_ATTEMPTS=8",
		"FRONTPAY_HISTORY_POLL=0",
		"FRONTPAY_API_RATE=0",
		"FRONTPAY_DRAIN_TIMEOUT=5s",
		"FRONTPAY_LOG_FORMAT=json",
		"FRONTPAY_LOG_LEVEL="+c.cfg.LogLevel,
		"FRONTPAY_WORKER_NAME=chaos-replica-"+strconv.Itoa(replica),
	), append(c.merchantsEnv(), c.extraEnv...)...)
}

// merchantsEnv is what the merchants scenario adds to the workers' environment.
func (c *cluster) merchantsEnv() []string {
	if c.merchants == nil {
		return nil
	}
	return []string{"FRONTPAY_SUBJECT_PREFIX=" + merchantsPrefix, "FRONTPAY_MERCHANTS_FILE=" + c.merchantsFile}
}

// pinTTL is the workers' FRONTPAY_PIN_TTL.
func (c *cluster) pinTTL() time.Duration {
	ttl := consumer.DefaultPinnedTTL
	for _, kv := range c.workerEnv(0) {
		if v, ok := strings.CutPrefix(kv, "FRONTPAY_PIN_TTL="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				ttl = d
			}
		}
	}
	return ttl
}

// startWorker starts a new incarnation of replica and waits until it is ready.
func (c *cluster) startWorker(replica int) (*worker, error) {
	c.mu.Lock()
	c.incarnations++
	n := c.incarnations
	c.mu.Unlock()
	logPath := filepath.Join(c.dir, fmt.Sprintf("worker-r%d-%02d.log", replica, n))
	p, err := proc.Start(fmt.Sprintf("worker r%d #%d", replica, n), logPath, c.workerBin, []string{"run"}, c.workerEnv(replica))
	if err != nil {
		return nil, err
	}
	w := &worker{replica: replica, incarnation: n, proc: p}
	c.mu.Lock()
	for len(c.workers) <= replica {
		c.workers = append(c.workers, nil)
	}
	c.workers[replica] = w
	c.mu.Unlock()
	err = proc.WaitFor(context.Background(), 90*time.Second, "worker "+p.Name+" to be ready", func() bool {
		if p.Exited() {
			return true
		}
		addr := readyAddr(logPath)
		w.mu.Lock()
		w.http = addr
		w.mu.Unlock()
		return addr != ""
	})
	if err == nil && p.Exited() {
		err = fmt.Errorf("worker %s exited at start: %v (log %s)", p.Name, p.Err(), logPath)
	}
	return w, err
}

// scrapeLoop scrapes every live worker each second, so that a killed one's figures are known
// up to its last second.
func (c *cluster) scrapeLoop() {
	c.stopScrape, c.scrapeDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.scrapeDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-c.stopScrape:
				return
			case <-t.C:
			}
			for _, w := range c.live() {
				w.scrape()
			}
		}
	}()
}

// live returns the live incarnation of each replica that has one, in replica order.
func (c *cluster) live() []*worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*worker
	for _, w := range c.workers {
		if w != nil {
			out = append(out, w)
		}
	}
	return out
}

// kill SIGKILLs the live incarnation of replica (after a last scrape) and starts another.
func (c *cluster) kill(replica int) error {
	c.killOnly(replica)
	nw, err := c.startWorker(replica)
	if err == nil {
		c.progress("replica %d restarted (pid %d)", replica, nw.proc.Pid())
	}
	return err
}

// killOnly SIGKILLs the live incarnation of replica after a last scrape, and returns the time
// of the signal; the replica has no live incarnation then.
func (c *cluster) killOnly(replica int) time.Time {
	c.mu.Lock()
	w := c.workers[replica]
	c.mu.Unlock()
	w.scrape()
	at := time.Now()
	w.proc.Stop(syscall.SIGKILL, 5*time.Second)
	c.mu.Lock()
	c.kills++
	c.retired = append(c.retired, w)
	c.workers[replica] = nil
	c.mu.Unlock()
	c.progress("killed replica %d (pid %d, %s) with SIGKILL", replica, w.proc.Pid(), filepath.Base(w.proc.Log))
	return at
}

// replicaOf finds the replica of the worker process pid, and whether it lives; -1 for none.
func (c *cluster) replicaOf(pid int) (replica int, live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		if w != nil && w.proc.Pid() == pid {
			return w.replica, true
		}
	}
	for _, w := range c.retired {
		if w.proc.Pid() == pid {
			return w.replica, false
		}
	}
	return -1, false
}

// restartNATS stops the server with sig, leaves it down for down, and starts it again on the
// same port and store.
func (c *cluster) restartNATS(sig syscall.Signal, down time.Duration) error {
	c.mu.Lock()
	p := c.nats
	c.mu.Unlock()
	start := time.Now()
	p.Stop(sig, 15*time.Second)
	time.Sleep(down)
	if err := c.startNATS(); err != nil {
		return err
	}
	c.mu.Lock()
	c.natsRestarts++
	c.natsDown += time.Since(start)
	c.mu.Unlock()
	c.progress("nats-server restarted (%s), down %s", sig, time.Since(start).Round(time.Millisecond))
	return nil
}

// stopWorkers stops every live worker with SIGTERM (a drain), after a last scrape.
func (c *cluster) stopWorkers() {
	if c.stopScrape != nil {
		close(c.stopScrape)
		<-c.scrapeDone
		c.stopScrape = nil
	}
	c.mu.Lock()
	ws := c.workers
	c.workers = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		if w == nil {
			continue
		}
		w.scrape()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.proc.Stop(syscall.SIGTERM, 15*time.Second)
		}()
		c.mu.Lock()
		c.retired = append(c.retired, w)
		c.mu.Unlock()
	}
	wg.Wait()
}

// close kills whatever still runs.
func (c *cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		if w != nil {
			w.proc.Stop(syscall.SIGKILL, 5*time.Second)
		}
	}
	for _, p := range []*proc.Proc{c.sandbox, c.nats} {
		if p != nil {
			p.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
}

// setFault sets the sandbox's fault of op over its HTTP control.
func (c *cluster) setFault(op frontpay.Operation, f sandbox.Fault) error {
	// Durations go as nanoseconds, which the control reads too.
	if err := c.control(http.MethodPut, "/sandbox/faults/"+string(op), "", f); err != nil {
		return fmt.Errorf("set fault of %s: %w", op, err)
	}
	if c.faults == nil {
		c.faults = map[frontpay.Operation]sandbox.Fault{}
	}
	c.faults[op] = f
	return nil
}

// pay is the customer paying a reservation at checkout.
func (c *cluster) pay(uuid string) error {
	resp, err := http.Post(c.sandboxURL+"/sandbox/reservations/"+uuid+"/pay", "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pay %s: %s %s", uuid, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// traffic reads what the sandbox counted of each token's requests.
func (c *cluster) traffic() ([]sandbox.Traffic, error) {
	resp, err := http.Get(c.sandboxURL + "/sandbox/traffic")
	if err != nil {
		return nil, fmt.Errorf("read the traffic: %w", err)
	}
	defer resp.Body.Close()
	var t []sandbox.Traffic
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return nil, fmt.Errorf("decode the traffic: %w", err)
	}
	return t, nil
}

// ledger reads the sandbox's effects.
func (c *cluster) ledger() ([]sandbox.Effect, []byte, error) {
	resp, err := http.Get(c.sandboxURL + "/sandbox/ledger")
	if err != nil {
		return nil, nil, fmt.Errorf("read the ledger: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read the ledger: %w", err)
	}
	var effects []sandbox.Effect
	if err := json.Unmarshal(raw, &effects); err != nil {
		return nil, nil, fmt.Errorf("decode the ledger: %w", err)
	}
	return effects, raw, nil
}
