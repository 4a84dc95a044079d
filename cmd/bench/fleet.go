package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nordpay/frontpay-worker/internal/app"
)

// stopAll stops replicas at once, each handing its merchants over, and waits for them.
func stopAll(replicas []*app.Main) {
	var wg sync.WaitGroup
	for _, m := range replicas {
		wg.Go(func() { _ = m.Close() })
	}
	wg.Wait()
}

// fileMerchant is a merchant of a merchants file the benchmark writes.
type fileMerchant struct {
	ID    string
	Token string
	Rate  int
}

// writeMerchantsFile writes a FRONTPAY_MERCHANTS_FILE named name into dir, each token in a file
// of its own beside it, and returns its path.
func writeMerchantsFile(dir, name string, ms []fileMerchant) (string, error) {
	var b strings.Builder
	b.WriteString("merchants:\n")
	for _, m := range ms {
		tf := filepath.Join(dir, name+"-"+m.ID+".token")
		if err := os.WriteFile(tf, []byte(m.Token+"\n"), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  - id: %s\n    tokenFile: %q\n    rate: %d\n", m.ID, tf, m.Rate)
	}
	path := filepath.Join(dir, name+".yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}
