package client

// SetResetPage sets how many keys of rows the server no longer has a
// reset merges at a time (tests make it small to cross pages).
func SetResetPage(c *Client, n int) { c.resetPage = n }

// SetMaxLine sets the longest line of a pull or repair answer the client
// reads (tests make it small, not to send hundreds of MiB).
func SetMaxLine(c *Client, n int) { c.maxLine = n }
