package deploy

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Dockerfile.

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
