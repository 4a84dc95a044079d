package consumer

// The state bucket (Topology.StateBucket) holds, by key prefix:
//
//	idem.<40 hex digits>   the idempotency record of a key (record.go): the first 20 bytes of the
//	                       SHA-256 of the idempotency key, so any text is a valid key
//	owner.<consumer>       what the owner of a consumer holds, written every few seconds
//	                       (lag.go), for `frontpay-worker lag`
//	merchant.<id>          where a merchant's consumer starts, or up to which sequence its commands
//	                       were answered as an unknown merchant's (merchants.go)
//	member.<instance>      a replica's heartbeat, for spreading merchants (internal/fleet)
//	status.<id>            a status change published (package status), by its event id
//	checkpoint.history     where the history poll has read up to (package status); with several
//	                       merchants checkpoint.history.<merchant>
//
// Every key outlives its last change by the bucket's TTL (StateTTL).
const (
	KeyPrefixRecord   = "idem."
	KeyPrefixOwner    = "owner."
	KeyPrefixMerchant = "merchant."
	KeyPrefixMember   = "member."
	KeyPrefixStatus   = "status."
	KeyCheckpoint     = "checkpoint.history"
)
