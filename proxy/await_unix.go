//go:build unix

package proxy

import "syscall"

// awaitState is one writeAwait's progress, kept in the connection so
// that its callback (awaitFn, made once) needs no closure per exchange.
type awaitState struct {
	b     []byte
	wrote bool  // the callback ran its write
	err   error // the write's error
}

// writeAwait writes the request b on the plain TCP connection and waits
// until its socket is readable, both inside one RawConn.Read.
//
// Why: every read of a Go socket starts by forgetting the readiness the
// poller saw, then tries the read; the response's first read after a
// plain Write almost always fails with EAGAIN (the upstream has not
// answered yet) before it waits: a system call for nothing, 1.2–1.7 µs
// on this project's VM (docs/perf.md). Here the readiness is forgotten
// first (RawConn.Read's start), then the request leaves (conn.Write,
// as before: its deadline, its error), then the goroutine waits without
// reading; the upstream answers only after the request, so its bytes
// raise a new event and cannot be missed, and the response's first
// read finds them.
//
// What the reset loses are bytes the upstream sent unasked on the idle
// connection just before this exchange (the checkout peeks only at a
// connection idle for idlePeekAfter): they used to be read at once as
// the response; now they are read with the upstream's next bytes, close
// or reset, or the exchange ends at its deadline.
//
// An error while waiting (deadline, close) is left to the response's
// read, which returns it.
func (c *h1Conn) writeAwait(b []byte) error {
	c.aw = awaitState{b: b}
	_ = c.raw.Read(c.awaitFn)
	aw := c.aw
	c.aw = awaitState{}
	if !aw.wrote {
		// The read side failed before the write (a deadline passed, the
		// connection closed): conn.Write reports it in its own words.
		_, err := c.conn.Write(b)
		return err
	}
	return aw.err
}

// await is writeAwait's RawConn.Read callback: the first call writes and
// asks to wait for readability unless the write failed; the next call,
// on readability, ends the wait.
func (c *h1Conn) await(uintptr) bool {
	aw := &c.aw
	if aw.wrote {
		return true
	}
	aw.wrote = true
	_, aw.err = c.conn.Write(aw.b)
	return aw.err != nil
}

// awaitRequest sends the response held in the connection's writer and
// waits for the next request's first bytes, both inside one
// RawConn.Read: as writeAwait does for an upstream, the socket's
// readiness is forgotten before the response leaves, so the next
// request, which a client sends after reading the response, raises a new
// event, and its first read does not fail with EAGAIN first.
//
// A client that pipelines may have sent its next request before the
// response left; that wake-up is lost. The wait's deadline (set by the
// caller) is therefore awaitLimit at most; when it ends the wait, the
// caller peeks at the socket: bytes waiting mean the lost wake-up, and
// the connection holds no more responses (noHold), so a pipelined
// request waits awaitLimit once; nothing waiting means an idle client,
// and the connection goes on holding. Either way it then reads as usual.
//
// nil: the socket is readable. Otherwise the error of the response's
// write, or of the wait (its deadline, a drain's, a close).
func (sc *serverConn) awaitRequest() error {
	sc.awaitWrote, sc.awaitErr = false, nil
	err := sc.raw.Read(sc.awaitFn)
	if !sc.awaitWrote {
		// The wait failed before the write (a drain's deadline, a
		// close): the response still goes out, or fails, as before.
		sc.flushHeld()
		return err
	}
	if sc.awaitErr != nil {
		return sc.awaitErr
	}
	return err
}

// await is awaitRequest's RawConn.Read callback: the first call sends
// the held response and asks to wait for readability unless the write
// failed; the next call, on readability, ends the wait.
func (sc *serverConn) await(uintptr) bool {
	if sc.awaitWrote {
		return true
	}
	sc.awaitWrote = true
	sc.flushHeld()
	return sc.awaitErr != nil
}

// bytesWaiting reports whether the socket has bytes to read, without
// blocking or consuming them (a non-blocking MSG_PEEK).
func bytesWaiting(raw syscall.RawConn) bool {
	var waiting bool
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, err := peekSocket(fd, b[:]) // peek_unix.go
		waiting = err == nil && n > 0
		return true
	})
	return waiting
}
