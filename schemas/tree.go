package schemas

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// errTooDeep stops reading a tree nested deeper than MaxDepth.
var errTooDeep = errors.New("too deep")

// readTree decodes raw, which json.Valid accepts, into map[string]any, []any, json.Number, string,
// bool and nil. Unlike json.Unmarshal it refuses what would pass silently: a member named twice in
// one object (the last would win, and another parser may take the first), reported as a field
// error; and nesting deeper than MaxDepth, reported as errTooDeep.
func readTree(raw []byte) (any, []frontpay.FieldError, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	r := treeReader{dec: dec}
	v, err := r.value("", 1)
	return v, r.dups, err
}

type treeReader struct {
	dec  *json.Decoder
	dups []frontpay.FieldError
}

// value reads the value at path, depth being the nesting level a container there opens.
func (r *treeReader) value(path string, depth int) (any, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	if delim == '[' {
		list := []any{}
		for i := 0; r.dec.More(); i++ {
			v, err := r.value(join(path, strconv.Itoa(i)), depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err = r.dec.Token()
		return list, err
	}
	obj := map[string]any{}
	for r.dec.More() {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		p := join(path, key)
		if _, dup := obj[key]; dup {
			r.dups = append(r.dups, frontpay.FieldError{Field: p, Rule: "distinct", Message: "appears more than once"})
		}
		if obj[key], err = r.value(p, depth+1); err != nil {
			return nil, err
		}
	}
	_, err = r.dec.Token()
	return obj, err
}

// join appends a member name or index to a dotted field path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// sortedKeys returns an object's member names in order, so that errors come out the same way
// every time.
func sortedKeys(obj map[string]any) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// canonical writes a tree as compact JSON with every object's members sorted by name, strings
// without HTML escaping and numbers exactly as they were written.
func canonical(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// A tree from readTree holds only values that encode.
		panic(fmt.Sprintf("schemas: encode tree: %v", err))
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// fingerprint is the hex SHA-256 of a tree's canonical form.
func fingerprint(v any) string {
	sum := sha256.Sum256(canonical(v))
	return hex.EncodeToString(sum[:])
}

// kindOf names the JSON kind of a tree value for error messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

// scalar reports whether a tree value is neither an object nor an array.
func scalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}
