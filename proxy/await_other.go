//go:build !unix

package proxy

import "syscall"

// awaitState is empty where writeAwait is a plain write.
type awaitState struct{}

// writeAwait writes b; see await_unix.go for what it does on Unix.
func (c *h1Conn) writeAwait(b []byte) error {
	_, err := c.conn.Write(b)
	return err
}

func (c *h1Conn) await(fd uintptr) bool { return true }

// awaitRequest sends the held response; the caller reads as usual.
func (sc *serverConn) awaitRequest() error {
	sc.flushHeld()
	return sc.awaitErr
}

func (sc *serverConn) await(uintptr) bool { return true }

// bytesWaiting cannot look without reading here: it answers true, and
// the connection stops holding responses.
func bytesWaiting(syscall.RawConn) bool { return true }
