package fleet

import (
	"testing"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestMain fails the package's tests if a goroutine outlives them: a fleet runs a worker and its
// goroutines for every merchant it is assigned.
func TestMain(m *testing.M) { testworld.Main(m) }
