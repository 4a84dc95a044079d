// Package consumer is the heart of frontpay-worker: it consumes command events from JetStream,
// calls Front Payment at most once per idempotency key, and publishes one result event per
// command.
//
// # Files
//
//   - topology.go: the streams, the state bucket and the durable consumer (one per merchant).
//   - bucket.go: the state bucket's key spaces.
//   - worker.go: the Worker, its configuration and its run.
//   - owner.go: one worker at a time owns the commands (a pinned consumer), and how ownership
//     moves without breaking order.
//   - order.go: per-reservation order in the owner's memory, and the run queue.
//   - delivery.go: working on a delivery, and settling it: the one place that acks.
//   - record.go: the idempotency record, its states and the one table of transitions.
//   - process.go: what a command does at each state of its record.
//   - readback.go: deciding an unknown outcome by reading the reservation.
//   - lag.go: what the owner holds, for operators.
//   - replay.go: which failures to replay, and the replayed commands.
//   - merchants.go, unknown.go: several merchants: a merchant's consumer, and the answer to a
//     merchant the deployment does not know.
//   - observer.go, tracing.go: what the worker reports: metrics hooks and spans.
//   - forget.go: erasing what is stored about a reservation or order (frontpay-worker forget).
//
// # The idempotency state machine
//
// Every command has an idempotency key (its `idempotencykey`, or its `id`). The state bucket
// holds one record per key, and every write to it is a compare-and-swap on the record's
// revision, so two workers (a stale owner and the one that took over from it) can never both
// believe they own a key. A record also holds the command's operation and a fingerprint of its
// data: the same key with another operation or other data is an idempotency_conflict, answered
// without touching the record.
//
//	               (none)
//	                │   └── baseline refused ──────────────────────────────▶ failed
//	  first request │
//	                ▼          answer; read-back: applied or undecided
//	      ┌───▶ sending ─────────────────────────────────────────▶ succeeded | failed
//	retry │      │    ▲                                                          │  │
//	      │      │    └───────── replay of an outcome_unknown (reads back) ──────┘  │
//	      │      │ nothing sent, 429, resend; read-back: not applied                │
//	      │      ▼                                                                  │
//	      └── claimed ───────────── attempts spent ──────────────────────▶ failed   │
//	             ▲                                                                  │
//	             └───────────────── replay of another failure ──────────────────────┘
//
// sending and claimed also loop on themselves (hold): a take-over after the lease, a lease
// extended over a wait, a read-back that failed.
//
// The edges, each written by one method of claim (record.go) and checked against one table:
//
//   - none → sending (send): the first request is about to leave. Before it, the worker waits
//     for the rate limit and, where the read-back needs one, reads a baseline; the record is
//     created directly in sending, so a command that goes well costs two record writes: this
//     one, and its outcome with its event.
//   - none → failed (finish): the baseline read was refused (the reservation does not exist).
//   - sending → succeeded | failed (finish): the answer, or a read-back's verdict. The result
//     event is built and stored in the record, byte for byte, in the same write as the outcome,
//     before it is published. Every later delivery of the key, a redelivery or a duplicate,
//     publishes that same event (same id, so the stream drops the copy within its duplicate
//     window) and makes no call.
//   - sending → claimed (unsent): nothing reached the API (no connection, 429), sending again is
//     harmless (details, history, resends), or a read-back proved the request absent.
//   - claimed → sending (send): a retry, after the backoff.
//   - claimed → failed (finish): the attempts are spent, nothing in flight (upstream_unavailable).
//   - sending → sending, claimed → claimed (hold): another worker takes the key over after its
//     lease, the owner extends the lease over a wait, or records a read-back that failed.
//   - failed → claimed (replay): a replay of the failure the key ended with starts a new
//     generation, whose result events get new ids and whose requests a read-back marker of their
//     own.
//   - failed → sending (reopen): a replay of an outcome_unknown starts a new generation that
//     reads back against what the last request left (its marker or baseline) before anything is
//     sent: found → succeeded with no call; proved absent → claimed, then sent; still undecided,
//     or an operation that cannot be read back → failed, outcome_unknown again, with no call.
//   - succeeded: final. A replay of a succeeded key, or of an older failure, is a duplicate.
//
// The states:
//
//   - claimed: the worker owns the key until its lease runs out; no request of this generation is
//     at Front Payment.
//   - sending: written before the request leaves. From here the request may have reached Front
//     Payment, so nothing is ever sent again before a read-back (readback.go) decides. Submit,
//     session and order.create create something whose identifier only the lost answer held, so
//     their unknown outcomes are always outcome_unknown. Resend, details and history move no money
//     and are simply sent again (frontpay.Operation.Recovery is the policy).
//   - succeeded / failed: the outcome and its result event are recorded.
//
// Records written by the worker before this engine may be in state "published" (the event was
// out): they are read as succeeded or failed.
//
// # Leases and fencing
//
// A record names its owner and a lease: the owner's request deadline plus a margin for clock
// differences between replicas, extended over a wait for a retry or a read-back. Another worker
// takes a key over only once the lease has passed, and the owner's HTTP request is bounded by a
// context whose deadline ends before the lease does: a paused or cut-off worker that comes back
// cannot send after another has taken over, and its next write to the record fails its
// compare-and-swap. A worker that stops hands its keys back by shortening their leases.
//
// # Crash windows
//
// A crash (SIGKILL, power loss) may come at any instant. The standby takes the commands over
// within PinnedTTL and resets the consumer, so every unacked command comes back in stream order,
// and the record says where each stopped:
//
//  1. Before the record exists: nothing happened; the redelivery starts afresh.
//  2. Claimed (a retry's wait): nothing of this generation is in flight; the redelivery takes over
//     after the lease and sends.
//  3. Sending, request not yet sent, in flight, or answered but the answer not recorded: the
//     redelivery takes over after the lease and reads back before anything else. Read-back finds
//     the effect (succeeded, with the reference it carries), proves its absence (sent again), or
//     cannot tell (outcome_unknown).
//  4. Succeeded/failed, event not published: the redelivery publishes the recorded event.
//  5. Published, message not acked (or its ack lost): the redelivery publishes the recorded event
//     again, which the stream drops as a duplicate (within its window), and acks.
//  6. Ownership: a new owner that has not reset gets nothing of it in order; once reset, the next
//     command of a reservation starts only after the one before it has its result, so a command
//     redelivered after its successor started cannot happen.
//
// Every window is exercised by a test.
package consumer
