package schemas

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// FuzzParseCommand checks that ParseCommand never panics, that it refuses with ErrNotObject or an
// *InvalidError only (the latter for JSON objects, which a failure event can carry), and that an
// accepted command re-validates: its body passes Validate, the event it decoded parses again to
// the same command, and the command schema accepts it too.
func FuzzParseCommand(f *testing.F) {
	ops := frontpay.Operations()
	for i, op := range ops {
		f.Add(uint8(i), command(op, examples[op]))
	}
	for _, c := range envelopeCorpus {
		if c.tag != "max-size" {
			f.Add(uint8(slices.Index(ops, c.subjectOp())), c.bytes(f))
		}
	}
	f.Fuzz(func(t *testing.T, i uint8, raw []byte) {
		op := ops[int(i)%len(ops)]
		cmd, err := ParseCommand(op, raw, testNow)
		var inv *InvalidError
		switch {
		case errors.Is(err, ErrNotObject):
			return
		case errors.As(err, &inv):
			if len(inv.Fields) == 0 || !json.Valid(raw) || !utf8.Valid(raw) {
				t.Fatalf("%v for %q", err, raw)
			}
			return
		case err != nil:
			t.Fatalf("ParseCommand: %T %v", err, err)
		}
		if cmd.Body != nil {
			if err := cmd.Body.Validate(testNow); err != nil {
				t.Fatalf("accepted body does not validate: %v", err)
			}
		}
		event, err := json.Marshal(cmd.Event)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseCommand(op, event, testNow)
		if err != nil {
			t.Fatalf("the decoded event %s does not parse again: %v", event, err)
		}
		if again.Fingerprint != cmd.Fingerprint || again.Key != cmd.Key || again.Resource != cmd.Resource || !slices.Equal(again.Params, cmd.Params) {
			t.Fatalf("parsed again: %+v, first %+v", again, cmd)
		}
		if ok, err := schemaAccepts(t, CommandSchema, raw); !ok {
			t.Fatalf("ParseCommand accepts what the command schema refuses: %v", err)
		}
	})
}
