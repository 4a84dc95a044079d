package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/internal/metrics"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/nordpay/frontpay-worker/status"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/ from consumer.Topology")

// The code the manifests describe, relative to this directory.
const (
	configSource = "../cmd/frontpay-worker/config.go"
	goMod        = "../go.mod"
)

// ---------------------------------------------------------------------------------------------
// NATS definitions

// natsLayouts are the definition sets under nats/, one per replica count of the streams, the
// bucket and the consumers.
var natsLayouts = []struct {
	dir      string
	replicas int
}{
	{"nats/single", 1},
	{"nats/cluster", 3},
}

// natsAckWait is the consumer's AckWait in the files: FRONTPAY_ACK_WAIT's default, which
// TestNATSDefinitions checks; natsPinnedTTL its PinnedTTL, FRONTPAY_PIN_TTL's default.
const (
	natsAckWait   = 5 * time.Minute
	natsPinnedTTL = 10 * time.Second
)

func topology(replicas int) consumer.Topology {
	return consumer.Topology{Prefix: "", Replicas: replicas, AckWait: natsAckWait, PinnedTTL: natsPinnedTTL}
}

// natsDefinitions returns the files of one layout by their path under its directory:
// streams/<stream>.json for the three streams and the bucket's stream KV_<bucket>, in the JSON
// of the JetStream API's StreamConfig (`nats stream add --config`), and
// consumers/<durable>.json for the consumers of the command stream, in the JSON of its
// ConsumerConfig (`nats consumer add FRONTPAY_COMMANDS --config`).
func natsDefinitions(t *testing.T, replicas int) map[string][]byte {
	t.Helper()
	topo := topology(replicas)
	files := map[string][]byte{}
	add := func(p string, v any) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // subjects end in ">"
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		files[p] = b.Bytes()
	}
	for _, s := range topo.Streams() {
		add("streams/"+s.Name+".json", spellOutLimits(s))
	}
	kv := kvStream(t, topo.Bucket())
	add("streams/"+kv.Name+".json", kv)
	c := topo.Consumer("")
	add("consumers/"+c.Durable+".json", c)
	return files
}

// spellOutLimits writes a stream's unset limits as -1, the server's own spelling of "no limit"
// and what `nats stream info` shows. The server reads 0 the same way:
// TestNATSDefinitionsMatchWorker proves that the worker changes nothing on streams made from
// the files.
func spellOutLimits(s jetstream.StreamConfig) jetstream.StreamConfig {
	if s.MaxConsumers == 0 {
		s.MaxConsumers = -1
	}
	if s.MaxMsgs == 0 {
		s.MaxMsgs = -1
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = -1
	}
	if s.MaxMsgsPerSubject == 0 {
		s.MaxMsgsPerSubject = -1
	}
	if s.MaxMsgSize == 0 {
		s.MaxMsgSize = -1
	}
	return s
}

// kvStream is the stream that nats.go makes for a key-value bucket (jetstream's
// prepareKeyValueConfig), so that the nats CLI can create the bucket with `nats stream add`.
// TestNATSDefinitionsMatchWorker proves it against nats.go itself.
func kvStream(t *testing.T, b jetstream.KeyValueConfig) jetstream.StreamConfig {
	t.Helper()
	if b.RePublish != nil || b.Mirror != nil || len(b.Sources) > 0 || b.LimitMarkerTTL != 0 {
		t.Fatalf("bucket %s: kvStream maps no republish, mirror, sources or limit marker TTL: "+
			"extend it after nats.go's prepareKeyValueConfig", b.Bucket)
	}
	history := int64(1)
	if b.History > 0 {
		history = int64(b.History)
	}
	maxBytes := b.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	maxValue := b.MaxValueSize
	if maxValue == 0 {
		maxValue = -1
	}
	duplicates := 2 * time.Minute
	if b.TTL > 0 && b.TTL < duplicates {
		duplicates = b.TTL
	}
	var compression jetstream.StoreCompression
	if b.Compression {
		compression = jetstream.S2Compression
	}
	return jetstream.StreamConfig{
		Name:              "KV_" + b.Bucket,
		Description:       b.Description,
		Subjects:          []string{"$KV." + b.Bucket + ".>"},
		MaxMsgsPerSubject: history,
		MaxBytes:          maxBytes,
		MaxAge:            b.TTL,
		MaxMsgSize:        maxValue,
		Storage:           b.Storage,
		Replicas:          max(b.Replicas, 1),
		Placement:         b.Placement,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        duplicates,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Compression:       compression,
		Discard:           jetstream.DiscardNew,
		Metadata:          b.Metadata,
	}
}

// TestNATSDefinitions fails when the files under nats/ are not what consumer.Topology makes;
// with -update it rewrites them.
func TestNATSDefinitions(t *testing.T) {
	vars := configVars(t)
	if d, err := time.ParseDuration(vars["FRONTPAY_PIN_TTL"].def); err != nil || d != natsPinnedTTL {
		t.Errorf("FRONTPAY_PIN_TTL defaults to %q in config.go, the files use %s: change natsPinnedTTL",
			vars["FRONTPAY_PIN_TTL"].def, natsPinnedTTL)
	}
	if d, err := time.ParseDuration(vars["FRONTPAY_ACK_WAIT"].def); err != nil || d != natsAckWait {
		t.Errorf("FRONTPAY_ACK_WAIT defaults to %q in config.go, the files use %s: change natsAckWait",
			vars["FRONTPAY_ACK_WAIT"].def, natsAckWait)
	}
	// The files hold consumer's retentions, which must be config.go's defaults.
	for name, want := range map[string]time.Duration{
		"FRONTPAY_COMMAND_RETENTION": consumer.CommandRetention, "FRONTPAY_RESULT_RETENTION": consumer.ResultRetention,
		"FRONTPAY_DEADLETTER_RETENTION": consumer.DeadLetterRetention, "FRONTPAY_STATE_TTL": consumer.StateTTL,
	} {
		if d, err := time.ParseDuration(vars[name].def); err != nil || d != want {
			t.Errorf("%s defaults to %q in config.go, consumer/topology.go (and the files) to %s", name, vars[name].def, want)
		}
	}
	for _, l := range natsLayouts {
		want := natsDefinitions(t, l.replicas)
		got := readTree(t, l.dir, ".json")
		if *update {
			writeTree(t, l.dir, want, got)
			continue
		}
		var drift []string
		for _, p := range sortedKeys(want) {
			switch g, ok := got[p]; {
			case !ok:
				drift = append(drift, p+" is missing")
			case !bytes.Equal(g, want[p]):
				drift = append(drift, p+" differs")
			}
		}
		for _, p := range sortedKeys(got) {
			if _, ok := want[p]; !ok {
				drift = append(drift, p+" is not made by consumer.Topology")
			}
		}
		if len(drift) > 0 {
			t.Errorf("deploy/%s does not match consumer.Topology{Replicas: %d, AckWait: %s}:\n\t%s\nrun `go test ./deploy -update`",
				l.dir, l.replicas, natsAckWait, strings.Join(drift, "\n\t"))
		}
	}
}

// TestNATSClusterDiffersOnlyInReplicas: the cluster's definitions are the single server's with
// three replicas.
func TestNATSClusterDiffersOnlyInReplicas(t *testing.T) {
	single, cluster := readTree(t, natsLayouts[0].dir, ".json"), readTree(t, natsLayouts[1].dir, ".json")
	if !slices.Equal(sortedKeys(single), sortedKeys(cluster)) {
		t.Fatalf("the layouts hold different files: %v and %v", sortedKeys(single), sortedKeys(cluster))
	}
	for p := range single {
		var s, c map[string]any
		mustJSON(t, p, single[p], &s)
		mustJSON(t, p, cluster[p], &c)
		if s["num_replicas"] != 1.0 || c["num_replicas"] != 3.0 {
			t.Errorf("%s: num_replicas %v (single) and %v (cluster), want 1 and 3", p, s["num_replicas"], c["num_replicas"])
		}
		delete(s, "num_replicas")
		delete(c, "num_replicas")
		if !reflect.DeepEqual(s, c) {
			t.Errorf("%s: single and cluster differ in more than num_replicas", p)
		}
	}
}

