package client

// SetResetPage sets how many keys of rows the server no longer has a
// reset merges at a time (tests make it small to cross pages).
func SetResetPage(c *Client, n int) { c.resetPage = n }
