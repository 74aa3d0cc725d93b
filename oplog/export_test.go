package oplog

// LogLiterals is Log through multi-row literal INSERTs only (the path
// every database took before prepared statements and array parameters).
var LogLiterals = logLiterals
