package peerhttp

// DecodeBatchesBounded is decodeBatches, for the tests of package
// peerhttp_test.
var DecodeBatchesBounded = decodeBatches
