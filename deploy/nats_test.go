package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// The NATS definitions under nats/: what consumer.Topology makes, as files.

var update = flag.Bool("update", false, "rewrite deploy/nats/ from consumer.Topology")

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
	n := testworld.JetStream(t)
	nc, js := n.Conn, n.JS
	ctx := testworld.Context(t)

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
