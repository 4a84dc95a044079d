// Package proc runs the worker as operators run it, as processes, for the programs that measure
// or break it (cmd/bench's memory and failover scenarios, cmd/chaos): nats-server and
// frontpay-worker built from this module, free ports, child processes whose output goes to log
// files and that are stopped with a signal and a grace period, and a wait with a deadline.
//
// The tests have internal/testworld instead, and run the test binary as the worker.
package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Build compiles nats-server and frontpay-worker into dir, from the module of the working
// directory, with the go command on PATH. One go build makes both, so that it loads the packages
// once and links the two binaries side by side.
func Build(ctx context.Context, dir string) (natsBin, workerBin string, err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", "", err
	}
	// With -o ending in a separator, go build writes each main package into that directory under
	// its default name: the last element of its import path, less a major version suffix (/v2).
	const natsPkg, workerPkg = "github.com/nats-io/nats-server/v2", "./cmd/frontpay-worker"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), natsPkg, workerPkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build %s %s: %w\n%s", natsPkg, workerPkg, err, out)
	}
	natsBin, workerBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "frontpay-worker")
	for _, bin := range []string{natsBin, workerBin} {
		if _, err := os.Stat(bin); err != nil {
			return "", "", fmt.Errorf("go build: %w", err)
		}
	}
	return natsBin, workerBin, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the frontpay-worker tree")
	}
	return filepath.Dir(gomod), nil
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Env is this process's environment without any FRONTPAY_ or NATS_ variable, then extra: so
// that only the settings given reach a child.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRONTPAY_") && !strings.HasPrefix(kv, "NATS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Proc is a child process, its standard output and error appended to a log file. On Linux the
// kernel kills it when this program dies, so that an interrupted run leaves nothing behind.
type Proc struct {
	Name string
	Log  string // the log file

	cmd  *exec.Cmd
	done chan struct{}
	err  error // what Wait returned, once done is closed
}

// Start starts bin with args and env (the whole environment: see Env), its output appended to
// logPath.
func Start(name, logPath, bin string, args, env []string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what waiting for the process returned (nil for exit code 0), once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends sig and waits up to grace for the process to exit, then kills it.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StartNATS starts nats-server bin with JetStream, its store in storeDir, on 127.0.0.1:port, its
// log appended to logPath, and waits until its JetStream answers (30s at most).
func StartNATS(ctx context.Context, bin, storeDir string, port int, logPath string) (*Proc, error) {
	p, err := Start("nats-server", logPath, bin,
		[]string{"-js", "-sd", storeDir, "-p", strconv.Itoa(port), "-a", "127.0.0.1"}, Env())
	if err != nil {
		return nil, err
	}
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	err = WaitFor(ctx, 30*time.Second, "nats-server", func() bool { return p.Exited() || jetStreamAnswers(url) })
	if err == nil && p.Exited() {
		err = fmt.Errorf("nats-server exited at start: %v (log %s)", p.Err(), logPath)
	}
	if err != nil {
		p.Stop(os.Kill, 0)
		return nil, err
	}
	return p, nil
}

// jetStreamAnswers reports whether the server at url takes a connection and its JetStream
// answers, within a second each.
func jetStreamAnswers(url string) bool {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// WaitFor polls cond every 50ms until it holds, ctx ends or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
