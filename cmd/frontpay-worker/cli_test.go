package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/spf13/cobra"
)

// cliRun runs a command line in this process as main does, with in as standard input, and
// returns what it printed and its exit code.
func cliRun(t *testing.T, set settings, in string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRoot(set)
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(in))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code = execute(t.Context(), root, args)
	return out.String(), errOut.String(), code
}

// cliProcess runs a command line as a process of its own (the test binary as the real main), with
// env added to the test's environment less the worker's variables, and returns its output and
// exit code.
func cliProcess(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRONTPAY_") && !strings.HasPrefix(kv, "NATS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, asWorker+"=1"), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// commandPaths lists every command of the tree, as its arguments.
func commandPaths(c *cobra.Command) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		out = append(out, []string{sub.Name()})
		for _, p := range commandPaths(sub) {
			out = append(out, append([]string{sub.Name()}, p...))
		}
	}
	return out
}

// TestHelpEverywhere: -h, --help and help <command> print the help and exit 0 for every command,
// and start nothing.
func TestHelpEverywhere(t *testing.T) {
	t.Setenv("FRONTPAY_API_TOKEN", "")
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // nothing listens there: a command that ran would fail
	paths := append([][]string{nil, {"help"}}, commandPaths(newRoot(settings{}))...)
	if len(paths) < 11 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, path := range paths {
		for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
			out, errOut, code := cliRun(t, settings{}, "", args...)
			if code != exitOK || !strings.Contains(out, "Usage:") || errOut != "" {
				t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
			}
		}
	}
	out, _, _ := cliRun(t, settings{}, "", "publish", "--help")
	for _, flag := range []string{"--key", "--correlation", "--source", "--wait"} {
		if !strings.Contains(out, flag) {
			t.Errorf("publish --help lacks %s:\n%s", flag, out)
		}
	}
	out, _, _ = cliRun(t, settings{}, "", "forget", "--help")
	for _, flag := range []string{"--reservation", "--order", "--key", "--dry-run", "--yes"} {
		if !strings.Contains(out, flag) {
			t.Errorf("forget --help lacks %s:\n%s", flag, out)
		}
	}
	out, _, _ = cliRun(t, settings{}, "", "replay", "--help")
	for _, flag := range []string{"--limit", "--yes", "--dry-run", "--reason", "--operation", "--since", "--until", "--key", "--event-id"} {
		if !strings.Contains(out, flag) {
			t.Errorf("replay --help lacks %s:\n%s", flag, out)
		}
	}
}

// TestHelpWithoutToken runs `frontpay-worker --help` as a process with no configuration at all:
// it prints the help and exits 0, where it used to demand a token (or, with one, start a worker).
func TestHelpWithoutToken(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"run", "--help"}, {"help"}} {
		out, code := cliProcess(t, []string{"FRONTPAY_DATA_DIR=" + t.TempDir()}, args...)
		if code != exitOK || !strings.Contains(out, "Usage:") || strings.Contains(out, "FRONTPAY_API_TOKEN: required") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}

// TestUsageErrors: unknown commands, flags and arguments, and bad values, exit 2 with a message
// and a pointer to the help.
func TestUsageErrors(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"repaly"}, "did you mean replay?"},
		{[]string{"run", "now"}, `run takes no arguments, got "now"`},
		{[]string{"-x"}, "unknown shorthand flag: 'x'"},
		{[]string{"lag", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"lag", "extra"}, "lag takes no arguments"},
		{[]string{"lag", "--max-age", "soon"}, `invalid argument "soon"`},
		{[]string{"publish", "reservation.details"}, "publish takes an operation and a file"},
		{[]string{"publish", "reservation.details", "a.json", "b.json"}, "got 3 argument(s)"},
		{[]string{"publish", "reservation.details", filepath.Join(t.TempDir(), "missing.json")}, "read payload"},
		{[]string{"replay", "--limit", "-1", "--dry-run"}, "--limit: must be 0"},
		{[]string{"replay", "--since", "yesterday", "--dry-run"}, "--since"},
		{[]string{"replay", "--reason", "bad_luck", "--dry-run"}, `unknown reason "bad_luck"`},
		{[]string{"replay", "--operation", "reservation.teleport", "--dry-run"}, "unknown operation"},
		{[]string{"forget", "--dry-run"}, "forget needs what to forget"},
		{[]string{"forget", "--reservation", "RES/1", "--dry-run"}, "--reservation: "},
		{[]string{"forget", "--order", "", "--dry-run"}, "--order: "},
		{[]string{"forget", "--reservation", "RES1"}, "--yes"},
		{[]string{"completion"}, "completion takes one shell"},
		{[]string{"completion", "tcsh"}, `invalid argument "tcsh"`},
		{[]string{"help", "bogus"}, `no command "bogus"`},
		{[]string{"version", "--short"}, "unknown flag: --short"},
	} {
		out, errOut, code := cliRun(t, settings{}, "", tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%v: exit %d, want 2 and %q\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}
}

