//go:build !unix

package proxy

// peek cannot look at a socket without blocking here: an idle
// connection counts as open. One the upstream closed fails its next
// request before any response byte, and the pool sends that request
// again on a new connection when the upstream cannot have acted on it
// (roundTripHead's stale rule).
func (c *h1Conn) peek(fd uintptr) bool {
	c.gone = false
	return true
}
