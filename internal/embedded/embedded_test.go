package embedded

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestMaxPayloadIsTheDefault: the embedded server takes messages up to a standard nats-server's
// default max_payload (1 MiB) and refuses larger ones, so that what works against it works
// against a production server.
func TestMaxPayloadIsTheDefault(t *testing.T) {
	s, err := Start(Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	checkMaxPayload(t, s.ClientURL())
}

// checkMaxPayload connects to url and checks that the server announces the default max_payload
// and refuses a message one byte over it.
func checkMaxPayload(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != server.MAX_PAYLOAD_SIZE {
		t.Errorf("max payload %d, want a standard server's default %d", got, server.MAX_PAYLOAD_SIZE)
	}
	if err := nc.Publish("t.limit", bytes.Repeat([]byte("x"), server.MAX_PAYLOAD_SIZE)); err != nil {
		t.Errorf("a message of exactly 1 MiB: %v", err)
	}
	if err := nc.Publish("t.limit", bytes.Repeat([]byte("x"), server.MAX_PAYLOAD_SIZE+1)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("a message of 1 MiB + 1 byte: %v, want %v", err, nats.ErrMaxPayload)
	}
}
