package consumer

import (
	"testing"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestMain fails the package's tests if a goroutine outlives them: the engine starts several
// for every worker and every command.
func TestMain(m *testing.M) { testworld.Main(m) }
