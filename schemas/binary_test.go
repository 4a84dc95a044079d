package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// binaryCapture is the capture example in binary mode, its headers as the CloudEvents Go SDK
// writes them, with the attributes of command(rc, …).
func binaryCapture() map[string][]string {
	return map[string][]string{
		"ce-specversion":     {"1.0"},
		"ce-id":              {"7f1d0c2e-5b1a-4c57-9a0e-3f1f6f0f2a10"},
		"ce-source":          {"shop/checkout"},
		"ce-type":            {"reservation.capture.requested"},
		"ce-time":            {"2026-11-21T10:00:00Z"},
		"ce-idempotencykey":  {"key-1"},
		"ce-correlationid":   {"order-88412"},
		"ce-datacontenttype": {"application/json"},
		"Nats-Msg-Id":        {"7f1d0c2e-5b1a-4c57-9a0e-3f1f6f0f2a10"},
	}
}

func TestStructuredPassesStructuredThrough(t *testing.T) {
	t.Parallel()
	raw := command(rc, examples[rc])
	for name, header := range map[string]map[string][]string{
		"no headers":       nil,
		"no ce- header":    {"Nats-Msg-Id": {"x"}, "Content-Type": {"application/json"}},
		"cloudevents type": {"Content-Type": {"application/cloudevents+json; charset=UTF-8"}, "ce-id": {"other"}},
		"lower-case type":  {"content-type": {"Application/CloudEvents+JSON"}, "ce-specversion": {"1.0"}},
	} {
		if got := Structured(header, raw); !bytes.Equal(got, raw) {
			t.Errorf("%s: got %s", name, got)
		}
	}
}

func TestStructuredBinaryIsTheSameCommand(t *testing.T) {
	t.Parallel()
	want, err := ParseCommand(rc, command(rc, examples[rc]), testNow)
	if err != nil {
		t.Fatal(err)
	}
	sdk := binaryCapture()
	// The header names of another client: NATS header names are case-insensitive, and the
	// Go SDK's binding reads datacontenttype from Content-Type.
	other := map[string][]string{"Content-Type": {"application/json"}}
	for name, v := range sdk {
		switch rest, ok := strings.CutPrefix(name, "ce-"); {
		case !ok:
			other[name] = v
		case rest != "datacontenttype":
			other["CE-"+strings.ToUpper(rest)] = v
		}
	}
	for name, header := range map[string]map[string][]string{"sdk": sdk, "other": other} {
		raw := Structured(header, []byte(examples[rc]))
		got, err := ParseCommand(rc, raw, testNow)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, raw)
		}
		if got.ID != want.ID || got.Source != want.Source || got.Time != want.Time || got.Key != want.Key ||
			got.CorrelationID != want.CorrelationID || got.Fingerprint != want.Fingerprint || got.Resource != want.Resource ||
			got.DataContentType != "application/json" {
			t.Errorf("%s: parsed %+v, want %+v", name, got, want)
		}
	}
}

func TestStructuredKeepsExtensions(t *testing.T) {
	t.Parallel()
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	header := binaryCapture()
	header["ce-traceparent"] = []string{traceparent}
	header["ce-tracestate"] = []string{"congo=t61rcWkgMzE"}
	header["ce-replayof"] = []string{"6e1d0c2e-5b1a-5c57-9a0e-3f1f6f0f2a10"}
	raw := Structured(header, []byte(examples[rc]))
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["traceparent"] != traceparent || ev["tracestate"] != "congo=t61rcWkgMzE" {
		t.Errorf("trace context lost: %s", raw)
	}
	cmd, err := ParseCommand(rc, raw, testNow)
	if err != nil || cmd.ReplayOf != "6e1d0c2e-5b1a-5c57-9a0e-3f1f6f0f2a10" {
		t.Fatalf("%v, %+v", err, cmd)
	}
}

