package sandbox

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when goroutines outlive the tests: servers, callbacks and handlers must
// all end. (goleak itself, not internal/testworld's Main: testworld imports this package.)
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
