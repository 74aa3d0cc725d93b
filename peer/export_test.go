package peer

// Prefetch is prefetch, for the tests of package peer_test.
var Prefetch = prefetch

// PrefetchMemory is prefetchMemory.
const PrefetchMemory = prefetchMemory

// UTCTimes is utcTimes, for the tests of package peer_test.
var UTCTimes = utcTimes
