package proxy

import (
	"errors"
	"net"
	"time"
)

// awaitLimit bounds a downstream connection's wait for its next request
// while the wait also sent the last response (awaitRequest): a
// pipelined request that came before the response left is read this
// late at most, once per connection.
const awaitLimit = 50 * time.Millisecond

// awaitLimitHook, when set (tests, before any server starts), is called
// each time awaitLimit ends a wait, with the client's address and
// whether the connection stops holding responses.
var awaitLimitHook func(client string, noHold bool)

// flushHeld sends the response bytes held in the connection's writer
// (serveRequest's end with hold). A failed write is kept in awaitErr
// (the writer keeps it too: the next response fails and closes the
// connection); it does not close the connection itself, as it may run
// inside the socket's RawConn.Read, which a Close would wait for.
func (sc *serverConn) flushHeld() {
	if !sc.held {
		return
	}
	sc.held = false
	sc.wmu.Lock()
	if err := sc.bw.Flush(); err != nil {
		sc.awaitErr = err
	}
	sc.wmu.Unlock()
}

// awaitLimitRanOut reports whether err, awaitRequest's, is its wait's
// timeout while the connection's own deadline (zero: none) is still
// ahead: awaitLimit ended it, not idle_timeout or a drain's wake-up.
func awaitLimitRanOut(err error, deadline time.Time) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && (deadline.IsZero() || monoNow().Before(deadline))
}
