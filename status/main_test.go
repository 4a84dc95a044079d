package status

import (
	"testing"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestMain fails the package's tests if a goroutine outlives them: a service starts one for every
// callback it reads back, and the history poll's loop.
func TestMain(m *testing.M) { testworld.Main(m) }