// TestNATSDefinitionsMatchWorker creates the streams, the bucket and the consumers from the
// single-server files over the JetStream API, as the nats CLI does, then lets the worker set up
// its topology on them (consumer.Topology.Ensure, what it does at every start) and checks that
// it changed nothing and created nothing.
func TestNATSDefinitionsMatchWorker(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	topo := topology(1)
	files := readTree(t, natsLayouts[0].dir, ".json")
	for _, p := range sortedKeys(files) {
		if dir, _ := path.Split(p); dir != "streams/" {
			continue
		}
		var s struct {
			Name string `json:"name"`
		}
		mustJSON(t, p, files[p], &s)
		jsAPI(t, nc, "$JS.API.STREAM.CREATE."+s.Name, files[p])
	}
	for _, p := range sortedKeys(files) {
		if dir, _ := path.Split(p); dir != "consumers/" {
			continue
		}
		var c struct {
			Durable string `json:"durable_name"`
		}
		mustJSON(t, p, files[p], &c)
		req, err := json.Marshal(map[string]any{"stream_name": topo.CommandStream(), "config": json.RawMessage(files[p])})
		if err != nil {
			t.Fatal(err)
		}
		jsAPI(t, nc, "$JS.API.CONSUMER.CREATE."+topo.CommandStream()+"."+c.Durable, req)
	}

	before := natsState(ctx, t, js)
	if len(before) != len(files) {
		t.Fatalf("the files made %d objects, want %d", len(before), len(files))
	}
	kv, err := topo.Ensure(ctx, js)
	if err != nil {
		t.Fatalf("the worker's set-up on objects made from the files: %v", err)
	}
	after := natsState(ctx, t, js)
	for _, k := range sortedKeys(after) {
		switch b, ok := before[k]; {
		case !ok:
			t.Errorf("the worker created %s, which deploy/%s lacks", k, natsLayouts[0].dir)
		case b != after[k]:
			t.Errorf("the worker changed %s: %s", k, jsonDiff(t, b, after[k]))
		}
	}
	if _, err := kv.Put(ctx, "deploy-test", []byte("ok")); err != nil {
		t.Errorf("the bucket made from %s is not a usable key-value bucket: %v", "KV_"+topo.StateBucket(), err)
	}
}

