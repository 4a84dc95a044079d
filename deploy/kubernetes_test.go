package deploy

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/internal/metrics"
	"github.com/nordpay/frontpay-worker/schemas"
	"sigs.k8s.io/yaml"
)

// The Kubernetes manifests under k8s/: the base and its overlays, built as kustomize builds them.

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
			// 2 minutes while a NATS cluster elects its leaders (internal/app/app.go).
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
