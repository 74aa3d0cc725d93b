// Package e2e holds dbsync's whole-system tests: client and server
// processes killed mid-operation, connections cut, PostgreSQL restarted
// under load, many clients at once, random convergence runs, the merge rules
// end to end and the pre-authentication memory bound. It has no code of its
// own; the tests run with
//
//	go test -race ./internal/e2e/
//	DBSYNC_LONG=1 go test ./internal/e2e/   # the long sizes
package e2e
