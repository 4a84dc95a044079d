// Package embedded runs a NATS server with JetStream inside the process: the worker's default when
// NATS_URL is empty, and the server every test starts on a random loopback port.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server. The zero value listens on a random loopback port and keeps its
// store in a directory the caller must provide.
type Options struct {
	// StoreDir holds JetStream's files; required, and it survives a restart.
	StoreDir string
	// Host and Port to listen on; Port 0 picks a free one.
	Host string
	Port int
	// ServerName names the server; it must stay the same across restarts that reuse StoreDir.
	ServerName string
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: no store directory")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if o.ServerName == "" {
		o.ServerName = "frontpay-embedded"
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		// A standard server's default (1 MiB), so that what works here works in production.
		MaxPayload: server.MAX_PAYLOAD_SIZE,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready within 30s")
	}
	return &Server{ns: ns}, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Server exposes the underlying server, e.g. for in-process connections.
func (s *Server) Server() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped; the store stays on disk.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
