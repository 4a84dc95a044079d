package schemas

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// The subject suffixes of CONTRACT.md sections 1, 6 and 8. An event's type is its subject without
// the prefix.
const (
	requested     = ".requested"
	succeeded     = ".succeeded"
	failed        = ".failed"
	statusChanged = ".status.changed"
	deadLetter    = "frontpay.deadletter."
)

// CommandSubject is where commands of op arrive: <prefix><op>.requested. The prefix is
// FRONTPAY_SUBJECT_PREFIX, empty or ending in a dot.
func CommandSubject(prefix string, op frontpay.Operation) string {
	return prefix + string(op) + requested
}

// ResultSubject is where the outcome of a command of op goes: <prefix><op>.succeeded or .failed.
func ResultSubject(prefix string, op frontpay.Operation, ok bool) string {
	if ok {
		return prefix + string(op) + succeeded
	}
	return prefix + string(op) + failed
}

// StatusSubject is where status changes of a resource ("reservation" or "order") go:
// <prefix><resource>.status.changed.
func StatusSubject(prefix, resource string) string { return prefix + resource + statusChanged }

// DeadLetterSubject is where a message that is not a JSON object is copied:
// <prefix>frontpay.deadletter.<original>, original being the full subject it arrived on.
func DeadLetterSubject(prefix, original string) string { return prefix + deadLetter + original }

// OpFromSubject returns the operation whose commands arrive on subject, and false when subject is
// not <prefix><op>.requested for one of the twelve operations.
func OpFromSubject(prefix, subject string) (frontpay.Operation, bool) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, requested)
	op := frontpay.Operation(name)
	return op, ok && op.Valid()
}

// CheckPrefix returns an error unless prefix can be FRONTPAY_SUBJECT_PREFIX: empty, or subject
// tokens ending in a dot, such as "shop1.".
func CheckPrefix(prefix string) error {
	if prefix != "" && (!strings.HasSuffix(prefix, ".") || strings.HasPrefix(prefix, ".") ||
		strings.ContainsAny(prefix, " *>\t\r\n") || strings.Contains(prefix, "..")) {
		return fmt.Errorf("subject prefix %q: must be empty or subject tokens ending in a dot, like \"shop1.\"", prefix)
	}
	return nil
}

// merchantID is the form of a merchant's id in FRONTPAY_MERCHANTS_FILE (CONTRACT.md section 9).
var merchantID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// MerchantPrefix returns the prefix of a merchant's subjects, <prefix><merchant>.: a merchant's
// subjects are those of a one-merchant deployment with that prefix. It returns an error unless
// merchant is a merchant id (lower-case letters, digits, - and _, at most 32, not starting with
// - or _).
func MerchantPrefix(prefix, merchant string) (string, error) {
	if !merchantID.MatchString(merchant) {
		return "", fmt.Errorf("merchant %q: must match %s", merchant, merchantID)
	}
	return prefix + merchant + ".", nil
}
