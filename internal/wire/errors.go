// Package wire holds the lowest pieces shared by package protocol and
// package dbsync: the sentinel errors lower layers return (bad requests,
// foreign keys) and the JSON scanner of the wire format. It imports only
// the standard library.
//
// The sentinels are exported to users as dbsync.ErrBadRequest,
// dbsync.ErrUnknownTable, dbsync.ErrUnknownColumn and dbsync.ErrForeignKey
// (the same values).
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

// ErrForeignKey: rows left referencing missing rows; see its documentation
// in package dbsync. Package internal/dialect, which may import nothing of
// the module but this package, returns it.
var ErrForeignKey = errors.New("dbsync: foreign key violation")
