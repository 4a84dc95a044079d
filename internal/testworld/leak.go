package testworld

import (
	"testing"

	"go.uber.org/goleak"
)

// Main runs a package's tests and then fails the run if any goroutine they started is still
// running (go.uber.org/goleak): a worker, a consumer, a subscription, a server or a timer loop that
// a test forgot to stop. Call it from TestMain.
func Main(m *testing.M) {
	goleak.VerifyTestMain(m)
}
