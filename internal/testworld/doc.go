// Package testworld is the world the tests run in, shared by every package's tests so that each
// sets it up the same way: an embedded JetStream server over TCP (JetStream), the Front Payment
// sandbox over real HTTP (Sandbox, Calls), one way to wait (WaitFor, Patience), command events
// as shops publish them and as no shop should (NewCommand, Publish, ForgeFailure), a function
// such as Worker.Run running until the test ends (Run), a buffer for concurrent logs
// (SyncBuffer), and the goroutine-leak check of a package's TestMain (Main).
//
// It imports none of the packages whose tests use it (consumer, status, publisher, client,
// metrics), so that their internal tests can: where it needs the worker's topology it takes any
// Topology, which consumer.Topology is. Package client builds valid commands checked with the
// worker's rules; NewCommand is for the envelopes a test must build by hand.
package testworld
