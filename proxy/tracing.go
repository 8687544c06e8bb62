package proxy

import (
	"net/http"
	"time"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/tracing"
)

// tracingFlushTimeout bounds the export of the last spans at Shutdown.
const tracingFlushTimeout = 5 * time.Second

// newTracer builds the connection manager's tracer (package tracing)
// and reads the router's start_child_span.
func (s *Server) newTracer(cm *connManager, l *config.Listener, h *config.HTTPConnectionManager) error {
	if n := len(h.Filters); n > 0 && h.Filters[n-1].Router {
		cm.startChildSpan = h.Filters[n-1].StartChildSpan
	}
	t := h.Tracing
	if t != nil && t.Provider == nil && s.building.tracer != nil {
		// The bootstrap's tracer, for a connection manager that traces
		// without naming one (Envoy's deprecated bootstrap tracing).
		c := *t
		c.Provider = s.building.tracer
		t = &c
	}
	var err error
	cm.tracer, err = s.tracers.Tracer(t, l.TrafficDirection == "OUTBOUND")
	return err
}

// startSpan takes the tracing decision and starts the server span once
// the route is known, before any filter runs, as Envoy's traceRequest.
func (s *stream) startSpan() {
	if s.cm.tracer == nil {
		return
	}
	s.span = s.cm.tracer.Start(s.fc.ReqHeaders, s.info.StartTime, false)
	if s.route != nil {
		s.span.Decorate(s.route.Decorator, s.fc.ReqHeaders)
	}
}

// finishSpan ends the server span with the stream's outcome.
func (s *stream) finishSpan() {
	if s.span == nil {
		return
	}
	s.span.Finish(tracing.Result{
		Request:         s.fc.ReqHeaders,
		Protocol:        s.info.Protocol,
		Peer:            s.info.DownstreamAddr,
		Status:          s.info.ResponseCode,
		ResponseFlags:   accesslog.Flags(s.info.ResponseCodeDetails),
		UpstreamCluster: s.info.ClusterName,
		RequestSize:     s.info.RequestBodyBytes.Load(),
		ResponseSize:    s.info.ResponseBodyBytes.Load(),
	}, s.info.EndTime)
	s.span = nil
}

// startSpan starts an attempt's client span (when configured) and
// writes the trace context the upstream sees into h: the attempt's
// span, else the request's.
func (up *upstreamRequest) startSpan(h tracing.Headers) {
	s := up.s
	if s.span == nil {
		return
	}
	up.span = s.span.Upstream(up.cluster.cfg.Name, s.cm.startChildSpan, time.Now())
	up.spanStatus = 0
	if up.span != nil {
		up.span.Inject(h)
		return
	}
	s.span.Inject(h)
}

// finishSpan ends the attempt's client span, if any.
func (up *upstreamRequest) finishSpan(end time.Time) {
	if up.span == nil {
		return
	}
	proto := "HTTP/1.1"
	if up.cluster.pool == nil {
		proto = "HTTP/2"
	}
	up.span.Finish(tracing.Result{
		Protocol:        proto,
		Upstream:        up.endpoint.address,
		Status:          up.spanStatus,
		UpstreamCluster: up.cluster.cfg.Name,
	}, end)
	up.span = nil
}

// httpHeaders is a net/http header as tracing.Headers (a retry's
// upstream request, already built).
type httpHeaders http.Header

func (h httpHeaders) Get(k string) (string, bool) {
	v := http.Header(h).Values(k)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (h httpHeaders) Set(k, v string) { http.Header(h).Set(k, v) }
func (h httpHeaders) Del(k string)    { http.Header(h).Del(k) }