// jsAPI sends one JetStream API request and fails on an error answer.
func jsAPI(t *testing.T, nc *nats.Conn, subject string, body []byte) {
	t.Helper()
	msg, err := nc.Request(subject, body, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if resp.Error != nil {
		t.Fatalf("%s: the server refused the definition: %d %s", subject, resp.Error.Code, resp.Error.Description)
	}
}

// jsonDiff names the top-level fields of two JSON objects that differ, with both values.
func jsonDiff(t *testing.T, a, b string) string {
	t.Helper()
	var x, y map[string]any
	mustJSON(t, "before", []byte(a), &x)
	mustJSON(t, "after", []byte(b), &y)
	var diffs []string
	for k := range x {
		if _, ok := y[k]; !ok {
			y[k] = nil
		}
	}
	for _, k := range sortedKeys(y) {
		if !reflect.DeepEqual(x[k], y[k]) {
			diffs = append(diffs, fmt.Sprintf("%s: %v (files) → %v (worker)", k, x[k], y[k]))
		}
	}
	return strings.Join(diffs, "; ")
}

// natsState is every stream's and consumer's configuration as the server holds it, as JSON.
func natsState(ctx context.Context, t *testing.T, js jetstream.JetStream) map[string]string {
	t.Helper()
	out := map[string]string{}
	asJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	streams := js.ListStreams(ctx)
	var names []string
	for info := range streams.Info() {
		out["stream "+info.Config.Name] = asJSON(info.Config)
		names = append(names, info.Config.Name)
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		consumers := s.ListConsumers(ctx)
		for info := range consumers.Info() {
			out["consumer "+name+" "+info.Name] = asJSON(info.Config)
		}
		if err := consumers.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// The worker's configuration, read from config.go's source (package main cannot be imported)

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

// ---------------------------------------------------------------------------------------------
// Kubernetes

// object is one Kubernetes object as JSON, with what every object has decoded.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	doc  map[string]any
	file string
}

func (o *object) String() string { return o.Kind + "/" + o.Metadata.Name + " (" + o.file + ")" }

// decode decodes the whole object into v.
func (o *object) decode(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(o.doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

// readObjects reads the YAML documents of a manifest file.
func readObjects(t *testing.T, file string) []*object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []*object
	for doc := range strings.SplitSeq(string(b), "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		o := &object{file: file}
		if err := json.Unmarshal(j, &o.doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := json.Unmarshal(j, o); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: a document without apiVersion, kind or metadata.name", file)
		}
		out = append(out, o)
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// kustomization is what deploy/k8s uses of kustomize. It is read strictly: a field this test
// does not know fails it, rather than letting the checks run on something kustomize would build
// otherwise.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Replicas []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas"`
}

// build is a small kustomize for what deploy/k8s uses: resources (files and directories),
// strategic merge patches (see merge) and replicas. When kubectl is installed,
// TestKustomizeAgreesWithKubectl compares it with `kubectl kustomize`.
func build(t *testing.T, dir string) []*object {
	t.Helper()
	file := filepath.Join(dir, "kustomization.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("%s: %v (a field this test's build does not know: teach it)", file, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s: apiVersion %q kind %q", file, k.APIVersion, k.Kind)
	}
	var objs []*object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", file, r, err)
		}
		if fi.IsDir() {
			objs = append(objs, build(t, p)...)
		} else {
			objs = append(objs, readObjects(t, p)...)
		}
	}
	for _, p := range k.Patches {
		for _, patch := range readObjects(t, filepath.Join(dir, p.Path)) {
			target := find(objs, patch.Kind, patch.Metadata.Name)
			if target == nil {
				t.Fatalf("%s: patch %s matches no resource", file, patch)
			}
			merge(t, patch.String(), target.doc, patch.doc)
		}
	}
	for _, r := range k.Replicas {
		target := find(objs, "Deployment", r.Name)
		if target == nil {
			t.Fatalf("%s: replicas: no Deployment %s", file, r.Name)
		}
		target.doc["spec"].(map[string]any)["replicas"] = float64(r.Count)
	}
	return objs
}

// mergeKeys are the merge keys of the lists of a Deployment that a patch may merge into, as the
// Kubernetes API gives them (patchMergeKey); other lists are replaced.
var mergeKeys = map[string]string{"containers": "name", "env": "name", "volumeMounts": "mountPath", "volumes": "name"}

// merge applies a strategic merge patch to doc as kustomize does, for what deploy/k8s uses:
// maps merge key by key (null deletes a key); the lists of mergeKeys merge element by element,
// the patch's elements first, in its order, then the others, and "$patch: delete" removes one;
// other lists and values are replaced.
func merge(t *testing.T, patch string, doc, p map[string]any) {
	t.Helper()
	for k, pv := range p {
		if strings.HasPrefix(k, "$") {
			t.Fatalf("patch %s: %s: this test's build knows $patch: delete in a list only: teach it", patch, k)
		}
		switch pv := pv.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			if dv, ok := doc[k].(map[string]any); ok {
				merge(t, patch, dv, pv)
			} else {
				doc[k] = pv
			}
		case []any:
			if key, ok := mergeKeys[k]; ok {
				dv, _ := doc[k].([]any)
				doc[k] = mergeList(t, patch, key, dv, pv)
			} else {
				doc[k] = pv
			}
		default:
			doc[k] = pv
		}
	}
}

func mergeList(t *testing.T, patch, key string, list, p []any) []any {
	t.Helper()
	byKey := func(l []any, id any) map[string]any {
		for _, e := range l {
			if m, ok := e.(map[string]any); ok && m[key] == id {
				return m
			}
		}
		return nil
	}
	var out []any
	for _, e := range p {
		pe, ok := e.(map[string]any)
		if !ok || pe[key] == nil {
			t.Fatalf("patch %s: an element without %s in a list merged by it", patch, key)
		}
		de := byKey(list, pe[key])
		switch d := pe["$patch"]; {
		case d == "delete":
			continue
		case d != nil:
			t.Fatalf("patch %s: $patch: %v: this test's build knows delete only: teach it", patch, d)
		case de == nil:
			out = append(out, pe)
		default:
			merge(t, patch, de, pe)
			out = append(out, de)
		}
	}
	for _, e := range list {
		if byKey(p, e.(map[string]any)[key]) == nil {
			out = append(out, e)
		}
	}
	return out
}

func find(objs []*object, kind, name string) *object {
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

// only returns the one object of a kind.
func only(t *testing.T, objs []*object, kind string) *object {
	t.Helper()
	var found []*object
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, found %d", kind, len(found))
	}
	return found[0]
}

type deployment struct {
	Spec struct {
		Replicas *int `json:"replicas"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Strategy struct {
			Type          string `json:"type"`
			RollingUpdate *struct {
				MaxSurge       any `json:"maxSurge"`
				MaxUnavailable any `json:"maxUnavailable"`
			} `json:"rollingUpdate"`
		} `json:"strategy"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int            `json:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `json:"securityContext"`
	Containers                    []container     `json:"containers"`
	Volumes                       []volume        `json:"volumes"`
}

type volume struct {
	Name   string `json:"name"`
	Secret *struct {
		SecretName string       `json:"secretName"`
		Items      []volumeItem `json:"items"`
	} `json:"secret"`
	ConfigMap *struct {
		Name  string       `json:"name"`
		Items []volumeItem `json:"items"`
	} `json:"configMap"`
}

type volumeItem struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

// itemKey is the key of the Secret or ConfigMap that a volume with items holds at path rel, ""
// if none.
func itemKey(items []volumeItem, rel string) string {
	if len(items) == 0 {
		return rel // every key is a file
	}
	for _, it := range items {
		if it.Path == rel {
			return it.Key
		}
	}
	return ""
}

type securityContext struct {
	RunAsNonRoot             *bool `json:"runAsNonRoot"`
	RunAsUser                *int  `json:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `json:"drop"`
	} `json:"capabilities"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
		SecretRef *struct {
			Name string `json:"name"`
		} `json:"secretRef"`
	} `json:"envFrom"`
	Ports           []containerPort `json:"ports"`
	StartupProbe    *probe          `json:"startupProbe"`
	ReadinessProbe  *probe          `json:"readinessProbe"`
	LivenessProbe   *probe          `json:"livenessProbe"`
	SecurityContext securityContext `json:"securityContext"`
	Resources       struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		SubPath   string `json:"subPath"`
	} `json:"volumeMounts"`
}

type containerPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string          `json:"path"`
		Port json.RawMessage `json:"port"`
	} `json:"httpGet"`
	PeriodSeconds    int `json:"periodSeconds"`
	FailureThreshold int `json:"failureThreshold"`
}

// port resolves a port given by number or by the container's port name.
func (c *container) port(t *testing.T, raw json.RawMessage) int {
	t.Helper()
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		t.Fatalf("port %s: %v", raw, err)
	}
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

// envValue is one variable of a container's environment.
type envValue struct {
	value  string
	secret string // secret/key when the value comes from a Secret
	from   string // where it is set
}

// environment is the container's environment: its ConfigMaps, then its env (which wins).
func environment(t *testing.T, objs []*object, c *container) map[string]envValue {
	t.Helper()
	env := map[string]envValue{}
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			t.Errorf("container %s: envFrom a Secret puts secrets in variables; mount them as files", c.Name)
		}
		if from.ConfigMapRef == nil {
			continue
		}
		cm := find(objs, "ConfigMap", from.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("container %s: envFrom ConfigMap %s, which the manifests lack", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range configMapData(t, cm) {
			env[k] = envValue{value: v, from: cm.String()}
		}
	}
	for _, e := range c.Env {
		v := envValue{value: e.Value, from: "env of container " + c.Name}
		if e.ValueFrom != nil {
			if e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("env %s: only values from a Secret are expected", e.Name)
				continue
			}
			v.secret = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
		env[e.Name] = v
	}
	return env
}

func configMapData(t *testing.T, cm *object) map[string]string {
	t.Helper()
	var v struct {
		Data map[string]any `json:"data"`
	}
	cm.decode(t, &v)
	out := map[string]string{}
	for k, x := range v.Data {
		s, ok := x.(string)
		if !ok {
			t.Errorf("%s: %s is %v, not a string: quote it", cm, k, x)
		}
		out[k] = s
	}
	return out
}

// deployed is a build's worker: the Deployment, its container and its environment.
type deployed struct {
	objs []*object
	dep  deployment
	c    *container
	env  map[string]envValue
}

func worker(t *testing.T, dir string) *deployed {
	t.Helper()
	d := &deployed{objs: build(t, dir)}
	only(t, d.objs, "Deployment").decode(t, &d.dep)
	if n := len(d.dep.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s: %d containers, want 1", dir, n)
	}
	d.c = &d.dep.Spec.Template.Spec.Containers[0]
	d.env = environment(t, d.objs, d.c)
	return d
}

// httpPort is the port of FRONTPAY_HTTP_ADDR, which must listen on every interface.
func (d *deployed) httpPort(t *testing.T) int {
	t.Helper()
	addr, ok := d.env["FRONTPAY_HTTP_ADDR"]
	if !ok {
		t.Fatal("FRONTPAY_HTTP_ADDR is not set: the default 127.0.0.1:8080 is unreachable for probes and Prometheus")
	}
	host, port, err := net.SplitHostPort(addr.value)
	if err != nil {
		t.Fatalf("FRONTPAY_HTTP_ADDR=%q: %v", addr.value, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("FRONTPAY_HTTP_ADDR=%q listens on %s only: the kubelet and Prometheus reach the pod's IP", addr.value, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("FRONTPAY_HTTP_ADDR=%q: %v", addr.value, err)
	}
	return n
}

func (d *deployed) replicas(t *testing.T) int {
	t.Helper()
	if d.dep.Spec.Replicas == nil {
		t.Fatal("the Deployment does not set replicas")
	}
	return *d.dep.Spec.Replicas
}

// merchantsOverlay serves several merchants (CONTRACT.md section 9); nats/accounts is written
// for its subject prefix.
const merchantsOverlay = "k8s/overlays/merchants"

var kubernetesBuilds = []string{"k8s/base", "k8s/overlays/cluster", merchantsOverlay}

// TestKubernetesEnvironment: every variable the manifests set is one config.go reads, with a
// value it accepts; secrets come from files or Secrets; every variable of config.go is either
// set or deliberately left to its default.
func TestKubernetesEnvironment(t *testing.T) {
	vars := configVars(t)
	for _, dir := range kubernetesBuilds {
		t.Run(dir, func(t *testing.T) {
			// Left unset on purpose: the token and the callback secret come from their _FILE
			// variables (setting both of a pair is an error), NATS_CREDS is the credential
			// (NATS_NKEY is its alternative), TLS is per cluster, one merchant is the default.
			unset := []string{"FRONTPAY_API_TOKEN", "FRONTPAY_CALLBACK_SECRET", "NATS_NKEY", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY", "FRONTPAY_MERCHANTS_FILE"}
			secretFiles := []string{"FRONTPAY_API_TOKEN_FILE", "FRONTPAY_CALLBACK_SECRET_FILE", "NATS_CREDS"}
			if dir == merchantsOverlay {
				// The merchants' tokens and callback secrets are named by the merchants file
				// (TestKubernetesMerchants); the worker's NATS user is an nkey of nats/accounts.
				unset = []string{"FRONTPAY_API_TOKEN", "FRONTPAY_API_TOKEN_FILE", "FRONTPAY_CALLBACK_SECRET", "FRONTPAY_CALLBACK_SECRET_FILE", "NATS_CREDS", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"}
				secretFiles = []string{"NATS_NKEY"}
			}
			d := worker(t, dir)
			for _, from := range d.c.EnvFrom {
				if from.ConfigMapRef == nil {
					continue
				}
				cm := find(d.objs, "ConfigMap", from.ConfigMapRef.Name)
				for k := range configMapData(t, cm) {
					if _, ok := vars[k]; !ok {
						t.Errorf("%s: %s is not a variable of %s", cm, k, configSource)
					}
					if slices.Contains(secretVars, k) {
						t.Errorf("%s: %s is a secret: take it from a Secret", cm, k)
					}
				}
			}
			for _, name := range sortedKeys(d.env) {
				e := d.env[name]
				v, ok := vars[name]
				if !ok {
					t.Errorf("%s sets %s, which is not a variable of %s", e.from, name, configSource)
					continue
				}
				if slices.Contains(secretVars, name) && e.secret == "" {
					t.Errorf("%s sets the secret %s in plain text: take it from a Secret", e.from, name)
				}
				if e.secret == "" {
					if err := v.check(e.value); err != nil {
						t.Errorf("%s: %v", e.from, err)
					}
				}
			}
			for _, name := range sortedKeys(vars) {
				if _, ok := d.env[name]; !ok && !slices.Contains(unset, name) {
					t.Errorf("%s is neither set nor among the variables left unset on purpose: add it to the ConfigMap with its default %q", name, vars[name].def)
				}
			}
			for _, name := range unset {
				if _, ok := d.env[name]; ok {
					t.Errorf("%s is set: the manifests assume it is not (see TestKubernetesEnvironment)", name)
				}
			}

			// Secrets are files from Secret volumes.
			for _, name := range secretFiles {
				d.secretFile(t, name, d.env[name].value)
			}
			if d.env["NATS_URL"].value == "" {
				t.Error("NATS_URL is empty: the worker would start an embedded NATS server in the pod")
			}
			if r := d.env["FRONTPAY_REPLICAS"].value; r != "1" && r != "3" && r != "5" {
				t.Errorf("FRONTPAY_REPLICAS=%q, want 1, 3 or 5", r)
			}
			// FRONTPAY_API_RATE is the token's budget over the whole deployment, whatever the
			// number of pods (a merchant's owner alone calls the API for it); with several
			// merchants, the default of a merchant's rate.
			if rate, _ := strconv.Atoi(d.env["FRONTPAY_API_RATE"].value); rate < 1 || rate > 240 {
				t.Errorf("FRONTPAY_API_RATE=%d: want 1 to the API's 240 a minute", rate)
			}
		})
	}
}

// mounted returns the volume that holds file, and file's path in it; it fails the test when
// no volume does.
func (d *deployed) mounted(t *testing.T, what, file string) (*volume, string, bool) {
	t.Helper()
	if file == "" {
		t.Errorf("%s is not set", what)
		return nil, "", false
	}
	for _, m := range d.c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for i, v := range d.dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name {
				return &d.dep.Spec.Template.Spec.Volumes[i], rel, true
			}
		}
		t.Errorf("volume mount %s has no volume", m.Name)
		return nil, "", false
	}
	t.Errorf("%s=%s is in no mounted volume", what, file)
	return nil, "", false
}

// secretFile checks that file (named by what) is in a volume mounted from a Secret, and
// returns that volume, nil if it is not.
func (d *deployed) secretFile(t *testing.T, what, file string) *volume {
	t.Helper()
	v, rel, ok := d.mounted(t, what, file)
	switch {
	case !ok:
		return nil
	case v.Secret == nil:
		t.Errorf("%s=%s is in volume %s, which is not a Secret", what, file, v.Name)
		return nil
	case itemKey(v.Secret.Items, rel) == "":
		t.Errorf("%s=%s: the Secret volume %s has no item at %s", what, file, v.Name, rel)
	}
	return v
}

// TestKubernetesDefaults: the base ConfigMap holds config.go's defaults except where running
// in Kubernetes needs another value; each overlay changes only what it is for.
func TestKubernetesDefaults(t *testing.T) {
	vars := configVars(t)
	overridden := map[string]string{
		"NATS_URL":          "the NATS servers; empty would start an embedded server in the pod",
		"FRONTPAY_API_RATE": "per process: each replica's share of the API's 240 a minute",
	}
	base := configMapData(t, only(t, build(t, kubernetesBuilds[0]), "ConfigMap"))
	for _, k := range sortedKeys(base) {
		if _, ok := overridden[k]; !ok && base[k] != vars[k].def {
			t.Errorf("k8s/base ConfigMap: %s=%q, config.go's default is %q", k, base[k], vars[k].def)
		}
	}
	for dir, changes := range map[string][]string{
		"k8s/overlays/cluster": {"NATS_URL", "FRONTPAY_REPLICAS", "FRONTPAY_API_RATE"},
		merchantsOverlay:       {"FRONTPAY_SUBJECT_PREFIX", "FRONTPAY_API_RATE"},
	} {
		overlay := configMapData(t, find(build(t, dir), "ConfigMap", "frontpay-worker"))
		for _, k := range sortedKeys(overlay) {
			if overlay[k] != base[k] && !slices.Contains(changes, k) {
				t.Errorf("%s changes %s: it should change only %v", dir, k, changes)
			}
		}
	}
}

// TestKubernetesMerchants: the merchants overlay names a merchants file (CONTRACT.md section 9)
// in a ConfigMap it holds, each merchant's token and callback secret is a file from a Secret,
// the file reads as the worker reads it (known fields, valid and unique ids, https URLs, rates
// within the API's 240 a minute), and every mount it uses follows changes: no subPath, and the
// Secret whole, so that adding a merchant changes no Deployment.
func TestKubernetesMerchants(t *testing.T) {
	d := worker(t, merchantsOverlay)
	file := d.env["FRONTPAY_MERCHANTS_FILE"].value
	fv, rel, ok := d.mounted(t, "FRONTPAY_MERCHANTS_FILE", file)
	if !ok {
		return
	}
	if fv.ConfigMap == nil {
		t.Fatalf("FRONTPAY_MERCHANTS_FILE=%s is in volume %s, which is not a ConfigMap", file, fv.Name)
	}
	cm := find(d.objs, "ConfigMap", fv.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("volume %s mounts ConfigMap %s, which the overlay lacks", fv.Name, fv.ConfigMap.Name)
	}
	text, ok := configMapData(t, cm)[itemKey(fv.ConfigMap.Items, rel)]
	if !ok {
		t.Fatalf("FRONTPAY_MERCHANTS_FILE=%s: %s holds no file at %s", file, cm, rel)
	}
	var mf struct {
		Merchants []struct {
			ID                 string `json:"id"`
			TokenFile          string `json:"tokenFile"`
			APIURL             string `json:"apiUrl"`
			Rate               *int   `json:"rate"`
			CallbackSecretFile string `json:"callbackSecretFile"`
		} `json:"merchants"`
	}
	if err := yaml.UnmarshalStrict([]byte(text), &mf); err != nil {
		t.Fatalf("%s %s: %v", cm, rel, err)
	}
	if len(mf.Merchants) == 0 {
		t.Fatalf("%s %s: no merchants", cm, rel)
	}
	seen := map[string]bool{}
	secretVolumes := map[string]*volume{}
	for _, m := range mf.Merchants {
		if _, err := schemas.MerchantPrefix("", m.ID); err != nil || seen[m.ID] {
			t.Errorf("merchant %q: a bad or duplicate id (%v)", m.ID, err)
		}
		seen[m.ID] = true
		files := map[string]string{"tokenFile": m.TokenFile}
		if m.CallbackSecretFile != "" {
			files["callbackSecretFile"] = m.CallbackSecretFile
		}
		for field, f := range files {
			if v := d.secretFile(t, "merchant "+m.ID+" "+field, f); v != nil {
				secretVolumes[v.Name] = v
			}
		}
		if m.APIURL != "" {
			if u, err := url.Parse(m.APIURL); err != nil || u.Scheme != "https" || u.Host == "" {
				t.Errorf("merchant %s: apiUrl %q is not an https URL", m.ID, m.APIURL)
			}
		}
		if m.Rate != nil && (*m.Rate < 1 || *m.Rate > 240) {
			t.Errorf("merchant %s: rate %d, want 1 to the API's 240 a minute", m.ID, *m.Rate)
		}
	}
	for _, name := range sortedKeys(secretVolumes) {
		if len(secretVolumes[name].Secret.Items) > 0 {
			t.Errorf("the Secret volume %s lists its items: a merchant added to the Secret would need a new Deployment", name)
		}
	}
	for _, m := range d.c.VolumeMounts {
		if (secretVolumes[m.Name] != nil || m.Name == fv.Name) && m.SubPath != "" {
			t.Errorf("volume mount %s uses subPath, which never sees a change of the file", m.Name)
		}
	}
}

// TestKubernetesWorker: the Deployment runs the worker with probes on its HTTP port, drains
// within its grace period, runs as non-root on a read-only root filesystem and has resources.
func TestKubernetesWorker(t *testing.T) {
	vars := configVars(t)
	for _, dir := range kubernetesBuilds {
		t.Run(dir, func(t *testing.T) {
			d := worker(t, dir)
			spec, c := d.dep.Spec.Template.Spec, d.c
			if c.Image == "" || len(c.Command) > 0 || !slices.Equal(c.Args, []string{"run"}) {
				t.Errorf("container %s: image %q command %v args %v, want an image, its entrypoint and args [run]", c.Name, c.Image, c.Command, c.Args)
			}
			if !labelsMatch(d.dep.Spec.Selector.MatchLabels, d.dep.Spec.Template.Metadata.Labels) {
				t.Error("the Deployment's selector does not match its pods' labels")
			}

			port := d.httpPort(t)
			if !slices.ContainsFunc(c.Ports, func(p containerPort) bool { return p.ContainerPort == port }) {
				t.Errorf("the container does not declare FRONTPAY_HTTP_ADDR's port %d", port)
			}
			for _, p := range []struct {
				name  string
				probe *probe
				path  string
			}{
				{"readinessProbe", c.ReadinessProbe, "/readyz"},
				{"livenessProbe", c.LivenessProbe, "/healthz"},
				{"startupProbe", c.StartupProbe, "/healthz"},
			} {
				switch {
				case p.probe == nil || p.probe.HTTPGet == nil:
					t.Errorf("%s: no httpGet probe", p.name)
				case p.probe.HTTPGet.Path != p.path:
					t.Errorf("%s: GET %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
				case c.port(t, p.probe.HTTPGet.Port) != port:
					t.Errorf("%s: port %s is not FRONTPAY_HTTP_ADDR's %d", p.name, p.probe.HTTPGet.Port, port)
				}
			}
			// The HTTP server starts only once the streams are set up, which retries for up to
			// 2 minutes while a NATS cluster elects its leaders (cmd/frontpay-worker/app.go).
			if p := c.StartupProbe; p != nil && time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < 2*time.Minute+30*time.Second {
				t.Errorf("the startup probe gives up after %ds: shorter than the set-up's 2 minutes and a margin", p.PeriodSeconds*p.FailureThreshold)
			}

			// On SIGTERM the worker drains for FRONTPAY_DRAIN_TIMEOUT, then closes its HTTP
			// server (up to 5s) and drains its NATS connection (up to 10s).
			drain := vars["FRONTPAY_DRAIN_TIMEOUT"].duration(t, d.env["FRONTPAY_DRAIN_TIMEOUT"].value)
			grace := 30 // Kubernetes' default
			if g := spec.TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			if time.Duration(grace)*time.Second <= drain+15*time.Second {
				t.Errorf("terminationGracePeriodSeconds %d is not longer than FRONTPAY_DRAIN_TIMEOUT (%s) + 15s", grace, drain)
			}

			psc, csc := spec.SecurityContext, c.SecurityContext
			if !isTrue(psc.RunAsNonRoot) && !isTrue(csc.RunAsNonRoot) {
				t.Error("runAsNonRoot is not set")
			}
			if uid := dockerUID(t); (psc.RunAsUser == nil || *psc.RunAsUser != uid) && (csc.RunAsUser == nil || *csc.RunAsUser != uid) {
				t.Errorf("runAsUser is not the image's user %d", uid)
			}
			if !isTrue(csc.ReadOnlyRootFilesystem) {
				t.Error("the root filesystem is not read-only")
			}
			if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation is not false")
			}
			if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
				t.Error("capabilities are not all dropped")
			}
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" {
					t.Errorf("no %s request", r)
				}
			}
			if c.Resources.Limits["memory"] == "" {
				t.Error("no memory limit")
			}
		})
	}
}

// TestKubernetesObjects: the Service, ServiceMonitor and PodDisruptionBudget select the
// worker's pods, the ServiceMonitor scrapes /metrics, and the overlay is a cluster's.
func TestKubernetesObjects(t *testing.T) {
	for _, dir := range kubernetesBuilds {
		t.Run(dir, func(t *testing.T) {
			d := worker(t, dir)
			pods := d.dep.Spec.Template.Metadata.Labels
			port := d.httpPort(t)

			svcObj := only(t, d.objs, "Service")
			var svc struct {
				Spec struct {
					Selector map[string]string `json:"selector"`
					Ports    []struct {
						Name       string          `json:"name"`
						Port       int             `json:"port"`
						TargetPort json.RawMessage `json:"targetPort"`
					} `json:"ports"`
				} `json:"spec"`
			}
			svcObj.decode(t, &svc)
			if !labelsMatch(svc.Spec.Selector, pods) {
				t.Errorf("%s does not select the worker's pods", svcObj)
			}
			portNames := map[string]bool{}
			for _, p := range svc.Spec.Ports {
				target := p.TargetPort
				if target == nil {
					target = json.RawMessage(strconv.Itoa(p.Port))
				}
				if d.c.port(t, target) != port {
					t.Errorf("%s port %s goes to %s, not FRONTPAY_HTTP_ADDR's %d", svcObj, p.Name, target, port)
				}
				portNames[p.Name] = true
			}
			if len(svc.Spec.Ports) == 0 {
				t.Errorf("%s has no ports", svcObj)
			}

			smObj := only(t, d.objs, "ServiceMonitor")
			var sm struct {
				Spec struct {
					Selector struct {
						MatchLabels map[string]string `json:"matchLabels"`
					} `json:"selector"`
					Endpoints []struct {
						Port          string `json:"port"`
						Path          string `json:"path"`
						ScrapeTimeout string `json:"scrapeTimeout"`
						Interval      string `json:"interval"`
					} `json:"endpoints"`
				} `json:"spec"`
			}
			smObj.decode(t, &sm)
			if smObj.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("%s: apiVersion %s", smObj, smObj.APIVersion)
			}
			if !labelsMatch(sm.Spec.Selector.MatchLabels, svcObj.Metadata.Labels) {
				t.Errorf("%s does not select %s", smObj, svcObj)
			}
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("%s: %d endpoints, want 1", smObj, len(sm.Spec.Endpoints))
			}
			ep := sm.Spec.Endpoints[0]
			if !portNames[ep.Port] || ep.Path != "/metrics" {
				t.Errorf("%s scrapes port %q path %q, want one of the Service's ports and /metrics", smObj, ep.Port, ep.Path)
			}
			// A scrape reads the consumers' lag from JetStream for up to metrics.LagTimeout.
			if to, err := time.ParseDuration(ep.ScrapeTimeout); err != nil || to <= metrics.LagTimeout {
				t.Errorf("%s: scrapeTimeout %q, want longer than metrics.LagTimeout (%s)", smObj, ep.ScrapeTimeout, metrics.LagTimeout)
			}

			pdbObj := only(t, d.objs, "PodDisruptionBudget")
			var pdb struct {
				Spec struct {
					MinAvailable *int `json:"minAvailable"`
					Selector     struct {
						MatchLabels map[string]string `json:"matchLabels"`
					} `json:"selector"`
				} `json:"spec"`
			}
			pdbObj.decode(t, &pdb)
			if !labelsMatch(pdb.Spec.Selector.MatchLabels, pods) {
				t.Errorf("%s does not select the worker's pods", pdbObj)
			}
			if m := pdb.Spec.MinAvailable; m == nil || *m != 1 || *m >= d.replicas(t) {
				t.Errorf("%s: minAvailable %v, want 1 and fewer than the %d replicas (or no node could be drained)", pdbObj, m, d.replicas(t))
			}

			switch dir {
			case "k8s/base":
				if n := d.replicas(t); n != 2 {
					t.Errorf("the base runs %d replicas, want 2", n)
				}
			case "k8s/overlays/cluster":
				if n := d.replicas(t); n != 3 {
					t.Errorf("the cluster overlay runs %d replicas, want 3", n)
				}
				if r := d.env["FRONTPAY_REPLICAS"].value; r != "3" {
					t.Errorf("the cluster overlay sets FRONTPAY_REPLICAS=%q, want 3", r)
				}
				if urls := strings.Split(d.env["NATS_URL"].value, ","); len(urls) != 3 {
					t.Errorf("the cluster overlay's NATS_URL lists %d servers, want the cluster's 3", len(urls))
				}
			}
		})
	}
}

// TestKustomizationResources: every file a kustomization names exists, and every manifest in
// a kustomization's directory is one it names.
func TestKustomizationResources(t *testing.T) {
	for _, dir := range kubernetesBuilds {
		b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kustomization
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Fatal(err)
		}
		named := map[string]bool{"kustomization.yaml": true}
		for _, r := range k.Resources {
			named[r] = true
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			}
		}
		for _, p := range k.Patches {
			named[p.Path] = true
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".yaml") && !named[e.Name()] {
				t.Errorf("%s/%s is in no kustomization", dir, e.Name())
			}
		}
	}
}

// TestKustomizeAgreesWithKubectl compares this test's build with `kubectl kustomize`, where
// kubectl is installed.
func TestKustomizeAgreesWithKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	for _, dir := range kubernetesBuilds {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
		cancel()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		tmp := filepath.Join(t.TempDir(), "built.yaml")
		if err := os.WriteFile(tmp, out, 0o600); err != nil {
			t.Fatal(err)
		}
		theirs, ours := readObjects(t, tmp), build(t, dir)
		if len(theirs) != len(ours) {
			t.Errorf("%s: kubectl builds %d objects, this test %d", dir, len(theirs), len(ours))
		}
		for _, o := range theirs {
			mine := find(ours, o.Kind, o.Metadata.Name)
			if mine == nil {
				t.Errorf("%s: kubectl builds %s, this test does not", dir, o)
				continue
			}
			if !reflect.DeepEqual(mine.doc, o.doc) {
				a, _ := json.Marshal(mine.doc)
				b, _ := json.Marshal(o.doc)
				t.Errorf("%s: %s differs:\nthis test: %s\nkubectl:   %s", dir, o, a, b)
			}
		}
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

// ---------------------------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	cmd  string // upper case
	args string
}

// dockerStages reads the Dockerfile into its stages' instructions, continuation lines joined.
func dockerStages(t *testing.T) [][]instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages [][]instruction
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line += cont + " "
			continue
		}
		line += text
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

func lookup(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// dockerUID is the final stage's numeric USER.
func dockerUID(t *testing.T) int {
	t.Helper()
	stages := dockerStages(t)
	users := lookup(stages[len(stages)-1], "USER")
	if len(users) == 0 {
		t.Fatal("Dockerfile: the final stage has no USER")
	}
	user, _, _ := strings.Cut(users[len(users)-1], ":")
	uid, err := strconv.Atoi(user)
	if err != nil {
		t.Fatalf("Dockerfile: USER %q is not numeric: Kubernetes' runAsNonRoot cannot check a user name", user)
	}
	return uid
}

func TestDockerfile(t *testing.T) {
	stages := dockerStages(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a final stage", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	// The builder is the Go of go.mod.
	mod, err := os.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	if from := builder[0].args; !strings.HasPrefix(from, "golang:"+string(goVersion[1])) {
		t.Errorf("Dockerfile: the builder is FROM %s, go.mod asks for Go %s", from, goVersion[1])
	}
	built := ""
	for _, run := range lookup(builder, "RUN") {
		if strings.Contains(run, "go build") {
			built = run
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/frontpay-worker"} {
		if !strings.Contains(built, want) {
			t.Errorf("Dockerfile: the go build (%q) lacks %s", built, want)
		}
	}

	// Base images by digest; the version and the commit stamped into the binary, from build
	// arguments, into variables that internal/buildinfo has.
	for _, st := range stages {
		if from := st[0].args; !regexp.MustCompile(`^\S+:\S+@sha256:[0-9a-f]{64}( |$)`).MatchString(from) {
			t.Errorf("Dockerfile: FROM %s is not pinned by digest (name:tag@sha256:...)", from)
		}
	}
	buildinfo, err := os.ReadFile("../internal/buildinfo/buildinfo.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct{ arg, variable string }{{"VERSION", "version"}, {"COMMIT", "commit"}} {
		if !strings.Contains(built, "-X github.com/nordpay/frontpay-worker/internal/buildinfo."+v.variable+"=${"+v.arg+"}") {
			t.Errorf("Dockerfile: the go build does not stamp %s into buildinfo.%s", v.arg, v.variable)
		}
		if !regexp.MustCompile(`(?m)^\s+` + v.variable + `\s+string$`).Match(buildinfo) {
			t.Errorf("internal/buildinfo has no string variable %s for the Dockerfile's -X", v.variable)
		}
		if !slices.ContainsFunc(lookup(builder, "ARG"), func(a string) bool { return strings.HasPrefix(a, v.arg) }) {
			t.Errorf("Dockerfile: the builder has no ARG %s", v.arg)
		}
	}
	labels := strings.Join(lookup(final, "LABEL"), " ")
	for _, want := range []string{
		`org.opencontainers.image.version="${VERSION}"`, `org.opencontainers.image.revision="${COMMIT}"`,
		"org.opencontainers.image.source=", "org.opencontainers.image.title=",
	} {
		if !strings.Contains(labels, want) {
			t.Errorf("Dockerfile: the final stage's labels lack %s", want)
		}
	}

	if uid := dockerUID(t); uid == 0 {
		t.Error("Dockerfile: the final stage runs as root")
	}
	var entry []string
	for _, e := range lookup(final, "ENTRYPOINT") {
		if err := json.Unmarshal([]byte(e), &entry); err != nil {
			t.Errorf("Dockerfile: ENTRYPOINT %s is not in exec form", e)
		}
	}
	var cmd []string
	for _, c := range lookup(final, "CMD") {
		if err := json.Unmarshal([]byte(c), &cmd); err != nil {
			t.Errorf("Dockerfile: CMD %s is not in exec form", c)
		}
	}
	if len(entry) != 1 || !slices.Equal(cmd, []string{"run"}) {
		t.Errorf("Dockerfile: ENTRYPOINT %v CMD %v, want the binary and [run]", entry, cmd)
	}
	copied := false
	for _, c := range lookup(final, "COPY") {
		f := strings.Fields(c)
		if strings.HasPrefix(f[0], "--from=") && len(entry) == 1 && f[len(f)-1] == entry[0] {
			copied = true
		}
	}
	if !copied {
		t.Errorf("Dockerfile: the final stage does not COPY --from the builder to the ENTRYPOINT %v", entry)
	}

	vars := configVars(t)
	for _, e := range lookup(final, "ENV") {
		name, value, _ := strings.Cut(e, "=")
		v, ok := vars[name]
		if !ok {
			t.Errorf("Dockerfile: ENV %s is not a variable of %s", name, configSource)
			continue
		}
		if err := v.check(value); err != nil {
			t.Errorf("Dockerfile: %v", err)
		}
		if name == "FRONTPAY_HTTP_ADDR" {
			_, port, _ := net.SplitHostPort(value)
			if !slices.Contains(lookup(final, "EXPOSE"), port) {
				t.Errorf("Dockerfile: EXPOSE %v, FRONTPAY_HTTP_ADDR's port is %s", lookup(final, "EXPOSE"), port)
			}
		}
	}
	if d := worker(t, kubernetesBuilds[0]); !slices.Contains(lookup(final, "EXPOSE"), strconv.Itoa(d.httpPort(t))) {
		t.Errorf("Dockerfile: EXPOSE %v, the Deployment's FRONTPAY_HTTP_ADDR port is %d", lookup(final, "EXPOSE"), d.httpPort(t))
	}
}

// ---------------------------------------------------------------------------------------------
// Metrics: what internal/metrics exposes

// seriesSet maps every series name the worker exposes to the label names it has.
type seriesSet map[string]map[string]bool

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// exposedSeries builds the worker's metrics, drives every Observer method once, scrapes them
// and returns every series name: a histogram's _bucket, _sum and _count, a summary's own name,
// _sum and _count. The synthetic `up` of every scrape is added.
func exposedSeries(t *testing.T) seriesSet {
	t.Helper()
	op := frontpay.Operations()[0]
	m, err := metrics.New(nil, func(context.Context) ([]consumer.ConsumerLag, error) {
		return []consumer.ConsumerLag{
			{Merchant: "shop1", Consumer: consumer.ConsumerFor("shop1"), Pending: 1, AckPending: 2, Redelivered: 1, Waiting: 1, OldestAge: time.Minute},
			{Merchant: "shop1", Consumer: consumer.ConsumerFor("shop1"), Operation: string(op), Pending: 1, AckPending: 2, OldestAge: time.Minute},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every method of both observer interfaces, called with a plausible argument of each type.
	args := map[reflect.Type]reflect.Value{
		reflect.TypeFor[frontpay.Operation](): reflect.ValueOf(op),
		reflect.TypeFor[int]():                reflect.ValueOf(401),
		reflect.TypeFor[time.Duration]():      reflect.ValueOf(250 * time.Millisecond),
		reflect.TypeFor[bool]():               reflect.ValueOf(false),
		reflect.TypeFor[schemas.Reason]():     reflect.ValueOf(schemas.OutcomeUnknown),
		reflect.TypeFor[string]():             reflect.ValueOf("applied"),
	}
	o := m.For("shop1")
	mv := reflect.ValueOf(o)
	hooks := o.ClientHooks()
	hooks.RateLimitWait(250 * time.Millisecond)
	hooks.RetryAfterCapped(time.Hour)
	for _, iface := range []reflect.Type{reflect.TypeFor[consumer.Observer](), reflect.TypeFor[status.Observer]()} {
		for i := range iface.NumMethod() {
			method := iface.Method(i)
			var in []reflect.Value
			for j := range method.Type.NumIn() {
				a, ok := args[method.Type.In(j)]
				if !ok {
					t.Fatalf("%s.%s takes a %s: teach exposedSeries an argument for it", iface, method.Name, method.Type.In(j))
				}
				in = append(in, a)
			}
			mv.MethodByName(method.Name).Call(in)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	set := seriesSet{"up": {}}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if set[name] == nil {
			set[name] = map[string]bool{}
		}
		for _, l := range labels {
			set[name][l.GetName()] = true
		}
		for _, l := range extra {
			set[name][l] = true
		}
	}
	for name, f := range families {
		for _, s := range f.Metric {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", s.Label, "le")
				add(name+"_sum", s.Label)
				add(name+"_count", s.Label)
			case dto.MetricType_SUMMARY:
				add(name, s.Label, "quantile")
				add(name+"_sum", s.Label)
				add(name+"_count", s.Label)
			default:
				add(name, s.Label)
			}
		}
	}
	if set["frontpay_consumer_oldest_pending_seconds"] == nil || set["frontpay_api_request_duration_seconds_bucket"] == nil {
		t.Fatalf("the scrape lacks the consumer gauges or the API histogram: %v", sortedKeys(set))
	}
	return set
}

// promFunctions are the PromQL functions and aggregations the rules and the dashboard may use.
var promFunctions = []string{
	"abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
	"clamp", "clamp_max", "clamp_min", "count", "count_over_time", "delta", "deriv", "floor",
	"group", "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace",
	"last_over_time", "max", "max_over_time", "min", "min_over_time", "predict_linear",
	"present_over_time", "quantile", "quantile_over_time", "rate", "resets", "round", "scalar",
	"sort", "sort_desc", "stddev", "sum", "sum_over_time", "time", "timestamp", "topk", "vector",
}

var promKeywords = []string{"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}

// promAggregators are the aggregation operators among promFunctions.
var promAggregators = []string{"avg", "bottomk", "count", "group", "max", "min", "quantile", "stddev", "sum", "topk"}

// promRef is what an expression says of the series it reads.
type promRef struct {
	metrics      map[string][]string // metric name → label names of its matchers
	values       map[string][]string // label name → values compared with =
	grouping     []string            // label names of by, without, on, ignoring
	selectors    []promSelector      // every series selector, in order
	aggregations []promAggregation   // every aggregation, in order
}

// promSelector is one series selector: a metric name and its label matchers.
type promSelector struct {
	metric   string
	matchers []promMatcher
}

// promMatcher is one label matcher, its value unquoted.
type promMatcher struct{ label, op, value string }

// has tells whether the selector has the matcher label op value.
func (s promSelector) has(label, op, value string) bool {
	return slices.Contains(s.matchers, promMatcher{label, op, value})
}

// promAggregation is one aggregation: its operator and the clause that follows the operator
// ("by", "without", or "" when none does) with its labels.
type promAggregation struct {
	op, clause string
	labels     []string
}

var promToken = regexp.MustCompile("\\s+|\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`|\\$\\{[^}]*\\}|\\$[a-zA-Z_]+|[a-zA-Z_:][a-zA-Z0-9_:]*|[0-9][0-9a-zA-Z.]*|=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\\[\\],.]")

var promIdent = regexp.MustCompile(`^[a-zA-Z_:]`)

// parseProm reads the series names, matchers and grouping labels of a PromQL expression. It is
// no full parser, but it knows every construct the rules and the dashboard use and fails on
// anything else.
func parseProm(expr string) (*promRef, error) {
	var toks []string
	rest := expr
	for rest != "" {
		loc := promToken.FindStringIndex(rest)
		if loc == nil || loc[0] != 0 {
			return nil, fmt.Errorf("cannot read %q", rest)
		}
		if tok := rest[:loc[1]]; strings.TrimSpace(tok) != "" {
			toks = append(toks, tok)
		}
		rest = rest[loc[1]:]
	}
	ref := &promRef{metrics: map[string][]string{}, values: map[string][]string{}}
	isIdent := func(s string) bool { return promIdent.MatchString(s) }
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tok == "[": // a range or subquery: durations and Grafana variables
			for i < len(toks) && toks[i] != "]" {
				i++
			}
		case tok == "by" || tok == "without" || tok == "on" || tok == "ignoring" ||
			((tok == "group_left" || tok == "group_right") && next == "("):
			if next != "(" {
				return nil, fmt.Errorf("%s without a label list", tok)
			}
			var agg *promAggregation
			if n := len(ref.aggregations); n > 0 && (tok == "by" || tok == "without") && i > 0 && toks[i-1] == ref.aggregations[n-1].op {
				agg = &ref.aggregations[n-1]
				agg.clause = tok
			}
			for i += 2; i < len(toks) && toks[i] != ")"; i++ {
				if toks[i] != "," {
					ref.grouping = append(ref.grouping, toks[i])
					if agg != nil {
						agg.labels = append(agg.labels, toks[i])
					}
				}
			}
		case slices.Contains(promKeywords, strings.ToLower(tok)):
		case isIdent(tok) && (next == "(" || next == "by" || next == "without"):
			if !slices.Contains(promFunctions, tok) {
				return nil, fmt.Errorf("unknown function %s", tok)
			}
			if slices.Contains(promAggregators, tok) {
				ref.aggregations = append(ref.aggregations, promAggregation{op: tok})
			}
		case isIdent(tok):
			labels := []string{}
			sel := promSelector{metric: tok}
			if next == "{" {
				for i += 2; i < len(toks) && toks[i] != "}"; i++ {
					if toks[i] == "," {
						continue
					}
					if i+2 >= len(toks) {
						return nil, fmt.Errorf("unfinished matcher in %s", tok)
					}
					name, op, value := toks[i], toks[i+1], toks[i+2]
					labels = append(labels, name)
					v, err := strconv.Unquote(value)
					if err != nil {
						return nil, fmt.Errorf("matcher %s%s%s of %s: the value is no string", name, op, value, tok)
					}
					if op == "=" {
						ref.values[name] = append(ref.values[name], v)
					}
					sel.matchers = append(sel.matchers, promMatcher{name, op, v})
					i += 2
				}
			}
			ref.metrics[tok] = append(ref.metrics[tok], labels...)
			ref.selectors = append(ref.selectors, sel)
		case tok == "{":
			return nil, fmt.Errorf("a selector without a metric name")
		}
	}
	if len(ref.metrics) == 0 {
		return nil, fmt.Errorf("no series")
	}
	return ref, nil
}

