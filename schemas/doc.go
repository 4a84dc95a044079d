// Package schemas is the worker's outside contract (CONTRACT.md sections 2, 3, 6 and 8) in two
// forms that the tests hold to each other: JSON Schema documents for publishers and consumers,
// and the Go code with which the worker reads commands and writes events.
//
// The files:
//   - command.schema.json, result.schema.json and status.schema.json describe the command, result
//     and status events (CloudEvents 1.0, structured JSON); data/<operation>.schema.json the data
//     of each operation's commands, from the blocks in data/defs.schema.json. All are draft 2020-12
//     and embedded in FS. Each $comment names in brackets the rules that the worker checks but JSON
//     Schema cannot express, such as [due-date] and [sum]; a schema accepts what breaks only those.
//   - command.go: ParseCommand, which checks a command's envelope, and its errors. data.go: a
//     command's data, read strictly into frontpay's request types and checked with their Validate.
//     tree.go: the JSON reader that refuses a member named twice and deep nesting, and the
//     canonical form behind Command.Fingerprint.
//   - event.go: Event, the data of result and status events, their constructors and their ids.
//   - subject.go: the NATS subjects of commands, results, status changes and dead letters.
//   - files.go: FS and the paths of the schemas in it, and BaseURI, the base of their $ids.
//   - binary.go: Structured, which turns a CloudEvents binary-mode message into the structured
//     command that ParseCommand reads.
//   - asyncapi.yaml: the whole interface (every channel, message and payload) as an AsyncAPI 3.0
//     document whose payloads refer to the JSON Schema documents by their $id. `make asyncapi`
//     validates it with the AsyncAPI parser (asyncapi/validate.mjs), and asyncapi_test.go holds its
//     channels to the streams of consumer.Topology.
//
// agreement_test.go runs the seed examples and an invalid case of every rule through both
// ParseCommand and the schemas, and requires the same verdict except for the rules a schema lists.
package schemas
