package metrics

import (
	"testing"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestMain fails the package's tests if a goroutine outlives them: the scripted run starts a
// worker.
func TestMain(m *testing.M) { testworld.Main(m) }
