package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// asChild makes the test binary a child process of the tests: it prints what it was given and
// waits for SIGTERM, on which it exits with code 3; SIGHUP it ignores.
const asChild = "PROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(asChild) == "1" {
		signal.Ignore(syscall.SIGHUP)
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		fmt.Printf("child FRONTPAY_TEST=%q NATS_URL=%q\n", os.Getenv("FRONTPAY_TEST"), os.Getenv("NATS_URL"))
		<-term
		os.Exit(3)
	}
	testworld.Main(m)
}

// startChild starts the test binary as a child, with FRONTPAY_TEST and NATS_URL of the test's
// own environment that Env must drop.
func startChild(t *testing.T) *Proc {
	t.Helper()
	t.Setenv("FRONTPAY_TEST", "the parent's")
	t.Setenv("NATS_URL", "nats://the-parent:4222")
	p, err := Start("child", filepath.Join(t.TempDir(), "child.log"), os.Args[0], nil, Env(asChild+"=1", "FRONTPAY_TEST=given"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, testworld.Patience) })
	testworld.WaitFor(t, func() bool {
		b, _ := os.ReadFile(p.Log)
		return strings.Contains(string(b), "child ")
	}, "the child's output in its log")
	return p
}

// TestStartStop: the child gets only the variables given of FRONTPAY_ and NATS_, its output goes
// to its log, and Stop's signal ends it.
func TestStartStop(t *testing.T) {
	p := startChild(t)
	if b, _ := os.ReadFile(p.Log); !strings.Contains(string(b), `child FRONTPAY_TEST="given" NATS_URL=""`) {
		t.Errorf("the child's log: %q", b)
	}
	if p.Exited() {
		t.Fatalf("the child exited: %v", p.Err())
	}
	p.Stop(syscall.SIGTERM, testworld.Patience)
	var exit *exec.ExitError
	if !p.Exited() || !errors.As(p.Err(), &exit) || exit.ExitCode() != 3 {
		t.Errorf("after SIGTERM: exited %t, %v; want exit code 3", p.Exited(), p.Err())
	}
}

// TestStopKillsAfterGrace: a child that ignores the signal is killed once the grace is over.
func TestStopKillsAfterGrace(t *testing.T) {
	p := startChild(t)
	p.Stop(syscall.SIGHUP, 200*time.Millisecond)
	if !p.Exited() || !strings.Contains(fmt.Sprint(p.Err()), "killed") {
		t.Errorf("after SIGHUP and the grace: exited %t, %v; want killed", p.Exited(), p.Err())
	}
}

// TestBuildAndStartNATS builds the binaries from this module and starts nats-server on a free
// port: its JetStream answers once StartNATS returns.
func TestBuildAndStartNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and frontpay-worker")
	}
	dir := t.TempDir()
	natsBin, workerBin, err := Build(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(workerBin); err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartNATS(t.Context(), natsBin, filepath.Join(dir, "store"), port, filepath.Join(dir, "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(syscall.SIGTERM, testworld.Patience)
	if !jetStreamAnswers(fmt.Sprintf("nats://127.0.0.1:%d", port)) {
		t.Error("JetStream does not answer")
	}
}
