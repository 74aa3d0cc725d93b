package peer

import "time"

// An HLC is a hybrid logical clock value: milliseconds since the Unix epoch
// in the high 48 bits, a logical counter in the low 16. It orders writes
// like wall clocks do, but never goes backwards on a node and always moves
// past every clock the node has seen.
type HLC int64

// hlcAt is the smallest HLC of a wall-clock time.
func hlcAt(t time.Time) HLC { return HLC(t.UnixMilli() << 16) }

// Time returns the wall-clock part of an HLC.
func (h HLC) Time() time.Time { return time.UnixMilli(int64(h) >> 16).UTC() }
