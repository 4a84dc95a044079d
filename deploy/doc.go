// Package deploy holds what it takes to run frontpay-worker: the NATS streams, key-value bucket
// and consumers as nats CLI definitions (nats/), the NATS users of a deployment of several
// merchants (nats/accounts/), a container image (Dockerfile), Kubernetes manifests (k8s/),
// Prometheus alerts (prometheus/) and a Grafana dashboard (grafana/). README.md says how to
// apply them.
//
// The package has no code of its own, only tests. They generate the NATS definitions from
// consumer.Topology (go test ./deploy -update rewrites them) and check every manifest against
// the code it describes: the environment variables of internal/app/config.go, the HTTP
// endpoints, and the metrics of internal/metrics. The NATS users are checked on a server started
// from their file, with real connections.
package deploy
