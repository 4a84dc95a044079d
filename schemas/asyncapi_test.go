package schemas_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// asyncAPI is the AsyncAPI document, as much of it as the tests read.
type asyncAPI struct {
	Channels map[string]struct {
		Address    string                     `json:"address"`
		Parameters map[string]json.RawMessage `json:"parameters"`
		Messages   map[string]struct {
			Ref string `json:"$ref"`
		} `json:"messages"`
	} `json:"channels"`
	Components struct {
		Messages map[string]struct {
			Name    string `json:"name"`
			Payload struct {
				SchemaFormat string          `json:"schemaFormat"`
				Schema       json.RawMessage `json:"schema"`
			} `json:"payload"`
		} `json:"messages"`
	} `json:"components"`
	raw map[string]any
}

func readAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	b, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc.raw); err != nil {
		t.Fatal(err)
	}
	return doc
}

// parameter is a {name} in a channel address.
var parameter = regexp.MustCompile(`\{([a-z]+)\}`)

// subjects returns the addresses of the channels with the parameters filled in: {prefix} and
// {merchant} with the values given, {subject} (the whole subject a dead letter came on) with the
// wildcard >. withMerchant leaves out the channels without {merchant}.
func (doc asyncAPI) subjects(t *testing.T, prefix, merchant string, withMerchant bool) []string {
	t.Helper()
	var out []string
	for _, ch := range doc.Channels {
		if withMerchant && !strings.Contains(ch.Address, "{merchant}") {
			continue
		}
		subject := parameter.ReplaceAllStringFunc(ch.Address, func(p string) string {
			name := p[1 : len(p)-1]
			if _, ok := ch.Parameters[name]; !ok {
				t.Errorf("channel %s: address parameter %s is not among its parameters", ch.Address, p)
			}
			switch name {
			case "prefix":
				return prefix
			case "merchant":
				return merchant
			case "subject":
				return ">"
			}
			t.Errorf("channel %s: unknown parameter %s", ch.Address, p)
			return p
		})
		out = append(out, subject)
	}
	slices.Sort(out)
	return out
}

// topologySubjects returns the subjects of the streams of a one-merchant deployment.
func topologySubjects(prefix string, deadLetters bool) []string {
	var out []string
	for _, cfg := range (consumer.Topology{Prefix: prefix}).Streams() {
		for _, s := range cfg.Subjects {
			if deadLetters || !strings.Contains(s, "frontpay.deadletter.") {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestAsyncAPIChannelsAreTheTopology holds the document's channels to the subjects of the streams
// the worker creates: every subject is a channel and every channel a subject, with a prefix and
// without, and a merchant's channels are the subjects of a deployment whose prefix is
// <prefix><merchant>. (CONTRACT.md section 9).
func TestAsyncAPIChannelsAreTheTopology(t *testing.T) {
	doc := readAsyncAPI(t)
	for _, prefix := range []string{"", "shop1.", "acme.eu."} {
		compare(t, fmt.Sprintf("prefix %q", prefix), doc.subjects(t, prefix, "", false), topologySubjects(prefix, true))
		compare(t, fmt.Sprintf("prefix %q, merchant shop1", prefix), doc.subjects(t, prefix, "shop1.", true), topologySubjects(prefix+"shop1.", false))
	}
}

// compare fails t unless the channels are the subjects, naming those that are in one only.
func compare(t *testing.T, what string, channels, subjects []string) {
	t.Helper()
	for _, c := range channels {
		if !slices.Contains(subjects, c) {
			t.Errorf("%s: channel %s is no subject of the streams", what, c)
		}
	}
	for _, s := range subjects {
		if !slices.Contains(channels, s) {
			t.Errorf("%s: subject %s is no channel", what, s)
		}
	}
	if len(channels) != len(subjects) {
		t.Errorf("%s: %d channels, %d subjects", what, len(channels), len(subjects))
	}
}

// TestAsyncAPIRefersToTheSchemas checks that every payload refers to the JSON Schema documents by
// their $id, that each document's $id is BaseURI and its path, and that each command channel's
// message is that operation's command.
func TestAsyncAPIRefersToTheSchemas(t *testing.T) {
	doc := readAsyncAPI(t)
	ids := map[string]string{} // $id → path in FS
	err := fs.WalkDir(schemas.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := schemas.FS.ReadFile(path)
		if err != nil {
			return err
		}
		var s struct {
			ID string `json:"$id"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s.ID != schemas.BaseURI+path {
			t.Errorf("%s: $id %s, want %s", path, s.ID, schemas.BaseURI+path)
		}
		ids[s.ID] = path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The validation reads the URLs under BaseURI from the working tree.
	script, err := os.ReadFile("asyncapi/validate.mjs")
	if err != nil || !strings.Contains(string(script), "const baseURI = '"+schemas.BaseURI+"';") {
		t.Errorf("asyncapi/validate.mjs does not take BaseURI %s (%v)", schemas.BaseURI, err)
	}

	// Every reference that is not within the document is the $id of a schema; every schema but
	// the shared building blocks is referred to.
	referred := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok && !strings.HasPrefix(ref, "#") {
				if _, ok := ids[ref]; !ok {
					t.Errorf("$ref %s is no schema's $id", ref)
				}
				referred[ids[ref]] = true
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(doc.raw)
	for _, path := range ids {
		if !referred[path] && path != schemas.DefsSchema {
			t.Errorf("%s is not referred to", path)
		}
	}

	for _, op := range frontpay.Operations() {
		found := false
		for _, ch := range doc.Channels {
			if !strings.HasSuffix(ch.Address, "}"+schemas.CommandSubject("", op)) {
				continue
			}
			found = true
			for _, m := range ch.Messages {
				msg := doc.Components.Messages[strings.TrimPrefix(m.Ref, "#/components/messages/")]
				var payload struct {
					AllOf []struct {
						Ref        string `json:"$ref"`
						Properties struct {
							Type struct {
								Const string `json:"const"`
							} `json:"type"`
							Data struct {
								Ref string `json:"$ref"`
							} `json:"data"`
						} `json:"properties"`
					} `json:"allOf"`
				}
				if err := json.Unmarshal(msg.Payload.Schema, &payload); err != nil || len(payload.AllOf) != 2 {
					t.Fatalf("%s: payload %s (%v)", op, msg.Payload.Schema, err)
				}
				command, narrowed := payload.AllOf[0], payload.AllOf[1].Properties
				if msg.Name != schemas.CommandSubject("", op) || msg.Payload.SchemaFormat != "application/schema+json;version=2020-12" ||
					command.Ref != schemas.BaseURI+schemas.CommandSchema || narrowed.Type.Const != schemas.CommandSubject("", op) ||
					narrowed.Data.Ref != schemas.BaseURI+schemas.DataSchema(op) {
					t.Errorf("%s: message %s, payload %s", op, msg.Name, msg.Payload.Schema)
				}
			}
		}
		if !found {
			t.Errorf("no channel for %s commands", op)
		}
	}
}
