//go:build unix

package proxy

import "syscall"

// peek sets c.gone when the idle socket fd has data or an end of stream
// waiting (the upstream closed it or sent something unasked), without
// blocking or consuming anything.
func (c *h1Conn) peek(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.gone = n > 0 || (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	return true
}