// TestConfigErrorsAllAtOnce: values that do not parse and values that are wrong are reported
// together, each naming its variable, and each once.
func TestConfigErrorsAllAtOnce(t *testing.T) {
	t.Setenv("FRONTPAY_API_TOKEN", "")
	t.Setenv("FRONTPAY_API_TIMEOUT", "abc")
	t.Setenv("FRONTPAY_MAX_ATTEMPTS", "many")
	t.Setenv("FRONTPAY_ACK_WAIT", "1")
	t.Setenv("FRONTPAY_REPLICAS", "2")
	t.Setenv("FRONTPAY_LOG_FORMAT", "xml")
	t.Setenv("FRONTPAY_SUBJECT_PREFIX", "shop1")
	_, errOut, code := cliRun(t, settings{}, "", "run")
	if code != exitUsage {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		`FRONTPAY_API_TIMEOUT: "abc" is not a duration`, `FRONTPAY_MAX_ATTEMPTS: "many" is not a whole number`,
		`FRONTPAY_ACK_WAIT: "1" is not a duration`, "FRONTPAY_REPLICAS: must be 1, 3 or 5", "FRONTPAY_LOG_FORMAT:",
		"FRONTPAY_SUBJECT_PREFIX:", "FRONTPAY_API_TOKEN: required",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the errors lack %q:\n%s", want, errOut)
		}
	}
	// A value that did not parse is not reported again as its zero value.
	if n := strings.Count(errOut, "FRONTPAY_API_TIMEOUT"); n != 1 {
		t.Errorf("FRONTPAY_API_TIMEOUT named %d times:\n%s", n, errOut)
	}
	// The tools read the NATS variables the same way.
	_, errOut, code = cliRun(t, settings{}, "", "lag")
	if code != exitUsage || !strings.Contains(errOut, "FRONTPAY_SUBJECT_PREFIX:") {
		t.Errorf("lag: exit %d\n%s", code, errOut)
	}
}

// TestVersion: the command and the flag name the version, the commit and the Go version.
func TestVersion(t *testing.T) {
	out, _, code := cliRun(t, settings{}, "", "version")
	if code != exitOK || !strings.Contains(out, "version:  ") || !strings.Contains(out, "commit:   ") ||
		!strings.Contains(out, "go:       "+runtime.Version()) {
		t.Fatalf("version: exit %d\n%s", code, out)
	}
	out, _, code = cliRun(t, settings{}, "", "--version")
	if code != exitOK || !strings.HasPrefix(out, "frontpay-worker ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("--version: exit %d\n%s", code, out)
	}
}

// TestVersionStamped builds the binary with the version and the commit stamped by -ldflags -X,
// as deploy/Dockerfile does, and runs its version command. It leaves out the Dockerfile's
// -trimpath, which would compile every package again rather than share internal/proc's builds.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel() // beside the tests that mostly wait
	bin := filepath.Join(t.TempDir(), "frontpay-worker")
	pkg := "github.com/nordpay/frontpay-worker/internal/buildinfo"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false",
		"-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=0123456789abcdef", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "version:  v9.8.7\n") || !strings.Contains(string(out), "commit:   0123456789abcdef\n") {
		t.Fatalf("version: %v\n%s", err, out)
	}
}

// TestCompletion: every shell's script is printed.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_frontpay-worker", "zsh": "#compdef frontpay-worker", "fish": "complete -c frontpay-worker",
		"powershell": "Register-ArgumentCompleter",
	} {
		out, errOut, code := cliRun(t, settings{}, "", "completion", shell)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, lacks %q\n%.300s%s", shell, code, want, out, errOut)
		}
	}
	// The completion asks the binary itself: operations for publish's first argument.
	out, _, code := cliRun(t, settings{}, "", cobra.ShellCompRequestCmd, "publish", "reservation.c")
	if code != exitOK || !strings.Contains(out, "reservation.capture") || !strings.Contains(out, "reservation.cancel") {
		t.Errorf("completing publish: exit %d\n%s", code, out)
	}
}

