//go:build !unix

package proxy

// canDeferWrite: requests are written before their response is read
// (no raw socket calls here).
const canDeferWrite = false

func (c *h1Conn) writeThenRead(p []byte) (int, error) { return c.conn.Read(p) }

func (c *h1Conn) rw(fd uintptr) bool { return true }
