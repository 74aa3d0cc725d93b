package client

import "time"

// SetResetPage sets how many keys of rows the server no longer has a
// reset merges at a time (tests make it small to cross pages).
func SetResetPage(c *Client, n int) { c.resetPage = n }

// SetMaxLine sets the longest line of a pull or repair answer the client
// reads (tests make it small, not to send hundreds of MiB).
func SetMaxLine(c *Client, n int) { c.maxLine = n }

// SetLogLockWait sets how long a push's preparation waits for the
// transactions writing the node's log (tests make it short, not to wait
// 10 s).
func SetLogLockWait(c *Client, d time.Duration) { c.logLockWait = d }

// AsEarlierRelease makes c check nothing of sync_client_owner, as a
// Client of a release before it (in another process) does: its
// procedures and another Client's on the same node database overlap.
func AsEarlierRelease(c *Client) { c.owner = "" }
