//go:build unix

package proxy

import "syscall"

// peek sets c.gone when the idle socket fd has data or an end of stream
// waiting (the upstream closed it or sent something unasked), without
// blocking or consuming anything.
func (c *h1Conn) peek(fd uintptr) bool {
	n, err := peekSocket(fd, c.peekB[:])
	c.gone = n > 0 || (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	return true
}

// peekSocket looks at what socket fd has to read, without blocking or
// consuming it: n > 0 bytes waiting, n == 0 with no error its end of
// stream, EAGAIN nothing yet.
func peekSocket(fd uintptr, b []byte) (n int, err error) {
	n, _, err = syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
