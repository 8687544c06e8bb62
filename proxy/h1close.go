package proxy

import (
	"io"
	"net"
	"net/http"
	"time"
)

// How an HTTP/1.1 connection ends when the proxy ends it, as Envoy's
// connection manager does (docs/decisions.md §65):
//
//   - A 400 the proxy answers itself closes the connection after it
//     (Envoy's onLocalReply), unless stream_error_on_invalid_http_message
//     (or http_protocol_options' override of it) is true; a request
//     refused as a codec error (a header name with an underscore under
//     REJECT_REQUEST) closes it whatever that option says, as Envoy's
//     handleCodecError does.
//   - A connection the proxy closes after its answer (a codec error, a
//     response with "connection: close") waits up to
//     delayed_close_timeout for the client to close first
//     (delayedClose), Envoy's FlushWriteAndDelay.
//   - A connection whose idle_timeout or max_connection_duration ran
//     out after it served a request drains for drain_timeout: it stays
//     open, a request in that time is answered with "connection:
//     close", then it closes (waitForRequest). One that never sent a
//     request closes at once (Envoy has no codec for it yet).

// closeOnBadRequest applies Envoy's rule for a local reply of status:
// over HTTP/1 a 400 ends the connection after the reply unless
// stream_error_on_invalid_http_message.
func (s *stream) closeOnBadRequest(status int) {
	if status != http.StatusBadRequest || s.r.ProtoMajor >= 2 || s.cm.cfg.StreamErrorOnInvalidHTTPMessage {
		return
	}
	s.closeConnection()
}

// closeConnection makes an HTTP/1 stream's connection close after its
// response ("connection: close" on it, unless the head already went
// out). Other protocols: nothing.
func (s *stream) closeConnection() {
	w, ok := s.w.(*h1Response)
	if !ok {
		return
	}
	w.sc.wmu.Lock()
	w.closeAfter = true
	w.sc.wmu.Unlock()
}

// delayedClose ends a connection the proxy closes after writing its
// answer: its write side closes (the client reads the answer to its
// end), then the connection waits up to the connection manager's
// delayed_close_timeout for the client to close and closes. A zero
// timeout closes at once.
func (sc *serverConn) delayedClose() {
	sc.setReadDeadline(time.Time{}) // closeDelayed sets its own (readStale)
	closeDelayed(sc.rwc, sc.cm.cfg.DelayedCloseTime())
}

func closeDelayed(c net.Conn, d time.Duration) {
	if d <= 0 {
		_ = c.Close()
		return
	}
	_ = closeWrite(c)
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, _ = io.CopyN(io.Discard, c, 1<<20)
	_ = c.Close()
}
