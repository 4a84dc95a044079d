package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Merchants' commands, in a deployment of several (CONTRACT.md section 9): who answers which.
//
// Every merchant's commands land on the one command stream. A merchant of the merchants file has
// a consumer of its own (Topology.Consumer), from a stream sequence S on; every other command is
// answered by the unknown merchants' consumer (unknown.go) as invalid_command / unknownMerchant.
// The two decide by the state bucket's key merchant.<id>, written with compare-and-swap, so that
// they never both answer a command nor both leave it:
//
//   - {"unknownThrough": u}: the merchant's commands up to sequence u were (or are being)
//     answered as an unknown merchant's. The unknown merchants' consumer raises u before it
//     answers a command.
//   - {"start": S}: the merchant's consumer takes every command from S on, and S is above every u
//     written before: the unknown merchants' consumer leaves those, and answers those below S.
//
// A merchant removed from the file keeps its consumer and its mark: its commands wait in the
// stream until it is added again. A command answered as an unknown merchant's can be replayed
// once the merchant is added.

// merchantMark is the value of merchant.<id>.
type merchantMark struct {
	Start          uint64 `json:"start,omitempty"`
	UnknownThrough uint64 `json:"unknownThrough,omitempty"`
}

func markKey(merchant string) string { return KeyPrefixMerchant + merchant }

// readMark returns a merchant's mark and its revision (0: none).
func readMark(ctx context.Context, kv jetstream.KeyValue, merchant string) (merchantMark, uint64, error) {
	var m merchantMark
	e, err := kv.Get(ctx, markKey(merchant))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return m, 0, nil
	}
	if err != nil {
		return m, 0, fmt.Errorf("read %s: %w", markKey(merchant), err)
	}
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return m, 0, fmt.Errorf("decode %s: %w", markKey(merchant), err)
	}
	return m, e.Revision(), nil
}

// writeMark writes a merchant's mark over revision rev (0: a new key); false when another writer
// was first.
func writeMark(ctx context.Context, kv jetstream.KeyValue, merchant string, m merchantMark, rev uint64) (bool, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	if rev == 0 {
		_, err = kv.Create(ctx, markKey(merchant), b)
	} else {
		_, err = kv.Update(ctx, markKey(merchant), b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", markKey(merchant), err)
	}
	return true, nil
}

// EnsureMerchant creates or updates a merchant's consumer, in a deployment of several. A new one
// starts above every command answered as an unknown merchant's.
func (t Topology) EnsureMerchant(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, merchant string) error {
	stream, err := js.Stream(ctx, t.CommandStream())
	if err != nil {
		return fmt.Errorf("open stream %s: %w", t.CommandStream(), err)
	}
	cfg := t.Consumer(merchant)
	for {
		m, rev, err := readMark(ctx, kv, merchant)
		if err != nil {
			return err
		}
		if m.Start == 0 {
			m = merchantMark{Start: m.UnknownThrough + 1}
			if ok, err := writeMark(ctx, kv, merchant, m, rev); err != nil {
				return err
			} else if !ok {
				continue
			}
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, m.Start
		break
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, cfg); err != nil {
		return fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
	}
	return nil
}

// unknownAt decides a command of merchant at stream sequence seq for the unknown merchants'
// consumer: it returns the merchant's start (0 when it has none) and whether the command is to
// be answered as an unknown merchant's, which it records first.
func unknownAt(ctx context.Context, kv jetstream.KeyValue, merchant string, seq uint64) (start uint64, unknown bool, err error) {
	for {
		m, rev, err := readMark(ctx, kv, merchant)
		if err != nil {
			return 0, false, err
		}
		switch {
		case m.Start != 0:
			return m.Start, seq < m.Start, nil
		case m.UnknownThrough >= seq:
			return 0, true, nil
		}
		m.UnknownThrough = seq
		if ok, err := writeMark(ctx, kv, merchant, m, rev); err != nil || ok {
			return 0, ok, err
		}
	}
}
