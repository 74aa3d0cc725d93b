// Package wire holds the lowest pieces shared by package protocol and
// package dbsync: the bad-request sentinel errors and the JSON scanner of
// the wire format. It imports only the standard library.
//
// The sentinels are exported to users as dbsync.ErrBadRequest,
// dbsync.ErrUnknownTable and dbsync.ErrUnknownColumn (the same values).
package wire

import (
	"errors"
	"fmt"
)

// Bad-request errors; see their documentation in package dbsync.
var (
	ErrBadRequest    = errors.New("dbsync: bad request")
	ErrUnknownTable  = fmt.Errorf("%w: unknown table", ErrBadRequest)
	ErrUnknownColumn = fmt.Errorf("%w: unknown column", ErrBadRequest)
)
