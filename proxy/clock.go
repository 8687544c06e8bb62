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
func monoNow() time.Time { return monoEpoch.Add(time.Since(monoEpoch)) }

// sinceEpoch reads the monotonic clock alone: the time since monoEpoch.
func sinceEpoch() time.Duration { return time.Since(monoEpoch) }
