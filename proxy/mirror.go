package proxy

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// mirror is a stream's shadow requests: route.request_mirror_policies,
// as Envoy's router sends them when the request is not streamed to the
// shadow (ShadowWriterImpl::shadow). The copies of the request headers
// are taken when the router forwards (after the route's header
// mutations and rewrites), the body is copied as it goes upstream, and
// once the request is complete each copy is sent on its own goroutine,
// fire and forget: its response is read and dropped, and nothing about
// it reaches the main request, which never waits for it. A body above
// the retry/shadow buffer limit abandons the shadows together with the
// retries, as Envoy's retry_or_shadow_abandoned_ (retry.go). A stream
// reset before its request ended sends none.
type mirror struct {
	targets   []mirrorTarget
	body      []byte
	abandoned bool
	sent      bool
	timeout   time.Duration
}

// mirrorTarget is one shadow: its cluster (held through the cluster set
// until sent) and its request headers.
type mirrorTarget struct {
	cluster *cluster
	headers *filter.HeaderMap
}

// startMirrors decides which of the route's mirror policies shadow this
// request and copies the headers for them; nil when none does. The
// cluster set cs is the stream's; each shadow takes its own reference
// on it when sent, so a reload or the stream's end does not close the
// cluster under it.
func (s *stream) startMirrors(route *config.Route, h *filter.HeaderMap) *mirror {
	if len(route.MirrorPolicies) == 0 {
		return nil
	}
	if !s.randomSet {
		s.random, s.randomSet = rand.Uint64(), true
	}
	var m *mirror
	for _, p := range route.MirrorPolicies {
		if !p.Fraction.SampleStable(s.random) {
			continue
		}
		name := p.Cluster
		if p.ClusterHeader != "" {
			name, _ = h.Get(p.ClusterHeader)
		}
		cl := s.routeGen.clusters.m[name]
		if cl == nil {
			// Envoy: "shadow cluster '…' does not exist", at debug level.
			s.cm.log.Debug("shadow cluster does not exist", "cluster", name)
			continue
		}
		hc := h.Clone()
		if !p.DisableHostSuffix {
			if host, ok := hc.Get(":authority"); ok && host != "" {
				hc.Set(":authority", shadowHost(host))
			}
		}
		if m == nil {
			m = &mirror{timeout: route.Timeout.D()}
		}
		m.targets = append(m.targets, mirrorTarget{cluster: cl, headers: hc})
	}
	return m
}

// shadowHost is Envoy's shadowAppendedHost: "-shadow" after the host,
// before any port ("foo:8080" → "foo-shadow:8080").
func shadowHost(host string) string {
	if i := hostPortStart(host); i >= 0 {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// add copies a request body chunk for the shadows. The router keeps
// the copy within the retry/shadow buffer limit (retryBuffer), which
// abandons the shadows past it.
func (m *mirror) add(b []byte) {
	if m == nil || m.abandoned || m.sent {
		return
	}
	m.body = append(m.body, b...)
}

// abandon drops the shadows: the request body outgrew the buffer.
func (m *mirror) abandon() {
	if m != nil {
		m.abandoned, m.body = true, nil
	}
}

// send fires the shadows with the body gathered so far (the request is
// complete) and trailers, when the request had some; at most once.
func (m *mirror) send(s *stream, trailers *filter.HeaderMap) {
	if m == nil || m.abandoned || m.sent {
		return
	}
	m.sent = true
	for _, t := range m.targets {
		// Counted here, on the stream goroutine, before the main
		// response can reach the client.
		t.cluster.stats.rqTotal.Inc()
		cs := s.routeGen.clusters
		cs.ref()
		go shadowRequest(cs, t, m.body, trailers, m.timeout)
	}
}

// shadowRequest sends one shadow and drops its response; the cluster
// counts it (requests, responses, outlier detection) as any request.
// Its deadline is the route timeout, as Envoy's shadow options; cs is
// released when it ends.
func shadowRequest(cs *clusterSet, t mirrorTarget, body []byte, trailers *filter.HeaderMap, timeout time.Duration) {
	defer cs.unref()
	cl := t.cluster
	ep := cl.pick()
	if ep == nil {
		cl.stats.noHealthy.Inc()
		return
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	req := buildUpstreamRequest(ctx, t.headers, ep.address, nil)
	scheme, _ := t.headers.Get(":scheme")
	req.Header = (&upstreamHead{pairs: t.headers.Pairs(), scheme: scheme}).httpHeader()
	req.Body, req.ContentLength = http.NoBody, 0
	if len(body) > 0 || trailers != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	if trailers != nil {
		req.ContentLength = -1
		req.Trailer = make(http.Header, trailers.Len())
		for _, p := range trailers.Pairs() {
			k := canonicalKey(p.Key)
			req.Trailer[k] = append(req.Trailer[k], p.Value)
		}
	}
	ep.active.Add(1)
	ep.rqTotal.Add(1)
	resp, err := cl.transport.RoundTrip(req)
	ep.active.Add(-1)
	if err != nil {
		ep.rqError.Add(1)
		timedOut := ctx.Err() == context.DeadlineExceeded
		if timedOut {
			cl.stats.rqTimeout.Inc()
		}
		cl.reportError(ep, err, timedOut)
		return
	}
	// The body is read (and dropped) so the connection can be reused.
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	cl.countResponse(resp.StatusCode)
	cl.reportResponse(ep, resp.StatusCode)
}
