package testworld

import (
	"bytes"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nordpay/frontpay-worker/schemas"
)

// compiledSchemas holds every JSON Schema document of the contract (schemas.FS) compiled, by path.
var compiledSchemas = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	var paths []string
	err := fs.WalkDir(schemas.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := schemas.FS.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		paths = append(paths, path)
		return c.AddResource(schemas.BaseURI+path, doc)
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*jsonschema.Schema{}
	for _, p := range paths {
		if out[p], err = c.Compile(schemas.BaseURI + p); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// SchemaError says how the JSON document doc breaks the contract's schema document path
// (schemas.ResultSchema, schemas.StatusSchema, …), nil when it follows it.
func SchemaError(path string, doc []byte) error {
	all, err := compiledSchemas()
	if err != nil {
		return fmt.Errorf("compile the schemas: %w", err)
	}
	s, ok := all[path]
	if !ok {
		return fmt.Errorf("no schema document %s", path)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}
