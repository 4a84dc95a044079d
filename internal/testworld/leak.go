package testworld

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs a package's tests and then fails the run if any goroutine they started is still
// running (go.uber.org/goleak): a worker, a consumer, a subscription, a server or a timer loop that
// a test forgot to stop. Call it from TestMain. Goroutines that are on their way out (a
// connection's read loop after its server closed) get up to Patience to end, where goleak alone
// waits about half a second, which a busy machine can outlast; none is ignored.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(Patience)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
