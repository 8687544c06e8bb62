package proxy

import "time"

// Clock readings on the request path (docs/decisions.md §83).
//
// time.Now reads two clocks (wall and monotonic: two vDSO reads, ~60 ns
// here); time.Since of a time that has a monotonic reading reads only
// the monotonic one. What the proxy does with most of its readings
// needs the monotonic clock alone: deadlines (SetDeadline takes
// time.Until of them), ages (the pool's idle expiry and peek), the
// stream's activity and its durations (%DURATION% is EndTime's Sub of
// StartTime, as every other user of EndTime). Envoy's stream info does
// the same: one wall reading at the stream's start, monotonic times
// after it. Only a stream's StartTime (%START_TIME%, the span's
// timestamp, the Wasm property request.time) needs the wall clock.

// monoNow is the monotonic clock alone as a time.Time, for what only
// measures or compares times: its monotonic reading is now's, its wall
// reading monoEpoch's advanced by as much (time.Now's, unless the wall
// clock was set since the process started). Sub, Before, After, Until,
// Since and SetDeadline use the monotonic readings of two times that
// have them; a monoNow time is never formatted.
func monoNow() time.Time { return monoAt(time.Since(monoEpoch)) }

// monoAt is the time d after monoEpoch (a reading of sinceEpoch), as
// monoNow makes it.
func monoAt(d time.Duration) time.Time { return monoEpoch.Add(d) }

// sinceEpoch reads the monotonic clock alone: the time since monoEpoch.
func sinceEpoch() time.Duration { return time.Since(monoEpoch) }

// eventClock is one reading of the monotonic clock shared by the
// stream's handling of one event (a request body chunk, an upstream
// response head or body chunk) when nothing but the proxy's own code
// runs between its users: a stream with no HTTP filter but the router
// (stream.bare) and no upstream filters. The stream's activity
// (stream_idle_timeout), the upstream request's start and the
// x-envoy-upstream-service-time of the response head are then taken at
// the event, within the same few microseconds of the proxy's code that
// separate their own readings otherwise. It is read lazily (an event
// that needs no time reads no clock) and closed before the handling
// can block: it is open only on the stream's goroutine, inside
// onRequestBody and onUpstream, and ended by a write to the client
// (downstreamSink's) or the push of a streamed request body, after
// which readings are the clock's again.
//
// The pool shares two readings with such a stream, each at the same
// point of the request: the upstream request's start is the checkout's
// reading for the idle connections' ages (upstreamHead.at: the
// synchronous exchange is the stream's next step), and the pool's
// reading of the response's end (the connection's idle start,
// respBody.ended) is the event's that delivers that end
// (upstreamEvent.at).
type eventClock struct {
	open bool
	// at is the reading, as sinceEpoch's (0: not read yet).
	at time.Duration
}

// openEvent starts an event's shared reading (a bare stream only); at,
// when not zero, is a monotonic reading the event's I/O took at its end
// (the pool's, of a response's end: upstreamEvent.at), which it is.
func (s *stream) openEvent(at time.Time) {
	s.clock = eventClock{open: s.bare && (s.up == nil || s.up.filtered == nil)}
	if s.clock.open && !at.IsZero() {
		s.clock.at = at.Sub(monoEpoch) // no clock read
	}
}

// closeEvent ends it: later readings are the clock's again.
func (s *stream) closeEvent() { s.clock = eventClock{} }

// endEventReading ends the event's shared reading before something that
// may block (a write to the client), so that a reading after it is the
// clock's: the reading stands for the event's arrival only.
func (s *stream) endEventReading() { s.clock.open = false }

// eventNow is the stream's current event's reading when one is open,
// else the monotonic clock's, as sinceEpoch's.
func (s *stream) eventNow() time.Duration {
	if !s.clock.open {
		return sinceEpoch()
	}
	if s.clock.at == 0 {
		s.clock.at = sinceEpoch()
	}
	return s.clock.at
}