func TestStructuredDecodesValues(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"shop/checkout":           "shop/checkout",
		"shop%2Fcheckout":         "shop/checkout",
		"shop%2fcheckout":         "shop/checkout",
		"Euro%20%E2%82%AC%20sale": "Euro € sale",
		`"shop checkout"`:         "shop checkout",
		`"say \"hi\""`:            `say "hi"`,
		"50% off":                 "50% off", // the Go SDK does not percent-encode: a lone % stays
		"100%":                    "100%",
		"Kari Nordmann • Oslo":    "Kari Nordmann • Oslo",
	} {
		header := binaryCapture()
		header["ce-source"] = []string{value}
		cmd, err := ParseCommand(rc, Structured(header, []byte(examples[rc])), testNow)
		if err != nil || cmd.Source != want {
			t.Errorf("ce-source %q: source %q (%v), want %q", value, cmd.Source, err, want)
		}
	}
}

func TestStructuredInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		edit   func(h map[string][]string)
		body   string
		fields []string // named by the *InvalidError
	}{
		{"body not JSON", nil, `{"reservationUuid": "RES1", grandTotal: 5`, []string{"data"}},
		{"body not UTF-8", nil, "{\"note\": \"\xff\"}", []string{"data"}},
		{"text body", func(h map[string][]string) { h["ce-datacontenttype"] = []string{"text/plain"} }, examples[rc], []string{"datacontenttype", "data"}},
		{"no body", nil, "", []string{"data"}},
		{"no specversion", func(h map[string][]string) { delete(h, "ce-specversion") }, examples[rc], []string{"specversion"}},
		{"two ids", func(h map[string][]string) { h["CE-ID"] = []string{"another"} }, examples[rc], []string{"id"}},
		{"type of another subject", func(h map[string][]string) { h["ce-type"] = []string{"reservation.refund.requested"} }, examples[rc], []string{"type"}},
		{"not an attribute name", func(h map[string][]string) { h["ce-idempotency_key"] = []string{"x"} }, examples[rc], []string{"idempotency_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := binaryCapture()
			if tc.edit != nil {
				tc.edit(header)
			}
			raw := Structured(header, []byte(tc.body))
			_, err := ParseCommand(rc, raw, testNow)
			for _, field := range tc.fields {
				checkVerdict(t, raw, nil, err, field)
			}
			// The failure event carries the command, body included, so nothing is lost.
			var ev struct {
				Data       json.RawMessage `json:"data"`
				DataBase64 []byte          `json:"data_base64"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			switch {
			case ev.DataBase64 != nil:
				if !bytes.Equal(ev.DataBase64, []byte(tc.body)) {
					t.Errorf("data_base64 %q, want the body %q", ev.DataBase64, tc.body)
				}
			case ev.Data != nil:
				if !bytes.Equal(compact(t, ev.Data), compact(t, []byte(tc.body))) {
					t.Errorf("data %s, want the body %s", ev.Data, tc.body)
				}
			case tc.body != "":
				t.Errorf("the body %q is lost: %s", tc.body, raw)
			}
		})
	}
}

func TestStructuredUnreadable(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(h map[string][]string){
		"value not UTF-8":    func(h map[string][]string) { h["ce-idempotencykey"] = []string{"key-\xff"} },
		"overlong encoding":  func(h map[string][]string) { h["ce-source"] = []string{"shop%C0%A0"} },
		"escape not UTF-8":   func(h map[string][]string) { h["ce-correlationid"] = []string{"order%FF"} },
		"data as a header":   func(h map[string][]string) { h["ce-data"] = []string{"{}"} },
		"data_base64 header": func(h map[string][]string) { h["Ce-Data_Base64"] = []string{"e30="} },
	} {
		header := binaryCapture()
		edit(header)
		if _, err := ParseCommand(rc, Structured(header, []byte(examples[rc])), testNow); !errors.Is(err, ErrNotObject) {
			t.Errorf("%s: %v, want ErrNotObject", name, err)
		}
	}
}

func TestStructuredBase64Body(t *testing.T) {
	t.Parallel()
	body := []byte("\x00\x01binary\xff")
	header := binaryCapture()
	header["ce-datacontenttype"] = []string{"application/octet-stream"}
	var ev map[string]string
	if err := json.Unmarshal(Structured(header, body), &ev); err != nil {
		t.Fatal(err)
	}
	if got, _ := base64.StdEncoding.DecodeString(ev["data_base64"]); !bytes.Equal(got, body) {
		t.Errorf("data_base64 %q, want the body %q", ev["data_base64"], body)
	}
}