// TestToolsFailFastWithoutNATS: with nothing listening at NATS_URL, or a NATS server without
// JetStream, every tool gives up with exit 3 and says why, where they used to retry for ever.
func TestToolsFailFastWithoutNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + ln.Addr().String()
	ln.Close()
	plain := testworld.Server(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT})
	for url, want := range map[string]string{
		closed:                              "NATS at " + closed + ": connect to NATS:",
		plain.ClientURL():                   "answers, but its JetStream does not",
		"nats://u:pw@" + ln.Addr().String(): "NATS at nats://u:xxxxx@",
	} {
		t.Setenv("NATS_URL", url)
		for _, args := range [][]string{
			{"lag"}, {"replay", "--dry-run"}, {"replay", "--yes"},
			{"publish", "reservation.details", "-"}, {"forget", "--reservation", "RES1", "--dry-run"},
		} {
			done := make(chan struct{})
			var errOut string
			var code int
			go func() {
				defer close(done)
				_, errOut, code = cliRun(t, settings{}, `{"reservationUuid":"RES1"}`, args...)
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("%v against %s: still trying after a minute", args, url)
			}
			if code != exitUnreachable || !strings.Contains(errOut, want) || strings.Contains(errOut, "headers not supported") || strings.Contains(errOut, ":pw@") {
				t.Errorf("%v against %s: exit %d, want 3 and %q\n%s", args, url, code, want, errOut)
			}
		}
	}
}

// TestRunWarnsOfEmbeddedNATS: run with NATS_URL empty says that the embedded server is for
// development. (Its data directory cannot be made here, so it stops right after, with exit 4.)
func TestRunWarnsOfEmbeddedNATS(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATS_URL", "")
	t.Setenv("FRONTPAY_API_TOKEN", "tok")
	t.Setenv("FRONTPAY_DATA_DIR", filepath.Join(file, "data"))
	_, errOut, code := cliRun(t, settings{}, "", "run")
	if code != exitFailure || !strings.Contains(errOut, "embedded NATS server, which is for development only") ||
		!strings.Contains(errOut, "FRONTPAY_DATA_DIR: mkdir") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}

	// With NATS_URL set, no such warning.
	t.Setenv("NATS_URL", testworld.JetStream(t).URL)
	t.Setenv("FRONTPAY_HTTP_ADDR", "no-port")
	_, errOut, code = cliRun(t, settings{}, "", "run")
	if code != exitFailure || strings.Contains(errOut, "development only") || !strings.Contains(errOut, "FRONTPAY_HTTP_ADDR") {
		t.Fatalf("with NATS_URL: exit %d\n%s", code, errOut)
	}
}

// TestDevQuickStart runs dev as the README's quick start does (on free ports, against a NATS
// server of the test's) and then the quick start's first commands: the details of the seeded
// reservation, and a capture of it.
func TestDevQuickStart(t *testing.T) {
	t.Setenv("NATS_URL", testworld.JetStream(t).URL)
	t.Setenv("FRONTPAY_API_TOKEN", "") // dev sets the sandbox's; t.Setenv restores it after
	t.Setenv("FRONTPAY_API_URL", "")
	os.Unsetenv("FRONTPAY_API_URL") // unset: the worker uses dev's sandbox
	t.Setenv("FRONTPAY_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("FRONTPAY_DATA_DIR", t.TempDir())

	ctx, cancel := context.WithCancel(t.Context())
	root := newRoot(settings{})
	var log testworld.SyncBuffer
	root.SetOut(&log)
	root.SetErr(&log)
	done := make(chan int, 1)
	go func() { done <- execute(ctx, root, []string{"dev", "--sandbox-addr", "127.0.0.1:0"}) }()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("dev: exit %d\n%s", code, log.String())
		}
	}()
	testworld.WaitFor(t, func() bool {
		select {
		case code := <-done:
			done <- code // for the deferred check
			t.Fatalf("dev: exit %d\n%s", code, log.String())
		default:
		}
		return strings.Contains(log.String(), "sandbox reservation ready to capture")
	}, "the seeded reservation")

	out, errOut, code := cliRun(t, settings{}, `{"reservationUuid":"`+devReservation+`"}`, "publish", "reservation.details", "-")
	if code != exitOK || !strings.Contains(out, `"type":"reservation.details.succeeded"`) || !strings.Contains(out, `"status":"RESERVED"`) {
		t.Fatalf("details: exit %d\n%s%s\n%s", code, out, errOut, log.String())
	}
	capture := `{"reservationUuid":"` + devReservation + `","products":[{"id":298,"amount":100}],"grandTotal":100,"additionalText":"first parcel"}`
	out, errOut, code = cliRun(t, settings{}, capture, "publish", "reservation.capture", "-")
	if code != exitOK || !strings.Contains(out, `"type":"reservation.capture.succeeded"`) {
		t.Fatalf("capture: exit %d\n%s%s\n%s", code, out, errOut, log.String())
	}
}
