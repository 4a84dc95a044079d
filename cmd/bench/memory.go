package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/proc"
)

// newProcWorld starts a world of processes: nats-server and frontpay-worker built from this
// module into its directory, a nats-server process with its file store there, and the sandbox;
// close it with close.
func newProcWorld(ctx context.Context, name string, seed int64) (_ *world, err error) {
	w := &world{rec: newRecorder()}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.dir, err = os.MkdirTemp("", "frontpay-bench-"+name+"-"); err != nil {
		return nil, err
	}
	t := time.Now()
	natsBin, workerBin, err := proc.Build(ctx, w.dir)
	if err != nil {
		return nil, err
	}
	w.workerBin = workerBin
	log.Printf("%s: built nats-server and frontpay-worker in %s", name, time.Since(t).Round(time.Millisecond))
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	w.url = "nats://127.0.0.1:" + strconv.Itoa(port)
	if w.natsProc, err = proc.StartNATS(ctx, natsBin, filepath.Join(w.dir, "store"), port, filepath.Join(w.dir, "nats-server.log")); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(w.url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Name("frontpay-bench"))
	if err != nil {
		return nil, err
	}
	if err := w.open(nc, sandbox.Options{RateLimit: -1, Seed: seed}); err != nil {
		return nil, err
	}
	_, err = w.topo.Ensure(ctx, w.js)
	return w, err
}

// startProcess starts `frontpay-worker run` against a world of newProcWorld, with production's
// defaults but for env; its log goes to a file of its own. Stop it with Stop.
func (w *world) startProcess(name string, env ...string) (*proc.Proc, error) {
	return proc.Start(name, filepath.Join(w.dir, name+".log"), w.workerBin, []string{"run"},
		proc.Env(append([]string{"NATS_URL=" + w.url, "FRONTPAY_API_URL=" + w.sb.URL, "FRONTPAY_API_TOKEN=" + token,
			"FRONTPAY_API_RATE=0", "FRONTPAY_HTTP_ADDR=127.0.0.1:0", "FRONTPAY_HISTORY_POLL=0", "FRONTPAY_WORKER_NAME=" + name}, env...)...))
}

// memory measures the peak resident memory of a worker process working on a backlog: an external
// nats-server, cfg.memoryN details commands waiting, then `frontpay-worker run` against the
// sandbox (zero latency, no limit) for cfg.memoryDuration or until the backlog is answered.
func memory(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "memory"
	p, err := newProcWorld(ctx, sc, 4)
	if err != nil {
		return nil, err
	}
	defer p.close()
	t := time.Now()
	res, err := setupReservations(ctx, p.api, p.sb, cfg.memoryN, false)
	if err != nil {
		return nil, err
	}
	cmds, err := detailsCommands(res, detailsSubject)
	if err != nil {
		return nil, err
	}
	if err := publishAll(ctx, p.js, cmds, make([]int64, len(cmds))); err != nil {
		return nil, err
	}
	log.Printf("memory: %d reservations set up and their details commands published in %s", cfg.memoryN, time.Since(t).Round(time.Millisecond))
	p.rec.reset() // the setup's requests are not the worker's
	results, err := p.js.Stream(ctx, p.topo.ResultStream())
	if err != nil {
		return nil, err
	}

	started := time.Now()
	wp, err := p.startProcess("worker")
	if err != nil {
		return nil, err
	}
	defer wp.Stop(syscall.SIGTERM, 30*time.Second) // on an early return: the worker must not outlive the benchmark
	log.Printf("memory: worker pid %d started on a backlog of %d; up to %s", wp.Pid(), cfg.memoryN, cfg.memoryDuration)
	var hwm, rss int64
	var answered uint64
	var finished time.Duration
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wp.Done():
			return nil, fmt.Errorf("the worker exited early (%v); its log:\n%s", wp.Err(), tail(wp.Log, 20))
		case <-tick.C:
		}
		if h, r, err := procMemory(wp.Pid()); err == nil {
			hwm, rss = max(hwm, h), r
		}
		if info, err := results.Info(ctx); err == nil {
			answered = info.State.Msgs
		}
		switch {
		case answered >= uint64(cfg.memoryN):
			finished = time.Since(started)
			break loop
		case time.Since(started) >= cfg.memoryDuration:
			break loop
		}
	}
	if h, r, err := procMemory(wp.Pid()); err == nil {
		hwm, rss = max(hwm, h), r
	} else if hwm == 0 {
		return nil, fmt.Errorf("read /proc/%d/status: %w", wp.Pid(), err)
	}
	wp.Stop(syscall.SIGTERM, 30*time.Second)
	_, statuses := p.rec.counts()
	mib := float64(hwm) / 1024 // VmHWM is in kB
	rows := []Row{
		below(sc, "worker peak RSS (VmHWM)", mib, "MiB", fmt.Sprintf("%.1f MiB", mib), 100, "< 100 MiB"),
		info(sc, "worker RSS at the end (VmRSS)", float64(rss)/1024, "MiB", fmt.Sprintf("%.1f MiB", float64(rss)/1024)),
		info(sc, "commands answered", float64(answered), "commands", fmt.Sprintf("%d of %d", answered, cfg.memoryN)),
	}
	if finished > 0 {
		rows[2].Note = fmt.Sprintf("all answered %s after the worker started; ", finished.Round(100*time.Millisecond))
	} else {
		rows[2].Note = fmt.Sprintf("stopped %s after the worker started; ", cfg.memoryDuration)
	}
	rows[2].Note += "API answers " + statusText(statuses)
	log.Printf("memory: VmHWM %.1f MiB, %d of %d answered", mib, answered, cfg.memoryN)
	return rows, nil
}

// procMemory reads VmHWM and VmRSS (kB) of a process.
func procMemory(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	hwm, rss = statusField(b, "VmHWM"), statusField(b, "VmRSS")
	if hwm == 0 {
		return 0, 0, errors.New("no VmHWM")
	}
	return hwm, rss, nil
}

// statusField reads a "Name:   123 kB" line of /proc/<pid>/status; 0 when absent.
func statusField(status []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
