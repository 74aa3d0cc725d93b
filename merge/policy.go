package merge

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strconv"
	"time"

	"github.com/go-dbsync/dbsync/protocol"
)

// Conflict kinds, as reported in Conflict.Kind and in dbsync.Event.Conflicts.
const (
	// Same row changed on both sides (merge.md M3–M6).
	KindUpdateUpdate = "update_update" // remote insert or update, local insert or update
	KindUpdateDelete = "update_delete" // remote insert or update, local delete
	KindDeleteUpdate = "delete_update" // remote delete, local insert or update
	KindDeleteDelete = "delete_delete" // both deleted
	// Foreign keys (merge.md D1, D2).
	KindDependency         = "dependency"          // remote delete of a row local changes reference
	KindReversedDependency = "reversed_dependency" // local delete of a row remote changes reference
	// Unique values (merge.md U1–U4) and integer keys (K1).
	KindUniqueSwap = "unique_swap"
	KindRenumber   = "insert_renumber"
)

// Resolution is a policy's answer to a conflict.
type Resolution uint8

// Resolutions.
const (
	// KeepLocal keeps the node's change: the remote change is not applied
	// locally, and the node's change is pushed over it.
	KeepLocal Resolution = iota + 1
	// TakeRemote applies the server's state and discards the node's change.
	TakeRemote
	// UseRow writes Decision.Row locally and pushes it as the row's new
	// state (a merge of both sides).
	UseRow
)

// Conflict is a row changed on both sides, as handed to a [Policy].
type Conflict struct {
	Kind   string
	Table  string
	Key    string
	Remote protocol.Command
	Local  protocol.Command
	// RemoteRow is the server's row (nil for a remote delete); LocalRow
	// the node's row (nil for a local delete).
	RemoteRow protocol.Row
	LocalRow  protocol.Row
}

// Decision is how a conflict is resolved.
type Decision struct {
	Resolution Resolution
	// Row is the row to write with UseRow.
	Row protocol.Row
}

// Policy resolves same-row conflicts for a table. Foreign key and unique
// value rules (D1, D2, U1–U4) are structural and do not consult it.
type Policy interface {
	Resolve(c *Conflict) Decision
}

// PolicyFunc adapts a function to [Policy].
type PolicyFunc func(c *Conflict) Decision

// Resolve implements Policy.
func (f PolicyFunc) Resolve(c *Conflict) Decision { return f(c) }

// Default is python-sync-db's policy (merge.md M3–M5): the node's change
// wins over the server's on the same row, and a change beats a delete
// (a row deleted on one side and changed on the other comes back).
var Default Policy = PolicyFunc(func(c *Conflict) Decision {
	switch c.Kind {
	case KindUpdateDelete:
		return Decision{Resolution: TakeRemote}
	default:
		return Decision{Resolution: KeepLocal}
	}
})

// ServerWins applies the server's state on every conflict.
var ServerWins Policy = PolicyFunc(func(*Conflict) Decision { return Decision{Resolution: TakeRemote} })

// ClientWins keeps the node's change on every conflict, deletes included.
var ClientWins Policy = PolicyFunc(func(*Conflict) Decision { return Decision{Resolution: KeepLocal} })

// LastWriteWins resolves update/update conflicts by a timestamp column: the
// row whose column holds the later time (RFC 3339) or the greater number
// wins; on a tie, or when a value is missing or unreadable, the server's
// row wins, so every node decides the same. Conflicts with a delete on
// one side follow [Default].
func LastWriteWins(column string) Policy {
	return PolicyFunc(func(c *Conflict) Decision {
		if c.Kind != KindUpdateUpdate {
			return Default.Resolve(c)
		}
		// A missing row (nil) has no value: the server's row wins.
		if newer(c.LocalRow[column], c.RemoteRow[column]) {
			return Decision{Resolution: KeepLocal}
		}
		return Decision{Resolution: TakeRemote}
	})
}

// newer reports whether a is strictly later than b.
func newer(a, b json.RawMessage) bool {
	a, b = bytes.TrimSpace(a), bytes.TrimSpace(b)
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	if a[0] == '"' && b[0] == '"' {
		var sa, sb string
		if json.Unmarshal(a, &sa) != nil || json.Unmarshal(b, &sb) != nil {
			return false
		}
		ta, errA := time.Parse(time.RFC3339Nano, sa)
		tb, errB := time.Parse(time.RFC3339Nano, sb)
		if errA != nil || errB != nil {
			return false
		}
		return ta.After(tb)
	}
	// Integers exactly: a float64 cannot tell apart clocks above 2^53 (Unix
	// nanoseconds) that differ by less than 256.
	ia, errA := strconv.ParseInt(string(a), 10, 64)
	ib, errB := strconv.ParseInt(string(b), 10, 64)
	if errA == nil && errB == nil {
		return ia > ib
	}
	ua, errA := strconv.ParseUint(string(a), 10, 64)
	ub, errB := strconv.ParseUint(string(b), 10, 64)
	if errA == nil && errB == nil {
		return ua > ub
	}
	// Wider integers (a big.Int column), up to a sane length.
	if len(a) <= 1024 && len(b) <= 1024 {
		ba, okA := new(big.Int).SetString(string(a), 10)
		bb, okB := new(big.Int).SetString(string(b), 10)
		if okA && okB {
			return ba.Cmp(bb) > 0
		}
	}
	fa, errA := strconv.ParseFloat(string(a), 64)
	fb, errB := strconv.ParseFloat(string(b), 64)
	return errA == nil && errB == nil && fa > fb
}
