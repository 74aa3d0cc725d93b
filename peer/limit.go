package peer

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/go-dbsync/dbsync"
)

// LimitError reports pages of a peer that pass a bound of the receiving
// end: a page larger than peerhttp.Peer.MaxAnswer, than a stream's
// Config.MaxFrame or than peerhttp.Config.MaxPageBytes (a row larger than
// it can never be received: raise the bound past the row, or shrink the
// row), or a session's pages over a stream's Config.MaxReceive, or a
// pull's over Config.MaxPullBytes. Nothing of them was applied, and each sync
// fails the same until the bound is raised. It wraps dbsync.ErrTooLarge.
type LimitError struct {
	// Limit names the setting, e.g. "peerhttp.Peer.MaxAnswer".
	Limit string
	// Max is its value, in bytes.
	Max int64
	// Size is the bytes that passed it, or 0 when they were not read:
	// past the bound, the rest is not.
	Size int64
	// Table and ID name the first row of the page that passed the bound,
	// as that page's first bytes show it ("": not shown). The rest of the
	// page was not read, so its signature or MAC was not checked: they
	// come from the peer, unauthenticated, and are for the message only.
	Table, ID string
	// Row is true when that row alone passes the bound: a page holds at
	// least one row, so it can never be received under it.
	Row bool
}

// Error names the bound, its value and the row.
func (e *LimitError) Error() string {
	var what string
	switch {
	case e.Row:
		what = fmt.Sprintf("the row %q %q alone is", e.Table, e.ID)
	case e.Table != "":
		what = fmt.Sprintf("the pages received, at row %q %q, are", e.Table, e.ID)
	default:
		what = "the pages received are"
	}
	if e.Size > 0 {
		what += fmt.Sprintf(" %d bytes,", e.Size)
	}
	return fmt.Sprintf("peer: %s more than %s (%d bytes) allows: nothing applied, raise the bound", what, e.Limit, e.Max)
}

// Unwrap returns dbsync.ErrTooLarge.
func (e *LimitError) Unwrap() error { return dbsync.ErrTooLarge }

// NameRow sets e's Table and ID from page, the first bytes of an encoded
// Batch (cut anywhere): the table and identity of its first change, when
// its first 4 KiB hold them. It returns e.
func (e *LimitError) NameRow(page []byte) *LimitError {
	e.Table, e.ID = firstChange(page[:min(len(page), maxHead)])
	return e
}

// atFirst names b's first change in e, if it has one, and returns e.
func (e *LimitError) atFirst(b *Batch) *LimitError {
	if len(b.Changes) > 0 {
		e.Table, e.ID = b.Changes[0].Table, b.Changes[0].ID
	}
	return e
}

// maxHead bounds the bytes of a page NameRow reads.
const maxHead = 4 << 10

// firstChange reads the table and identity of the first change of an
// encoded Batch cut anywhere ("" each when the bytes do not hold them).
// It reads tokens only as far as it needs.
func firstChange(page []byte) (table, id string) {
	dec := json.NewDecoder(bytes.NewReader(page))
	tok := func() (json.Token, bool) {
		t, err := dec.Token()
		return t, err == nil
	}
	if t, ok := tok(); !ok || t != json.Delim('{') {
		return "", ""
	}
	for dec.More() {
		k, ok := tok()
		if !ok {
			return "", ""
		}
		if k != "changes" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return "", ""
			}
			continue
		}
		if t, ok := tok(); !ok || t != json.Delim('[') {
			return "", ""
		}
		if t, ok := tok(); !ok || t != json.Delim('{') {
			return "", ""
		}
		for dec.More() && (table == "" || id == "") {
			k, ok := tok()
			if !ok {
				break
			}
			switch k {
			case "table", "id":
				v, ok := tok()
				s, isString := v.(string)
				if !ok || !isString {
					return table, id
				}
				if k == "table" {
					table = s
				} else {
					id = s
				}
			default:
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return table, id
				}
			}
		}
		return table, id
	}
	return "", ""
}
