package publisher

import (
	"testing"

	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestMain fails the package's tests if a goroutine outlives them: each test starts a server and
// a connection, and a Publish that retries must stop when its context ends.
func TestMain(m *testing.M) { testworld.Main(m) }
