// Package testworld is the world the tests run in, shared by every package's tests so that each
// sets it up the same way:
//
//   - JetStream: an embedded JetStream server over TCP on a random loopback port, its store in a
//     directory of the test's, a connection, and on request the worker's topology; Restart
//     stops and starts it on the same port and store. Server starts a nats-server of the test's
//     own options (TLS, accounts), Connect a connection of the test's own. ReadStream reads
//     the events a stream holds.
//   - Sandbox: the Front Payment sandbox over real HTTP; Calls counts the requests that reach it,
//     a Front those of one way in. PaidReservation sets up a reservation to capture (SubmitData
//     is its submit). Serve and Get for other HTTP ends.
//   - WaitFor: the one way to wait, with one deadline (Patience) and one poll interval; Context
//     for calls that need a deadline.
//   - NewCommand, Publish, Store, ForgeFailure: command envelopes as a test builds them by hand,
//     valid or hostile (a valid one can come from package client, which checks it), and the
//     failure event no worker recorded.
//   - Run and Go: a function of the shape of consumer.Worker.Run, running until the test ends.
//   - SyncBuffer, SchemaError, and Main, the goroutine-leak check of a package's TestMain.
//
// It imports none of the packages whose tests use it (consumer, status, publisher, client,
// internal/metrics), so that their internal tests can: where it needs the worker's topology it
// takes a Topology, which consumer.Topology is. StartJetStream, StartSandbox and Go take no test:
// they serve a world that a TestMain sets up for a whole package (package client's examples), or
// a program's (cmd/bench).
package testworld
