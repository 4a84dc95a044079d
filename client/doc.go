// Package client publishes commands to frontpay-worker and waits for their results: the Go side of
// the contract (CONTRACT.md sections 1 to 3 and 9) for shops.
//
// A command is built from the frontpay request types by one builder per operation (Capture,
// Refund, SubmitReservation, …), named as frontpay.Client's methods are. Each builder checks the
// command with the worker's own rules (schemas.ParseCommand), so what the worker would answer with
// invalid_command is refused before it is published, with the same *schemas.InvalidError.
//
//	c, err := client.New(nc, client.WithPrefix("shop1."))
//	cmd, err := client.Capture("RES1943140879", &frontpay.CaptureRequest{…},
//		client.Key("capture-RES1943140879-1"), client.Correlation("order-88412"))
//	err = c.Publish(ctx, cmd)
//	res, err := c.Await(ctx, cmd.ID()) // *Result, or a *Failure error
//
// Money safety rests on the idempotency key: give every command that moves money a key of its own
// that you can compute again (from the order and the parcel, say), and publish the same key when
// you retry. Publishing the same *Command again is always safe: its id and key stay the same.
// Without Key the key is the command's random id, so a command built again is a new command.
//
// Await returns the result of a command that this Client published: a *Result for a success,
// with the API's data decoded into the frontpay type of the operation where there is one, and a
// *Failure (an error) for a failure.
package client
