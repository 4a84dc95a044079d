// Package consumer is the heart of frontpay-worker: it consumes command events from JetStream,
// calls Front Payment at most once per idempotency key, and publishes one result event per
// command.
//
// # Streams and consumers
//
// Topology names and configures everything the worker needs: the command, result and dead-letter
// streams, the state bucket (a key-value bucket) and one durable pull consumer per operation, plus
// the sequencer consumer that keeps commands of one reservation in publish order (order.go).
//
// # The idempotency state machine
//
// Every command has an idempotency key (its `idempotencykey`, or its `id`). The state bucket holds
// one record per key, and every write to it is a compare-and-swap on the record's revision, so two
// workers (replicas, or a stale worker and the one that took over from it) can never both believe
// they own a key. A record also holds a fingerprint of the command's data: the same key with other
// data is an idempotency_conflict, answered without touching the record.
//
//	(none) ──claim──▶ claimed ──record "sending"──▶ sending ──answer──▶ succeeded | failed ──publish──▶ published
//	                     ▲                             │
//	                     └── nothing sent / 429 ───────┤ (retry after backoff, up to FRONTPAY_MAX_ATTEMPTS)
//	                     └── read-back: not applied ───┘ (unknown outcome: timeout, cut connection, 5xx)
//
// The states:
//
//   - claimed: the worker owns the key until its lease runs out; no request of this generation is
//     at Front Payment. For capture, charge, refund, cancel and complete it reads the reservation
//     (the baseline for a read-back) while claimed.
//   - sending: written before the request leaves. From here the request may have reached Front
//     Payment, so nothing is ever sent again before a read-back (readback.go) decides: applied →
//     succeeded (the result is built from what was read); not applied → claimed, and the request
//     may be sent again; undecided → failed with outcome_unknown, and no further call. Submit,
//     session and order.create create something whose identifier only the lost answer held, so
//     their unknown outcomes are always outcome_unknown. Resend, details and history move no money
//     and are simply sent again.
//   - succeeded / failed: the result event is built and stored in the record, byte for byte, before
//     it is published. Every later delivery of the key, a redelivery or a duplicate, publishes that
//     same event (same id, so the stream drops the copy within its duplicate window) and makes no
//     call.
//   - published: the event is on the result stream; the command is then acked.
//
// A replayed command (extension `replayof`, the id of the failure event the key ended with)
// re-opens a failed key as a new generation, whose result events have ids of their own. A
// succeeded key is never re-opened, and a replay of an older failure is answered like a duplicate.
//
// # Leases and fencing
//
// A record names its owner and a lease: the owner's request deadline plus a margin for clock
// differences between replicas. Another worker takes a key over only once the lease has passed,
// and the owner's HTTP request is bounded by a context whose deadline ends before the lease does:
// a paused or cut-off worker that comes back cannot send after another has taken over, and its
// next write to the record fails its compare-and-swap.
//
// # Crash windows
//
// A crash (SIGKILL, power loss) may come at any instant. The command's message is then
// redelivered after AckWait, and the record says where it stopped:
//
//  1. Before the record exists: nothing happened; the redelivery starts afresh.
//  2. Claimed (baseline read or not): nothing was sent; the redelivery takes over after the lease
//     and sends.
//  3. Sending, request not yet sent, in flight, or answered but the answer not recorded: the
//     redelivery takes over after the lease and reads back before anything else. Read-back finds
//     the effect (succeeded, with the reference it carries), proves its absence (sent again), or
//     cannot tell (outcome_unknown).
//  4. Succeeded/failed, event not published: the redelivery publishes the recorded event.
//  5. Published, message not acked (or its ack lost): the redelivery publishes the recorded event
//     again, which the stream drops as a duplicate, and acks.
//  6. Sequencer: a command is removed from its reservation's queue after its result is published
//     and before its ack; a crash in between is window 5, and removing is idempotent.
//
// Every window is exercised by a test.
package consumer
