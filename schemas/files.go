package schemas

import (
	"embed"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// BaseURI is the base of every schema's $id: where the repository serves the files of schemas/,
// and the URLs by which the AsyncAPI document (asyncapi.yaml) refers to them. The documents refer
// to each other relatively (data/reservation.capture.schema.json, defs.schema.json#/$defs/money),
// so a validator resolves them after loading FS with each file under BaseURI + its path.
const BaseURI = "https://raw.githubusercontent.com/nordpay/frontpay-worker/main/schemas/"

// The contract's documents in FS.
const (
	CommandSchema = "command.schema.json"
	ResultSchema  = "result.schema.json"
	StatusSchema  = "status.schema.json"
	// DefsSchema holds the building blocks that the data schemas share.
	DefsSchema = "data/defs.schema.json"
)

// FS holds the contract as JSON Schema (draft 2020-12) documents.
//
//go:embed *.schema.json data/*.schema.json
var FS embed.FS

// DataSchema returns the path in FS of the schema of an operation's command data.
func DataSchema(op frontpay.Operation) string { return "data/" + string(op) + ".schema.json" }