// check tells what in an expression the worker does not expose.
func (s seriesSet) check(expr string) []string {
	ref, err := parseProm(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	allLabels := map[string]bool{}
	for _, labels := range s {
		for l := range labels {
			allLabels[l] = true
		}
	}
	for _, l := range targetLabels {
		allLabels[l] = true
	}
	for _, name := range sortedKeys(ref.metrics) {
		labels, ok := s[name]
		if !ok {
			problems = append(problems, "no series "+name+" in internal/metrics")
			continue
		}
		for _, l := range ref.metrics[name] {
			if !labels[l] && !slices.Contains(targetLabels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", name, l))
			}
		}
	}
	for _, l := range ref.grouping {
		if !allLabels[l] {
			problems = append(problems, "no series has a label "+l)
		}
	}
	for _, v := range ref.values["reason"] {
		if !slices.Contains(schemas.Reasons(), schemas.Reason(v)) {
			problems = append(problems, fmt.Sprintf("reason %q is none of schemas.Reasons()", v))
		}
	}
	for _, sel := range ref.selectors {
		for _, m := range sel.matchers {
			// The consumer gauges' row of the consumer as a whole has the operation "".
			if m.label != "operation" || m.op != "=" || frontpay.Operation(m.value).Valid() ||
				(m.value == "" && strings.HasPrefix(sel.metric, "frontpay_consumer_")) {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: operation %q is none of frontpay.Operations()", sel.metric, m.value))
		}
	}
	return problems
}

// reads tells whether an expression reads a series that has the label.
func (s seriesSet) reads(ref *promRef, label string) bool {
	for name := range ref.metrics {
		if s[name][label] {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// Prometheus alerts

type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert"`
	Record        string            `json:"record"`
	Expr          string            `json:"expr"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
}

const alertsFile = "prometheus/alerts.yaml"

func alertRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	return rules
}

// TestAlerts: every alert reads series the worker exposes, has a severity, a summary, a
// description and a runbook section that exists, and together they watch what the operators
// must hear of. Every alert on series labelled merchant fires per merchant: each of its
// aggregations keeps the label (by (merchant, ...)), and its summary names the merchant.
func TestAlerts(t *testing.T) {
	series := exposedSeries(t)
	rules := alertRules(t)
	job := worker(t, kubernetesBuilds[0])
	svc := only(t, job.objs, "Service").Metadata.Name
	seen := map[string]bool{}
	var all strings.Builder
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("%s: a rule that is no alert: %q", alertsFile, r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: alert %s twice", alertsFile, r.Alert)
		}
		seen[r.Alert] = true
		all.WriteString(r.Expr + "\n")
		for _, p := range series.check(r.Expr) {
			t.Errorf("%s: %s: %s", alertsFile, r.Alert, p)
		}
		if ref, err := parseProm(r.Expr); err == nil {
			for _, j := range ref.values["job"] {
				if j != svc {
					t.Errorf("%s: %s: job %q, but the ServiceMonitor's job is the Service's name %q", alertsFile, r.Alert, j, svc)
				}
			}
			if series.reads(ref, "merchant") {
				if len(ref.aggregations) == 0 {
					t.Errorf("%s: %s aggregates nothing: aggregate by (merchant, ...)", alertsFile, r.Alert)
				}
				for _, a := range ref.aggregations {
					if a.clause != "by" || !slices.Contains(a.labels, "merchant") {
						how := a.op
						if a.clause != "" {
							how += " " + a.clause + " (" + strings.Join(a.labels, ", ") + ")"
						}
						t.Errorf("%s: %s: %s does not keep the label merchant: aggregate by (merchant, ...)", alertsFile, r.Alert, how)
					}
				}
				if !strings.Contains(r.Annotations["summary"], "$labels.merchant") {
					t.Errorf("%s: %s: the summary does not name the merchant ($labels.merchant)", alertsFile, r.Alert)
				}
			}
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: %s: severity %q, want critical, warning or info", alertsFile, r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: %s has no %s annotation", alertsFile, r.Alert, a)
			}
		}
		if rb := r.Annotations["runbook_url"]; rb != "" {
			if file, ok := strings.CutPrefix(rb, repositoryFiles); !ok {
				t.Errorf("%s: %s: runbook_url %q is not a file of %s", alertsFile, r.Alert, rb, repositoryFiles)
			} else if err := checkAnchor(file); err != nil {
				t.Errorf("%s: %s: runbook_url: %v", alertsFile, r.Alert, err)
			}
		}
		if r.For != "" {
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: %s: for %q: %v", alertsFile, r.Alert, r.For, err)
			}
		}
	}
	mod, err := os.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^module (\S+)`).FindSubmatch(mod); m == nil || "https://"+string(m[1])+"/blob/main/" != repositoryFiles {
		t.Errorf("the runbooks' base %s is not the module's repository", repositoryFiles)
	}
	exprs := all.String()
	for _, watched := range []string{
		"frontpay_consumer_oldest_pending_seconds", "frontpay_consumer_pending", "frontpay_consumer_redelivered",
		"frontpay_dead_letters_total", `reason="outcome_unknown"`, `reason="unauthorized"`,
		"frontpay_api_request_duration_seconds_count{status=~\"401", "frontpay_rate_limit_wait_seconds_total",
		"frontpay_consumer_lag_up", "up{", "frontpay_commands_unworkable_total", "frontpay_takeovers_total",
	} {
		if !strings.Contains(exprs, watched) {
			t.Errorf("%s: no alert watches %s", alertsFile, watched)
		}
	}
}

// repositoryFiles is where the project's files are on the web: the base of the alerts'
// runbook_url (the module's path).
const repositoryFiles = "https://github.com/nordpay/frontpay-worker/blob/main/"

// headingRe finds the headings of a Markdown file.
var headingRe = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)

// checkAnchor checks a "deploy/README.md#anchor" link: the file exists and has the heading.
func checkAnchor(link string) error {
	file, anchor, ok := strings.Cut(strings.TrimSpace(link), "#")
	if !ok || anchor == "" {
		return fmt.Errorf("%q is not path#anchor", link)
	}
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		return err
	}
	for _, h := range headingRe.FindAllStringSubmatch(string(b), -1) {
		if githubAnchor(h[1]) == anchor {
			return nil
		}
	}
	return fmt.Errorf("%s has no heading with the anchor #%s", file, anchor)
}

// githubAnchor is the anchor GitHub gives a heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.ReplaceAll(heading, "`", "")) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAlertsPromtool checks the rules and runs their unit tests with promtool, where it is
// installed (Debian: apt-get install prometheus).
func TestAlertsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package has it)")
	}
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", "prometheus/alerts_test.yaml"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard

