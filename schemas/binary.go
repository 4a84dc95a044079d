package schemas

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// CloudEvents binary content mode over NATS (the NATS protocol binding, version 1.0.3): the
// attributes and extensions in ce-<name> headers, data as the message body. The CloudEvents Go SDK
// publishes this way by default.
const (
	// binaryPrefix starts the name of every header that carries an attribute.
	binaryPrefix = "ce-"
	// contentTypeHeader is where the Go SDK's binding reads datacontenttype from; the binding
	// itself names ce-datacontenttype. Both are read.
	contentTypeHeader = "content-type"
)

// Structured returns the command a NATS message carries, as the structured-mode JSON that
// ParseCommand reads. header is the message's headers (a nats.Header), body its data.
//
// A message in structured mode comes back unchanged: one whose Content-Type is
// application/cloudevents (+json or any other format), and one without any ce- header, as
// commands were published before binary mode existed. Otherwise the message is in binary mode:
//   - each ce-<name> header is the attribute or extension <name>; header names are
//     case-insensitive, as NATS's are. Content-Type is datacontenttype. A value is unquoted if it
//     is a quoted string and then percent-decoded, as the binding says; a % that starts no
//     escape is kept as it is (the Go SDK does not encode). An attribute given twice with two
//     different values becomes a JSON array, which ParseCommand refuses as not a string.
//     traceparent and tracestate come through as the extensions they are.
//   - the body is data when datacontenttype is absent or a JSON media type and the body is JSON;
//     otherwise it is data_base64, which ParseCommand refuses (data must be a JSON object), so the
//     command ends as an invalid_command failure that still carries every byte of it. An empty
//     body is no data at all.
//
// Where the attributes cannot be read (a value that is not UTF-8 after decoding, or a ce-data
// header) Structured returns nil, which ParseCommand refuses with ErrNotObject: the message is
// dead-lettered with its bytes and headers unchanged.
func Structured(header map[string][]string, body []byte) []byte {
	if !binaryMode(header) {
		return body
	}
	attrs := map[string][]string{}
	names := make([]string, 0, len(header))
	for name := range header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		lower := strings.ToLower(name)
		attr, ok := strings.CutPrefix(lower, binaryPrefix)
		if lower == contentTypeHeader {
			attr, ok = "datacontenttype", true
		}
		if !ok {
			continue
		}
		if attr == "data" || attr == "data_base64" {
			return nil
		}
		for _, v := range header[name] {
			s, ok := headerValue(v)
			if !ok {
				return nil
			}
			if !slices.Contains(attrs[attr], s) {
				attrs[attr] = append(attrs[attr], s)
			}
		}
	}
	event := make(map[string]any, len(attrs)+1)
	for attr, values := range attrs {
		event[attr] = values
		if len(values) == 1 {
			event[attr] = values[0]
		}
	}
	contentType, _ := event["datacontenttype"].(string)
	switch {
	case len(body) == 0:
	case (contentType == "" || jsonMediaType.MatchString(contentType)) && utf8.Valid(body) && json.Valid(body):
		event["data"] = json.RawMessage(body)
	default:
		event["data_base64"] = base64.StdEncoding.EncodeToString(body)
	}
	b, err := json.Marshal(event)
	if err != nil {
		return nil // every value is a string, valid UTF-8, or JSON: this does not happen
	}
	return b
}

// binaryMode reports whether a message's headers make it a binary-mode CloudEvent.
func binaryMode(header map[string][]string) bool {
	binary := false
	for name, values := range header {
		switch lower := strings.ToLower(name); {
		case lower == contentTypeHeader && len(values) > 0 &&
			strings.HasPrefix(strings.ToLower(strings.TrimSpace(values[0])), "application/cloudevents"):
			return false
		case strings.HasPrefix(lower, binaryPrefix):
			binary = true
		}
	}
	return binary
}

// headerValue decodes an attribute's header value: a quoted string is unquoted (RFC 7230
// section 3.2.6), then %XX escapes are decoded. It reports false when the result is not UTF-8.
func headerValue(v string) (string, bool) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	if strings.Contains(v, "%") {
		b := make([]byte, 0, len(v))
		for i := 0; i < len(v); i++ {
			if v[i] == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
				b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
				i += 2
				continue
			}
			b = append(b, v[i])
		}
		v = string(b)
	}
	return v, utf8.ValidString(v)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
