//go:build !linux

package proxy

// Without epoll the pool peeks at an idle connection at its checkout
// (peek_unix.go); no connection is watched.
func (c *h1Conn) watch() bool { return false }

func (c *h1Conn) unwatch() {}