const dashboardFile = "grafana/frontpay-worker.json"

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr         string `json:"expr"`
		RefID        string `json:"refId"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// variable is a dashboard's template variable.
type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Definition string          `json:"definition"`
	Query      json.RawMessage `json:"query"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// TestDashboard: the dashboard is Grafana JSON whose every query reads series the worker
// exposes, and every metric of internal/metrics is on it. Its variables namespace and merchant
// choose several or all of their label's values, and every query filters by them wherever the
// series it reads have the label.
func TestDashboard(t *testing.T) {
	series := exposedSeries(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []variable `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("%s: uid %q title %q schemaVersion %d", dashboardFile, d.UID, d.Title, d.SchemaVersion)
	}
	variables := map[string]string{}
	for _, v := range d.Templating.List {
		variables[v.Name] = v.Type
	}
	if variables["datasource"] != "datasource" {
		t.Errorf("%s: no datasource variable", dashboardFile)
	}
	// The filters: each a variable named like its label, a query of the label's values, several
	// at once or All, which is .* so that it also matches the empty merchant of a one-merchant
	// deployment.
	filters := []string{"namespace", "merchant"}
	hasLabel := func(metric, label string) bool { return series[metric][label] || slices.Contains(targetLabels, label) }
	labelValues := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`)
	for _, label := range filters {
		i := slices.IndexFunc(d.Templating.List, func(v variable) bool { return v.Name == label })
		if i < 0 {
			t.Errorf("%s: no variable %s", dashboardFile, label)
			continue
		}
		v := d.Templating.List[i]
		if v.Type != "query" || !v.Multi || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("%s: variable %s: type %q, multi %v, includeAll %v, allValue %q; want a query, multi, with All as .*",
				dashboardFile, label, v.Type, v.Multi, v.IncludeAll, v.AllValue)
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query != v.Definition {
			t.Errorf("%s: variable %s: its query %s is not its definition %q", dashboardFile, label, v.Query, v.Definition)
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil || m[2] != label {
			t.Errorf("%s: variable %s: %q is not label_values(<series>, %s)", dashboardFile, label, v.Definition, label)
			continue
		}
		for _, problem := range series.check(m[1]) {
			t.Errorf("%s: variable %s: %s", dashboardFile, label, problem)
		}
		if ref, err := parseProm(m[1]); err == nil {
			for name := range ref.metrics {
				if !hasLabel(name, label) {
					t.Errorf("%s: variable %s: %s has no label %s", dashboardFile, label, name, label)
				}
			}
		}
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: panel %q: id %d is zero or not unique", dashboardFile, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q: no or a bad gridPos", dashboardFile, p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use the datasource variable", dashboardFile, p.Title)
			}
			refIDs := map[string]bool{}
			for _, q := range p.Targets {
				if refIDs[q.RefID] || q.RefID == "" {
					t.Errorf("%s: panel %q: refId %q is empty or not unique", dashboardFile, p.Title, q.RefID)
				}
				refIDs[q.RefID] = true
				for _, problem := range series.check(q.Expr) {
					t.Errorf("%s: panel %q: %s", dashboardFile, p.Title, problem)
				}
				ref, err := parseProm(q.Expr)
				if err != nil {
					continue
				}
				for m := range ref.metrics {
					used[m] = true
				}
				for _, sel := range ref.selectors {
					for _, label := range filters {
						if hasLabel(sel.metric, label) && !sel.has(label, "=~", "$"+label) {
							t.Errorf("%s: panel %q: %s does not filter by %s=~\"$%s\"", dashboardFile, p.Title, sel.metric, label, label)
						}
					}
				}
				for _, l := range regexp.MustCompile(`\{\{ *([a-zA-Z_]+) *\}\}`).FindAllStringSubmatch(q.LegendFormat, -1) {
					if !slices.Contains(ref.grouping, l[1]) {
						t.Errorf("%s: panel %q: legend {{%s}} is not a label the query keeps", dashboardFile, p.Title, l[1])
					}
				}
			}
		}
	}
	walk(d.Panels)
	for _, name := range sortedKeys(series) {
		if !strings.HasPrefix(name, "frontpay_") {
			continue
		}
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !used[name] && !used[family+"_bucket"] && !used[family+"_count"] && !used[family+"_sum"] && !used[family] {
			t.Errorf("%s: no panel shows %s", dashboardFile, name)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// README

// TestReadme: every deploy/ path the README names exists.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("deploy/[A-Za-z0-9_./*-]*[A-Za-z0-9_*/]").FindAllString(string(b), -1) {
		p := filepath.Join("..", m)
		if strings.Contains(m, "*") {
			if found, _ := filepath.Glob(p); len(found) == 0 {
				t.Errorf("README.md: %s matches no file", m)
			}
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("README.md names %s: %v", m, err)
		}
	}
}

