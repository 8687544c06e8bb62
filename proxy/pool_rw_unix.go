//go:build unix

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// canDeferWrite: a plain TCP upstream connection's request is written
// inside the first read of its response (writeThenRead).
const canDeferWrite = true

// writeThenRead writes the pending request and reads the first bytes of
// its response into p, in one syscall.RawConn.Read: the runtime resets
// the socket's read readiness before the first call of the callback,
// which writes the request and asks to wait. Any response (or reset)
// the write causes arrives after that reset, so its readiness wakes the
// wait, and the read that a conn.Write then conn.Read makes at once,
// only to get EAGAIN, is not made. The connection was idle and peeked
// empty before (peerClosed) or is new; an unasked byte or close that
// came in between would have lost its readiness to the reset, but the
// upstream answers the request with a close or a reset then, which
// wakes the wait again. A write the socket cannot take whole is
// finished by conn.Write (with its write deadline), and the read is
// then conn.Read's. The read deadline bounds the wait as conn.Read's.
func (c *h1Conn) writeThenRead(p []byte) (int, error) {
	c.rwP, c.rwN, c.rwErr = p, 0, nil
	err := c.raw.Read(c.rwFn)
	c.rwP = nil
	if c.pending != nil {
		rest := c.pending
		c.pending = nil
		if err == nil && c.rwErr == nil {
			// Short write, or none (EAGAIN): the rest the ordinary way.
			if h := testHookShortWrite.Load(); h != nil {
				(*h)()
			}
			if _, werr := c.conn.Write(rest); werr != nil {
				c.writeFailed, c.wErr = true, werr
				return 0, werr
			}
			return c.conn.Read(p)
		}
		if err == nil {
			err = c.rwErr
		}
		c.writeFailed, c.wErr = true, asReadOp(err, "write")
		return 0, c.wErr
	}
	if err != nil {
		return 0, asReadOp(err, "read")
	}
	return c.rwN, c.rwErr
}

// testHookShortWrite, when set, is called when a deferred write falls
// back to conn.Write (tests).
var testHookShortWrite atomic.Pointer[func()]

// rw is writeThenRead's callback: its first call writes the request
// (false: wait for the response); the next ones read (false on
// EAGAIN: a spurious wake-up).
func (c *h1Conn) rw(fd uintptr) bool {
	if c.pending != nil {
		for {
			n, err := syscall.Write(int(fd), c.pending)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					c.rwErr = c.opError("write", err)
				}
				return true
			}
			c.pending = c.pending[n:]
			if len(c.pending) > 0 {
				return true // the socket's buffer is full
			}
			c.pending = nil
			return false
		}
	}
	for {
		n, err := syscall.Read(int(fd), c.rwP)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			c.rwErr = c.opError("read", err)
		case n == 0 && len(c.rwP) > 0:
			c.rwErr = io.EOF
		default:
			c.rwN = n
		}
		return true
	}
}

// opError is a socket error as package net reports it.
func (c *h1Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.tcp.LocalAddr(), Addr: c.tcp.RemoteAddr(), Err: os.NewSyscallError(op, err)}
}

// asReadOp names a RawConn.Read error (a deadline, a closed
// connection) as the read or write that conn would have reported.
func asReadOp(err error, op string) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "raw-read" {
		oe.Op = op
	}
	return err
}
