package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// The worker's configuration, read from the source of internal/app/config.go: its envconfig tags
// and field types as written.

type configVar struct {
	name   string
	goType string // as written in config.go: string, Secret, int, time.Duration
	def    string // the default tag
}

// secretVars are the variables that hold secrets themselves: never in a ConfigMap.
var secretVars = []string{"FRONTPAY_API_TOKEN", "FRONTPAY_CALLBACK_SECRET"}

// configVars collects the envconfig tags of every struct in config.go.
func configVars(t *testing.T) map[string]configVar {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), configSource, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]configVar{}
	ast.Inspect(f, func(n ast.Node) bool {
		st, ok := n.(*ast.StructType)
		if !ok {
			return true
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			name, ok := reflect.StructTag(tag).Lookup("envconfig")
			if !ok {
				continue
			}
			vars[name] = configVar{name: name, goType: types.ExprString(field.Type), def: reflect.StructTag(tag).Get("default")}
		}
		return true
	})
	if len(vars) < 20 {
		t.Fatalf("found only %d envconfig tags in %s", len(vars), configSource)
	}
	return vars
}

// check tells whether value would pass envconfig for the variable's type. A variable that is set
// but empty is parsed too (it does not fall back to the default), so an empty number fails.
func (v configVar) check(value string) error {
	var err error
	switch v.goType {
	case "string", "Secret":
	case "int":
		_, err = strconv.Atoi(value)
	case "time.Duration":
		_, err = time.ParseDuration(value)
	default:
		return fmt.Errorf("%s has type %s, unknown to this test", v.name, v.goType)
	}
	if err != nil {
		return fmt.Errorf("%s=%q is not a valid %s: %v", v.name, value, v.goType, err)
	}
	return nil
}

func (v configVar) duration(t *testing.T, value string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(value)
	if err != nil {
		t.Fatalf("%s=%q: %v", v.name, value, err)
	}
	return d
}
