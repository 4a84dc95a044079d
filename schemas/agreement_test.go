package schemas

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// compiled holds every document of FS compiled, by path.
var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	var paths []string
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		paths = append(paths, path)
		return c.AddResource(BaseURI+path, doc)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*jsonschema.Schema, len(paths))
	for _, path := range paths {
		if out[path], err = c.Compile(BaseURI + path); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// schema returns the compiled schema at path in FS, or at BaseURI+path for a fragment.
func schema(t testing.TB, path string) *jsonschema.Schema {
	t.Helper()
	all, err := compiled()
	if err != nil {
		t.Fatalf("compile schemas: %v", err)
	}
	if s, ok := all[path]; ok {
		return s
	}
	c := jsonschema.NewCompiler()
	for p := range all {
		b, _ := FS.ReadFile(p)
		doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err := c.AddResource(BaseURI+p, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile(BaseURI + path)
	if err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	return s
}

// schemaAccepts reports whether the schema at path accepts the JSON doc, and why not.
func schemaAccepts(t testing.TB, path string, doc []byte) (bool, error) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	err = schema(t, path).Validate(v)
	return err == nil, err
}

var tagPattern = regexp.MustCompile(`\[([a-z0-9-]+)\]`)

// unexpressible returns the rules that the $comment of the schemas at paths lists as not
// expressible in JSON Schema.
func unexpressible(t testing.TB, paths ...string) map[string]bool {
	t.Helper()
	tags := map[string]bool{}
	for _, path := range paths {
		b, err := FS.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Comment string `json:"$comment"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, m := range tagPattern.FindAllStringSubmatch(doc.Comment, -1) {
			tags[m[1]] = true
		}
	}
	return tags
}

// agree checks that ParseCommand and the schema at path give the same verdict on a case, except
// for a rule the schema lists as not expressible: then ParseCommand must refuse and the schema
// accept, proving the list true.
func agree(t *testing.T, goErr error, schemaOK bool, schemaErr error, tag string, tags map[string]bool) {
	t.Helper()
	switch {
	case tag != "" && !tags[tag]:
		t.Errorf("the case breaks %q, which the schema's $comment does not list", tag)
	case tag != "" && goErr == nil:
		t.Errorf("ParseCommand accepts a case of the unexpressible rule %q", tag)
	case tag != "" && !schemaOK:
		t.Errorf("the schema refuses a case of the rule %q that it lists as not expressible: %v", tag, schemaErr)
	case tag == "" && (goErr == nil) != schemaOK:
		t.Errorf("ParseCommand: %v\nschema: %v", goErr, schemaErr)
	}
}

// TestSchemaAgreement holds the data schemas to what ParseCommand does, case by case.
func TestSchemaAgreement(t *testing.T) {
	t.Parallel()
	covered := map[frontpay.Operation]map[string]bool{}
	tags := map[frontpay.Operation]map[string]bool{} // each data schema's unexpressible rules
	for _, c := range corpus {
		if tags[c.op] == nil {
			tags[c.op] = unexpressible(t, DataSchema(c.op))
		}
		t.Run(c.name(), func(t *testing.T) {
			data := c.data(t)
			raw := command(c.op, data)
			_, goErr := ParseCommand(c.op, raw, testNow)
			dataOK, dataErr := schemaAccepts(t, DataSchema(c.op), []byte(data))
			if cmdOK, _ := schemaAccepts(t, CommandSchema, raw); cmdOK != dataOK {
				t.Errorf("the command schema says %v, the data schema %v", cmdOK, dataOK)
			}
			agree(t, goErr, dataOK, dataErr, c.tag, tags[c.op])
		})
		if covered[c.op] == nil {
			covered[c.op] = map[string]bool{}
		}
		covered[c.op][c.tag] = true
	}
	for _, op := range frontpay.Operations() {
		if !covered[op][""] {
			t.Errorf("%s: no case", op)
		}
		for tag := range unexpressible(t, DataSchema(op)) {
			if !covered[op][tag] {
				t.Errorf("%s: no case for the unexpressible rule %q", op, tag)
			}
		}
	}
}

// TestSchemaAgreementEnvelope holds command.schema.json to ParseCommand on the envelope.
func TestSchemaAgreementEnvelope(t *testing.T) {
	t.Parallel()
	tags := unexpressible(t, CommandSchema)
	covered := map[string]bool{}
	for _, c := range envelopeCorpus {
		raw := c.bytes(t)
		t.Run(truncateBytes(raw), func(t *testing.T) {
			_, goErr := ParseCommand(c.subjectOp(), raw, testNow)
			ok, err := schemaAccepts(t, CommandSchema, raw)
			agree(t, goErr, ok, err, c.tag, tags)
		})
		covered[c.tag] = true
	}
	for tag := range tags {
		if !covered[tag] {
			t.Errorf("no case for the unexpressible rule %q", tag)
		}
	}
}

// TestSchemaEnums holds the schemas' lists to frontpay's.
func TestSchemaEnums(t *testing.T) {
	t.Parallel()
	country := schema(t, DefsSchema+"#/$defs/country")
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			code := string([]rune{a, b})
			if ok := country.Validate(code) == nil; ok != frontpay.IsISOAlpha2(code) {
				t.Errorf("country %s: schema %v, frontpay %v", code, ok, !ok)
			}
		}
	}
	language := schema(t, DefsSchema+"#/$defs/language")
	for _, lang := range append([]string{"fr", "EN", "nb", ""}, frontpay.Languages...) {
		if ok := language.Validate(lang) == nil; ok != slices.Contains(frontpay.Languages, lang) {
			t.Errorf("language %q: schema %v", lang, ok)
		}
	}
}

// TestSchemaAgreementValues puts many awkward values into one member at a time. Where the member's
// rules are all expressible the verdicts must agree; elsewhere the schema must at least accept
// everything ParseCommand accepts, being looser only by the rules its $comment lists.
func TestSchemaAgreementValues(t *testing.T) {
	t.Parallel()
	numbers := []string{"0", "-0", "+0", "0.", ".0", "-.0", "00", "1", "-1", "+1", "1.", ".5", "-.5", "1.5",
		"1.50", "1.505", "1.500", "0.001", "0.0010", "0.01", "100", "100.0", "100.01", "101", "99.999", "12.5",
		"007", "1.0", "1e2", "1E2", "1e-2", "1.5e1", "-1e2", "-0e5", "1e999", "1e+2", "5e-1", "2.55e1", "1e-99",
		"92233720368547758.07", "92233720368547758.08", "9223372036854775807", "9223372036854775808",
		"12345678901", "99999999999", "100000000000", "1706674723", "abc", "", " 1", "1 ", "0x10", "1_000",
		"١", "Infinity", "NaN", "--1", "1..2", ".", "+", "-", "1e", "e1", "1.5.5", long, "-" + long}
	texts := []string{"a@b.no", "a@b", "@b.no", "a@@b.no", "a b@c.no", `"a b"@c.no`, "<a@b.no>", "A <a@b.no>",
		"a@b.no ", " a@b.no", "a@[1.2.3.4]", "a@b.", "a@.b", "ø@æ.no", "a@b..no", "a.@b.no",
		"http://x", "https://x.no/a?b#c", "HTTP://X", "ftp://x", "http:/x", "http://", "http://@x", "http://u@",
		"http://x y", "http://x/%zz", "https://x:99999", "http://[::1]/", "//x", " http://x",
		"", " ", "\u00a0", "\u2003", "\u3000", "\ufeff", "\u200b", "\u0085", "\u180e", "\t", "\v", "a", "\u00a0a",
		"+47", "+47 ", "47", "+", "+12345", "4656", "465", "123456789012345", "1234567890123456", "19635464524",
		"1963546452", "1963546452x", "١٢٣", "RES_1-2", "RES/1", "123456789", "1234567890", strings.Repeat("R", 64)}
	// looseNumber is a JSON number written in a way the schema cannot see ([number-text]).
	looseNumber := func(s string, quoted bool) bool {
		_, err := frontpay.ParseNumber(s)
		return !quoted && err != nil
	}
	// looseMoney adds the numeric strings whose amount rules the schema leaves to the worker
	// ([cents-exponent], [cents-range], [tax-exponent]).
	looseMoney := func(s string, quoted bool) bool {
		whole, _, _ := strings.Cut(strings.TrimLeft(s, "+-0"), ".")
		return looseNumber(s, quoted) || quoted && (strings.ContainsAny(s, "eE") || len(whole) >= 17)
	}
	// looseID adds [id-digits] and [id-range].
	looseID := func(s string, quoted bool) bool {
		return looseNumber(s, quoted) || !quoted && strings.ContainsAny(s, ".eE-") || quoted && len(strings.TrimLeft(s, "0")) >= 19
	}
	never := func(string, bool) bool { return false }
	always := func(string, bool) bool { return true }
	positions := []struct {
		op     frontpay.Operation
		paths  []string // set to the same value
		values []string
		loose  func(s string, quoted bool) bool
	}{
		{oc, []string{"products.0.rate"}, numbers, looseMoney},
		{oc, []string{"products.0.discount"}, numbers, looseMoney},
		{oc, []string{"products.0.tax"}, numbers, looseMoney},
		{oc, []string{"products.0.quantity"}, numbers, looseMoney},
		{oc, []string{"orderSummary.grandTotal"}, numbers, looseMoney},
		{rc, []string{"products.0.id"}, numbers, looseID},
		{hi, []string{"start", "end"}, numbers, looseNumber},
		{rs, []string{"orderDate"}, append(numbers, texts...), func(s string, _ bool) bool { return len(s) >= 19 }},
		{rs, []string{"customerDetails.email"}, texts, always},
		{oc, []string{"customerDetails.email"}, texts, always},
		{rr, []string{"email"}, texts, always},
		{rs, []string{"callback.callbackUrl"}, texts, always},
		{ss, []string{"callback.success"}, texts, always},
		{rx, []string{"note"}, texts, never},
		{oc, []string{"customerDetails.name"}, texts, never},
		{rs, []string{"customerDetails.countryCode"}, texts, never},
		{rr, []string{"countryCode", "msisdn"}, texts, never},
		{oc, []string{"customerDetails.msisdn"}, texts, never},
		{rs, []string{"customerDetails.personalNumber"}, texts, never},
		{oc, []string{"customerDetails.organizationId"}, append(numbers, texts...), never},
		{rs, []string{"customerDetails.organizationId"}, append(numbers, texts...), never},
		{rs, []string{"chargeValidity"}, texts, never},
		{rd, []string{"reservationUuid"}, texts, never},
	}
	for _, p := range positions {
		set := setter(t, examples[p.op], p.paths...)
		for _, s := range p.values {
			forms := []string{}
			if b, _ := json.Marshal(s); true {
				forms = append(forms, string(b))
			}
			var n json.Number
			if json.Unmarshal([]byte(s), &n) == nil && s != "" && !strings.ContainsAny(s, ` "`) {
				forms = append(forms, s)
			}
			for _, form := range forms {
				data := set(form)
				_, goErr := ParseCommand(p.op, command(p.op, data), testNow)
				ok, err := schemaAccepts(t, DataSchema(p.op), []byte(data))
				switch {
				case goErr == nil && !ok:
					t.Errorf("%s %s=%s: ParseCommand accepts, the schema refuses: %v", p.op, p.paths, form, err)
				case goErr != nil && ok && !p.loose(s, form[0] == '"'):
					t.Errorf("%s %s=%s: the schema accepts, ParseCommand refuses: %v", p.op, p.paths, form, goErr)
				}
			}
		}
	}
}

// setter returns a function that gives what edit gives for doc with the members at paths all set
// to one JSON value: doc is edited once, with a placeholder, and each value put in its place
// written as edit writes it.
func setter(t *testing.T, doc string, paths ...string) func(value string) string {
	t.Helper()
	const slot = `"\u0000slot"` // a JSON string that neither doc nor edit's output holds otherwise
	var edits []string
	for _, path := range paths {
		edits = append(edits, path, slot)
	}
	parts := strings.Split(edit(t, doc, edits...), slot)
	if len(parts) != len(paths)+1 {
		t.Fatalf("setter %s: %d places for %d paths", paths, len(parts)-1, len(paths))
	}
	return func(value string) string {
		t.Helper()
		return strings.Join(parts, edit(t, value))
	}
}
