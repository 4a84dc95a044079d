package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// procWorld is a scenario's world of processes: nats-server and frontpay-worker built from this
// module into a temporary directory, a nats-server process with a file store there, the worker's
// topology, and the sandbox over loopback HTTP behind a recorder.
type procWorld struct {
	dir       string
	url       string // the nats-server's
	workerBin string
	ns        *exec.Cmd
	nc        *nats.Conn
	js        jetstream.JetStream
	topo      consumer.Topology
	rec       *recorder
	sb        *sandbox.Sandbox
	srv       *httptest.Server
	api       *frontpay.Client // the benchmark's, for setup
}

// newProcWorld builds the binaries and starts nats-server and the sandbox; close it with close.
func newProcWorld(ctx context.Context, name string, seed int64) (_ *procWorld, err error) {
	p := &procWorld{topo: consumer.Topology{}, rec: newRecorder()}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "frontpay-bench-"+name+"-"); err != nil {
		return nil, err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	natsBin := filepath.Join(p.dir, "nats-server")
	p.workerBin = filepath.Join(p.dir, "frontpay-worker")
	t := time.Now()
	for _, b := range [][2]string{{natsBin, "github.com/nats-io/nats-server/v2"}, {p.workerBin, "./cmd/frontpay-worker"}} {
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	log.Printf("%s: built nats-server and frontpay-worker in %s", name, time.Since(t).Round(time.Millisecond))

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.url = "nats://127.0.0.1:" + strconv.Itoa(port)
	p.ns = exec.Command(natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(p.dir, "store"))
	nsLog, err := os.Create(filepath.Join(p.dir, "nats-server.log"))
	if err != nil {
		return nil, err
	}
	defer nsLog.Close()
	p.ns.Stdout, p.ns.Stderr = nsLog, nsLog
	if err := p.ns.Start(); err != nil {
		return nil, err
	}
	if p.nc, err = nats.Connect(p.url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Name("frontpay-bench")); err != nil {
		return nil, err
	}
	if err := waitConnected(ctx, p.nc, 30*time.Second); err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	if p.js, err = jetstream.New(p.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return nil, err
	}
	if _, err := p.topo.Ensure(ctx, p.js); err != nil {
		return nil, err
	}
	p.sb = sandbox.New(sandbox.Options{Token: token, RateLimit: -1, Seed: seed})
	p.srv = httptest.NewServer(p.rec.wrap(p.sb))
	p.api, err = frontpay.New(p.srv.URL, token, frontpay.WithTimeout(30*time.Second))
	return p, err
}

func (p *procWorld) close() {
	if p.srv != nil {
		p.srv.Close()
	}
	if p.sb != nil {
		p.sb.Close()
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.ns != nil {
		stopProcess(p.ns, 10*time.Second)
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// workerProcess is a `frontpay-worker run` process of a procWorld.
type workerProcess struct {
	cmd    *exec.Cmd
	log    string // its log file
	exited chan struct{}
}

// startWorker starts `frontpay-worker run` against the world, with production's defaults but
// for env; its log goes to a file of its own.
func (p *procWorld) startWorker(name string, env ...string) (*workerProcess, error) {
	wp := &workerProcess{log: filepath.Join(p.dir, name+".log"), exited: make(chan struct{})}
	f, err := os.Create(wp.log)
	if err != nil {
		return nil, err
	}
	wp.cmd = exec.Command(p.workerBin, "run")
	wp.cmd.Env = append(append(cleanEnv(), "NATS_URL="+p.url, "FRONTPAY_API_URL="+p.srv.URL, "FRONTPAY_API_TOKEN="+token,
		"FRONTPAY_API_RATE=0", "FRONTPAY_HTTP_ADDR=127.0.0.1:0", "FRONTPAY_HISTORY_POLL=0", "FRONTPAY_WORKER_NAME="+name), env...)
	wp.cmd.Stdout, wp.cmd.Stderr = f, f
	if err := wp.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { _ = wp.cmd.Wait(); f.Close(); close(wp.exited) }()
	return wp, nil
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (wp *workerProcess) stop(grace time.Duration) {
	select {
	case <-wp.exited:
		return
	default:
	}
	_ = wp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-wp.exited:
	case <-time.After(grace):
		_ = wp.cmd.Process.Kill()
		<-wp.exited
	}
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
	wp, err := p.startWorker("worker")
	if err != nil {
		return nil, err
	}
	defer wp.stop(30 * time.Second) // on an early return: the worker must not outlive the benchmark
	log.Printf("memory: worker pid %d started on a backlog of %d; up to %s", wp.cmd.Process.Pid, cfg.memoryN, cfg.memoryDuration)
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
		case <-wp.exited:
			return nil, fmt.Errorf("the worker exited early (%v); its log:\n%s", wp.cmd.ProcessState, tail(wp.log, 20))
		case <-tick.C:
		}
		if h, r, err := procMemory(wp.cmd.Process.Pid); err == nil {
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
	if h, r, err := procMemory(wp.cmd.Process.Pid); err == nil {
		hwm, rss = max(hwm, h), r
	} else if hwm == 0 {
		return nil, fmt.Errorf("read /proc/%d/status: %w", wp.cmd.Process.Pid, err)
	}
	wp.stop(30 * time.Second)
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

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the benchmark inside the module (go run ./cmd/bench)")
	}
	return filepath.Dir(mod), nil
}

// goTool is the go command: the one on PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// freePort returns a loopback TCP port free at the moment.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitConnected waits until nc is connected.
func waitConnected(ctx context.Context, nc *nats.Conn, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not reachable within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// stopProcess stops a process this program started and nothing else waits for: SIGTERM, then
// SIGKILL after grace.
func stopProcess(cmd *exec.Cmd, grace time.Duration) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// cleanEnv is this process's environment without NATS_* and FRONTPAY_* variables, so that only
// the settings the benchmark gives reach the worker.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NATS_") || strings.HasPrefix(kv, "FRONTPAY_") {
			continue
		}
		out = append(out, kv)
	}
	return out
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
