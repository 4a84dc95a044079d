package embedded

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesANodeRestart starts three nodes, keeps an R3 stream writable while one node
// is down, and checks that the node comes back on the same URL with every message.
func TestClusterSurvivesANodeRestart(t *testing.T) {
	c, err := StartCluster(3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	if c.Leader() < 0 {
		t.Fatal("no meta leader after StartCluster")
	}
	if got := strings.Count(c.URLs(), ","); got != 2 {
		t.Fatalf("URLs %q", c.URLs())
	}
	checkMaxPayload(t, c.URL(0))

	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream replicas: config %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			// A stopped node's stream may need a moment to elect a new leader: retry until the
			// deadline.
			for {
				_, err := js.Publish(ctx, "t.x", []byte("x"))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	publish(10)

	// Stop the meta leader: the hardest node to lose.
	stopped := c.Leader()
	c.Stop(stopped)
	if c.Running(stopped) || c.Server(stopped) != nil {
		t.Fatal("stopped node still running")
	}
	c.Stop(stopped) // harmless
	if err := c.WaitReady(time.Minute); err != nil {
		t.Fatalf("two nodes: %v", err)
	}
	if l := c.Leader(); l < 0 || l == stopped {
		t.Fatalf("leader after stop: %d (stopped %d)", l, stopped)
	}
	publish(10)

	if err := c.Restart(stopped); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(stopped); err == nil {
		t.Fatal("restarting a running node succeeded")
	}
	publish(10)

	// The restarted node, asked alone on its old URL, catches up with all 30 messages.
	nc2, err := nats.Connect(c.URL(stopped))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if nc2.ConnectedServerName() != c.Name(stopped) {
		t.Fatalf("connected to %s, want %s", nc2.ConnectedServerName(), c.Name(stopped))
	}
	js2, _ := jetstream.New(nc2)
	for {
		info, err = s.Info(ctx)
		if err == nil && info.State.Msgs == 30 && info.Cluster != nil && len(info.Cluster.Replicas) == 2 {
			current := true
			for _, r := range info.Cluster.Replicas {
				current = current && r.Current
			}
			if current {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after restart: %v %+v", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := js2.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream on the restarted node: %v", err)
	}
}

func TestStartClusterRefusesBadArguments(t *testing.T) {
	if _, err := StartCluster(0, t.TempDir()); err == nil {
		t.Fatal("0 nodes")
	}
	if _, err := StartCluster(3, ""); err == nil {
		t.Fatal("no directory")
	}
}
