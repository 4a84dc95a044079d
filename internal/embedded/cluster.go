package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterName is the name of the cluster StartCluster forms.
const ClusterName = "frontpay-embedded"

// clusterReadyTimeout bounds every wait for the cluster to be ready (start, restart).
const clusterReadyTimeout = 60 * time.Second

// Cluster is a JetStream cluster of embedded servers on loopback: for tests and benchmarks of the
// worker against replicated streams (FRONTPAY_REPLICAS=3). Every node keeps its client port,
// cluster port, name and store across Stop and Restart, so clients given URLs reconnect to it.
type Cluster struct {
	dir   string
	nodes []*clusterNode

	mu sync.Mutex // guards every node's ns
}

type clusterNode struct {
	name        string
	store       string
	clientPort  int
	clusterPort int
	ns          *server.Server // nil while stopped
}

// StartCluster starts an n-node JetStream cluster whose nodes keep their stores under dir
// (dir/<node name>), and waits until every node accepts connections and JetStream has a meta
// leader that sees every node.
func StartCluster(n int, dir string) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("embedded nats cluster: %d nodes", n)
	}
	if dir == "" {
		return nil, errors.New("embedded nats cluster: no store directory")
	}
	// Ports are chosen once, here, and passed explicitly, so that a restarted node comes back on
	// the same ones and the others' routes (and clients' URLs) still reach it.
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("embedded nats cluster: %w", err)
	}
	c := &Cluster{dir: dir}
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		c.nodes = append(c.nodes, &clusterNode{
			name:        name,
			store:       filepath.Join(dir, name),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		})
	}
	// Start every node before waiting for any: a JetStream cluster needs a quorum to elect.
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.WaitReady(clusterReadyTimeout); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// options builds a fresh Options for node i (the server keeps and edits what it is given).
func (c *Cluster) options(i int) *server.Options {
	nd := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.clientPort,
		JetStream:  true,
		StoreDir:   nd.store,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: server.MAX_PAYLOAD_SIZE, // as Start: a standard server's default
		Cluster: server.ClusterOpts{
			Name: ClusterName,
			Host: "127.0.0.1",
			Port: nd.clusterPort,
		},
	}
	if len(routes) > 0 {
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	return opts
}

// start starts node i and waits until it accepts client connections.
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[i]
	if nd.ns != nil {
		return fmt.Errorf("embedded nats cluster: %s is running", nd.name)
	}
	ns, err := server.NewServer(c.options(i))
	if err != nil {
		return fmt.Errorf("embedded nats cluster: %s: %w", nd.name, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("embedded nats cluster: %s not ready within 30s", nd.name)
	}
	nd.ns = ns
	return nil
}

// Len is the number of nodes, running or not.
func (c *Cluster) Len() int { return len(c.nodes) }

// URLs returns every node's client URL, comma-separated, as NATS_URL takes them; stopped nodes
// included, since they come back on the same port.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// URL returns node i's client URL.
func (c *Cluster) URL(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.nodes[i].clientPort)
}

// Name returns node i's server name.
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Server returns node i's server, nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].ns
}

// Running reports whether node i runs.
func (c *Cluster) Running(i int) bool { return c.Server(i) != nil }

// Leader returns the index of the node that is JetStream's meta leader, -1 when none is.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.ns != nil && nd.ns.Running() && nd.ns.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// Stop shuts node i down and waits until it has stopped; its store stays on disk. Stopping a
// stopped node does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	ns := c.nodes[i].ns
	c.nodes[i].ns = nil
	c.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// Restart starts a stopped node again on the same ports and store, and waits until the cluster is
// ready again: a meta leader that sees every running node, each of them current.
func (c *Cluster) Restart(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitReady(clusterReadyTimeout)
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// WaitReady waits until JetStream has a meta leader that counts every running node as an online
// peer, every running node's meta state is current, and every running node answers a JetStream
// request from a client.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	why := "no meta leader"
	for {
		ok, reason := c.metaReady()
		if ok {
			if reason = c.clientsReady(); reason == "" {
				return nil
			}
		}
		why = reason
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded nats cluster: not ready within %s: %s", timeout, why)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// metaReady checks the servers' JetStream meta state.
func (c *Cluster) metaReady() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var leader *server.Server
	running := 0
	for _, nd := range c.nodes {
		if nd.ns == nil {
			continue
		}
		running++
		if nd.ns.JetStreamIsLeader() {
			leader = nd.ns
		}
	}
	if leader == nil {
		return false, "no meta leader"
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) != running {
		return false, fmt.Sprintf("meta leader %s sees %d of %d running nodes (%v)", leader.Name(), len(peers), running, peers)
	}
	for _, nd := range c.nodes {
		if nd.ns != nil && (!nd.ns.JetStreamEnabled() || !nd.ns.JetStreamIsCurrent()) {
			return false, nd.name + " is not current"
		}
	}
	return true, ""
}

// clientsReady asks every running node for the account's JetStream information; "" when all
// answered.
func (c *Cluster) clientsReady() string {
	for i := range c.nodes {
		if !c.Running(i) {
			continue
		}
		if err := accountInfo(c.URL(i)); err != nil {
			return c.nodes[i].name + ": " + err.Error()
		}
	}
	return ""
}

func accountInfo(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// freePorts returns n distinct loopback ports that were free a moment ago. All listeners are held
// until every port is picked, so that none is handed out twice.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("choose a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
