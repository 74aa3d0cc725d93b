// Package dbsync is the shared vocabulary of an offline-first database
// synchronization framework for bun: the registry of tracked models, the
// errors both sides report, and the events of each procedure. The wire
// types of the HTTP protocol are in package protocol.
//
// # The model
//
// A central server database (PostgreSQL, or SQLite) and many client nodes,
// each with a local copy of the same tracked tables (SQLite on a device, or
// PostgreSQL). [Track] names the
// bun models to synchronize. Every committed insert, update and delete on a
// tracked table is captured, in the same transaction, into an operations log
// (sync_operations): which row, which command. Triggers do the capture, so
// raw SQL, Where-only updates and cascaded deletes are captured too, and a
// rollback leaves nothing behind (package oplog).
//
// The server's history is linear: every accepted push becomes one version
// (sync_versions). A client pushes its pending operations with the current
// state of the rows they touch; the server applies them on top of its
// latest version when the client holds it, or when no newer version changed
// those rows (a rebase). Otherwise the client pulls the newer versions,
// merges them into its local database (package merge, rules in merge.md)
// and pushes again. A client can also repair (replace its tracked tables by
// the server's) and query the server.
//
// # Packages
//
//   - package models and package migrations: the internal tables (the
//     peer's sync_lww* apart: migrations.MigratePeer, peer.Migrate).
//   - package oplog: capture triggers, the guard hook, log compression.
//   - package protocol: the wire types and framing, request signing, the
//     error codes (pure: no database, no HTTP).
//   - package merge: conflict resolution, pure functions.
//   - package server: register, push, pull, repair, query (no net/http).
//   - package handlers: the chi http.Handler for a server.
//   - package client: the client and its Sync loop, over HTTP or another
//     client.Transport.
//   - package peer: peer-to-peer last-write-wins sync (no net/http);
//     package peer/peerhttp: its HTTP handler and HTTP peer; package
//     stream: its transport over any byte stream.
package dbsync
