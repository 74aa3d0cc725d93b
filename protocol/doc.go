// Package protocol holds the wire types and framing of dbsync's HTTP+JSON
// protocol (docs/protocol.md): the requests and answers of register, push,
// pull, repair and query, the stream lines of pull and repair, rows and
// keys, the error codes, request signing, and the description of a tracked
// table the wire and the merge need ([TableSchema]).
//
// The package is pure: it imports the standard library,
// github.com/google/uuid and the module's pure internal/signing and
// internal/wire only, no database, bun or net/http. Package dbsync
// holds what an application writes against (Track, the registry, the
// errors); package client, package server, package handlers and package
// merge share the types here.
//
// Errors returned here wrap the sentinel errors of package dbsync
// (dbsync.ErrBadRequest, dbsync.ErrUnknownTable): test them with errors.Is.
package protocol
