package proxy

import (
	"strconv"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// refreshRouteTimeouts applies the selected route's idle_timeout and
// max_stream_duration to the stream's timers, as Envoy's connection
// manager does whenever it (re)selects the route (refreshIdleTimeout,
// refreshDurationTimeout). It runs on the stream goroutine. A direct
// response or redirect route has no route entry and changes nothing.
func (s *stream) refreshRouteTimeouts() {
	r := s.route
	h := s.fc.ReqHeaders
	if r == nil || h == nil || r.DirectResponse != nil || r.Redirect != nil {
		return
	}
	matchedVersion := s.routeVersion
	if r.IdleTimeout != nil {
		s.setIdleTimeout(r.IdleTimeout.D())
	}
	s.refreshDurationTimeout(r)
	if s.routeVersion == matchedVersion {
		// Our own grpc-timeout edit is no reason to match again (and to
		// take the offset off twice).
		s.routeVersion = h.Version()
	}
}

// setIdleTimeout replaces the stream's stream_idle_timeout with d (0:
// none), counted from now.
func (s *stream) setIdleTimeout(d time.Duration) {
	t := &s.timers
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.idle = d
	if d <= 0 {
		if t.idleTimer != nil {
			t.idleTimer.Stop()
		}
		return
	}
	s.touch()
	if t.idleTimer == nil {
		t.idleTimer = s.newIdleTimer(d)
	} else {
		t.idleTimer.Reset(d)
	}
}

// refreshDurationTimeout is Envoy's: the stream's limit is the route's
// max_stream_duration, else the connection manager's; with
// grpc_timeout_header_max set, a request's grpc-timeout instead (capped
// by it, less grpc_timeout_header_offset). A route with
// max_stream_duration writes the result into a gRPC request's
// grpc-timeout (or removes it when there is no limit). The limit counts
// from the stream's start.
func (s *stream) refreshDurationTimeout(r *config.Route) {
	h := s.fc.ReqHeaders
	m := r.MaxStreamDuration
	// The headers are read only for a route with max_stream_duration:
	// without one, neither gRPC's content type nor its grpc-timeout
	// changes anything (two scans of the map fewer per request).
	isGRPC := false
	if m != nil {
		ct, _ := h.Get("content-type") // the first value, which IsGRPC reads (no slice of them all)
		isGRPC = config.IsGRPC([]string{ct})
	}
	var timeout time.Duration
	disable := false
	var grpcTimeout time.Duration
	hasGRPCTimeout := false
	if m != nil && m.GrpcTimeoutHeaderMax != nil {
		v, _ := h.Get("grpc-timeout")
		grpcTimeout, hasGRPCTimeout = grpcTimeoutHeader(v)
	}
	if !hasGRPCTimeout || m == nil || m.GrpcTimeoutHeaderMax == nil {
		switch {
		case m != nil && m.MaxStreamDuration != nil:
			timeout = m.MaxStreamDuration.D()
			disable = timeout == 0
		case s.cm.cfg.MaxStreamDuration.D() > 0:
			timeout = s.cm.cfg.MaxStreamDuration.D()
		default:
			disable = true
		}
	} else {
		timeout = grpcTimeout
		if max := m.GrpcTimeoutHeaderMax.D(); max > 0 && timeout > max {
			timeout = max
		}
		if off := m.GrpcTimeoutHeaderOffset; timeout != 0 && off != nil {
			if off.D() < timeout {
				timeout -= off.D()
			} else {
				timeout = 0
			}
		}
	}
	t := &s.timers
	if disable {
		t.mu.Lock()
		if t.maxDuration != nil {
			t.maxDuration.Stop()
		}
		t.maxAt = time.Time{}
		t.mu.Unlock()
		if m != nil && isGRPC {
			h.Del("grpc-timeout")
		}
		return
	}
	if m != nil && isGRPC {
		h.Set("grpc-timeout", formatGRPCTimeout(timeout))
	}
	if used := time.Since(s.info.StartTime); timeout > used {
		timeout -= used
	} else {
		timeout = 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if t.maxDuration == nil {
		t.maxDuration = time.AfterFunc(timeout, func() { s.expire(expiredMaxDuration) })
	} else {
		t.maxDuration.Reset(timeout)
	}
	t.maxAt = time.Now().Add(timeout)
}

// grpcTimeoutHeader parses a request's grpc-timeout value v as Envoy's
// Grpc::Common::getGrpcTimeout: at most 8 digits and a unit (H, M, S,
// m, u, n; below a millisecond rounded up). A missing or malformed
// value is none.
func grpcTimeoutHeader(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	d := time.Duration(n) * unit
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d, true
}

// formatGRPCTimeout is Envoy's Grpc::Common::toGrpcTimeout: milliseconds,
// or a larger unit when the value would need more than 8 digits.
func formatGRPCTimeout(d time.Duration) string {
	const maxValue = 99999999
	v := d.Milliseconds()
	units := "mSMH"
	div := []int64{1000, 60, 60}
	i := 0
	for v > maxValue && i < 3 {
		v /= div[i]
		i++
	}
	if v > maxValue {
		v = maxValue
	}
	return strconv.FormatInt(v, 10) + units[i:i+1]
}
