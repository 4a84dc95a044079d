package schemas

import (
	"bytes"
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

// FuzzStructured checks that a binary-mode message, whatever its headers and body, becomes a JSON
// object that carries the body (as data or data_base64), or nil, which ParseCommand refuses with
// ErrNotObject, and never anything ParseCommand could refuse otherwise than with an
// *InvalidError or ErrNotObject.
func FuzzStructured(f *testing.F) {
	f.Add("ce-source", "shop%2Fcheckout", "application/json", []byte(examples[rc]))
	f.Add("ce-id", `"a \"b\""`, "text/plain", []byte("\x00\xff"))
	f.Add("CE-TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", []byte(`{}`))
	f.Add("ce-data", "x", "application/cloudevents+json", []byte(command(rc, examples[rc])))
	f.Fuzz(func(t *testing.T, name, value, contentType string, body []byte) {
		header := binaryCapture()
		header[name] = []string{value}
		header["Content-Type"] = []string{contentType}
		raw := Structured(header, body)
		_, err := ParseCommand(rc, raw, testNow)
		var inv *InvalidError
		switch {
		case errors.Is(err, ErrNotObject) && (raw == nil || bytes.Equal(raw, body)):
			return
		case err != nil && !errors.As(err, &inv):
			t.Fatalf("ParseCommand: %T %v", err, err)
		case bytes.Equal(raw, body):
			return // structured mode
		}
		var ev struct {
			Data       json.RawMessage `json:"data"`
			DataBase64 []byte          `json:"data_base64"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if len(body) > 0 && ev.Data == nil && !bytes.Equal(ev.DataBase64, body) {
			t.Fatalf("the body %q is lost: %s", body, raw)
		}
	})
}
