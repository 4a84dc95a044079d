# frontpay-worker: `make help` lists the targets.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.8.0
FUZZTIME    ?= 10s
BIN         := bin
# Stamped into the binaries (frontpay-worker version), as deploy/Dockerfile does.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILDINFO   := github.com/nordpay/frontpay-worker/internal/buildinfo
# The race detector's runtime sleeps a second before a process exits, so that a race found at
# that instant is still reported: a second for each package's test binary and each process a test
# runs. 50 ms is time enough for a report (golang/go#20364).
GORACE      ?= atexit_sleep_ms=50

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binaries into bin/, stamped with git's version and commit
	$(GO) build -ldflags "-X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)" -o $(BIN)/ ./cmd/...

.PHONY: test
test: ## Run every test with the race detector
	GORACE="$(GORACE)" $(GO) test -race -count=1 ./...

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (govulncheck, which needs the network, is make vulncheck)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

.PHONY: vulncheck
vulncheck: ## govulncheck; fails on a finding, warns when the vulnerability database is out of reach
	@$(GO) run $(GOVULNCHECK) ./... ; rc=$$?; \
	if [ $$rc -eq 3 ]; then exit 1; fi; \
	if [ $$rc -ne 0 ]; then echo "govulncheck could not run (exit $$rc): is vuln.go.dev reachable?"; fi

.PHONY: asyncapi
asyncapi: ## Validate schemas/asyncapi.yaml with the AsyncAPI parser (node and npm; packages from the lock file)
	cd schemas/asyncapi && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && node validate.mjs

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each
	$(GO) test -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME) ./schemas
	$(GO) test -run '^$$' -fuzz '^FuzzStructured$$' -fuzztime $(FUZZTIME) ./schemas
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResponse$$' -fuzztime $(FUZZTIME) ./frontpay
	$(GO) test -run '^$$' -fuzz '^FuzzNumber$$' -fuzztime $(FUZZTIME) ./frontpay
	$(GO) test -run '^$$' -fuzz '^FuzzCallbackQuery$$' -fuzztime $(FUZZTIME) ./status

.PHONY: run
run: ## Run the worker on an embedded NATS server against a local sandbox
	$(GO) run ./cmd/frontpay-worker dev

.PHONY: sandbox
sandbox: ## Serve the Front Payment sandbox on 127.0.0.1:8099
	$(GO) run ./cmd/frontpay-worker sandbox

.PHONY: demo
demo: ## Drive one reservation through the sandbox and print what happened
	$(GO) run ./cmd/frontpay-worker demo

.PHONY: chaos
chaos: ## Worker processes SIGKILLed, NATS restarted, API faults: no command lost, no effect doubled
	$(GO) run ./cmd/chaos

.PHONY: bench
bench: ## Run the benchmark program on a quiet machine (about 12 min; writes bench.json)
	$(GO) run ./cmd/bench -json bench.json

.PHONY: deploy-check
deploy-check: ## Check deploy/ against the code, and the alerts with promtool
	$(GO) test -count=1 ./deploy
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml

.PHONY: deploy-update
deploy-update: ## Regenerate deploy/nats/ from consumer.Topology
	$(GO) test -count=1 ./deploy -run 'TestNATSDefinitions$$' -update