// TestReadmeAlerts: the README's "What to watch" table lists the alerts of alerts.yaml, in its
// order, each linked to its runbook here, with the windows, thresholds and "for" durations of its
// rule; and it takes rate() or increase() of counters only, never of a gauge.
func TestReadmeAlerts(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### What to watch\n")
	if !ok {
		t.Fatal(`README.md has no section "What to watch"`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	rowRe := regexp.MustCompile(`(?m)^\| \[(\w+)\]\(deploy/README\.md#([\w-]+)\) \|(.*)$`)
	rows := rowRe.FindAllStringSubmatch(section, -1)
	rules := alertRules(t)
	if len(rows) != len(rules) {
		t.Errorf("README.md lists %d alerts, %s has %d", len(rows), alertsFile, len(rules))
	}
	windowRe := regexp.MustCompile(`\[(\d+[smhd])\]|offset (\d+[smhd])`)
	compareRe := regexp.MustCompile(`(==|>|<) *(\d+(?:\.\d+)?)\b`)
	for i, r := range rules {
		if i >= len(rows) {
			break
		}
		name, anchor, row := rows[i][1], rows[i][2], rows[i][3]
		if name != r.Alert {
			t.Errorf("README.md: alert %d is %s, %s has %s", i+1, name, alertsFile, r.Alert)
			continue
		}
		if anchor != githubAnchor(name) {
			t.Errorf("README.md: %s links to #%s", name, anchor)
		} else if err := checkAnchor("deploy/README.md#" + anchor); err != nil {
			t.Errorf("README.md: %s: %v", name, err)
		}
		var want []string
		if r.For != "" {
			want = append(want, "for "+r.For)
		}
		for _, m := range windowRe.FindAllStringSubmatch(r.Expr, -1) {
			want = append(want, m[1]+m[2])
		}
		for _, m := range compareRe.FindAllStringSubmatch(r.Expr, -1) {
			want = append(want, m[1]+" "+m[2])
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("README.md: the row of %s lacks %q of its rule: %s", name, w, row)
			}
		}
	}
	for _, m := range regexp.MustCompile(`\b(?:rate|irate|increase)\((\w+)`).FindAllStringSubmatch(section, -1) {
		if !regexp.MustCompile(`_(total|count|sum|bucket)$`).MatchString(m[1]) {
			t.Errorf("README.md: %s of %s, which is no counter: take deriv() of a gauge", m[0], m[1])
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Files

// readTree reads the files under dir that end in ext, by their slash-separated path under dir.
func readTree(t *testing.T, dir, ext string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ext) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// writeTree writes want under dir and removes the files of got that want lacks.
func writeTree(t *testing.T, dir string, want, got map[string][]byte) {
	t.Helper()
	for p, b := range want {
		file := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func mustJSON(t *testing.T, name string, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
