package proxy

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/wasmproxy/wasmproxy/filter"
)

// The Server is the filter.Upstreams of its plugins: proxy_http_call and
// gRPC callouts reach its clusters through the clusters' own transports
// (HTTP/2 for clusters configured for it), so a callout is routed, load
// balanced and counted like proxied traffic.

var _ filter.Upstreams = (*Server)(nil)

// HasCluster reports whether the named cluster exists.
func (s *Server) HasCluster(name string) bool { return s.currentClusters()[name] != nil }

// calloutRequest builds the upstream request of a callout.
func (s *Server) calloutRequest(ctx context.Context, clusters map[string]*cluster, cluster string, headers []filter.Pair, body io.Reader, length int64) (*cluster, *endpoint, *http.Request, error) {
	cl := clusters[cluster]
	if cl == nil {
		return nil, nil, nil, errors.New("unknown cluster " + cluster)
	}
	cl.stats.rqTotal.Inc()
	ep := cl.pick()
	if ep == nil {
		cl.stats.noHealthy.Inc()
		return cl, nil, nil, errNoHealthy
	}
	var method, path, authority, scheme string
	hdr := http.Header{}
	for _, p := range headers {
		switch p.Key {
		case ":method":
			method = p.Value
		case ":path":
			path = p.Value
		case ":authority":
			authority = p.Value
		case ":scheme":
			scheme = p.Value
		case "content-length", "host":
		default:
			if p.Key == "" || p.Key[0] == ':' || isHopByHop(p.Key) && p.Key != "te" {
				continue
			}
			k := canonicalKey(p.Key)
			hdr[k] = append(hdr[k], p.Value)
		}
	}
	_ = scheme
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = []string{""}
	}
	req := (&http.Request{
		Method:        method,
		URL:           originFormURL(ep.address, path),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Host:          authority,
		Body:          io.NopCloser(body),
		ContentLength: length,
	}).WithContext(ctx)
	if body == nil {
		req.Body = http.NoBody
	}
	return cl, ep, req, nil
}

var errNoHealthy = errors.New("no healthy upstream")

// HTTPCall implements filter.Upstreams: one request, the whole response.
// As Envoy's async client (which runs the router), a timeout answers 504
// "upstream request timeout" and a connection failure 503; an error is a
// reset after the response began.
func (s *Server) HTTPCall(ctx context.Context, clusterName string, headers []filter.Pair, body []byte, trailers []filter.Pair) (*filter.CalloutResponse, error) {
	var rd io.Reader
	if len(body) > 0 {
		rd = strings.NewReader(string(body))
	}
	// The cluster set is held until the call ends, so a reload closes a
	// replaced cluster only after it.
	cs := s.acquireClusters()
	defer cs.unref()
	cl, ep, req, err := s.calloutRequest(ctx, cs.m, clusterName, headers, rd, int64(len(body)))
	if errors.Is(err, errNoHealthy) {
		return localCalloutReply(503, "no healthy upstream"), nil
	}
	if err != nil {
		return nil, err
	}
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, p := range trailers {
			k := canonicalKey(p.Key)
			req.Trailer[k] = append(req.Trailer[k], p.Value)
		}
		if rd == nil {
			req.Body = io.NopCloser(strings.NewReader(""))
		}
		req.ContentLength = -1
	}
	ep.active.Add(1)
	defer ep.active.Add(-1)
	ep.rqTotal.Add(1)
	resp, err := cl.transport.RoundTrip(req)
	if err != nil {
		ep.rqError.Add(1)
		cl.reportError(ep, err, ctx.Err() == context.DeadlineExceeded)
		if ctx.Err() == context.DeadlineExceeded {
			cl.stats.rqTimeout.Inc()
			return localCalloutReply(504, "upstream request timeout"), nil
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			ep.cxFailed.Add(1)
		}
		return localCalloutReply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure"), nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			cl.stats.rqTimeout.Inc()
			return localCalloutReply(504, "upstream request timeout"), nil
		}
		return nil, err
	}
	cl.countResponse(resp.StatusCode)
	cl.reportResponse(ep, resp.StatusCode)
	out := &filter.CalloutResponse{Headers: responseHeaderMap(resp).Pairs(), Body: data}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			out.Trailers = append(out.Trailers, filter.Pair{Key: lowerKey(k), Value: v})
		}
	}
	return out, nil
}

func localCalloutReply(status int, body string) *filter.CalloutResponse {
	return &filter.CalloutResponse{
		Headers: []filter.Pair{
			{Key: ":status", Value: strconv.Itoa(status)},
			{Key: "content-length", Value: strconv.Itoa(len(body))},
			{Key: "content-type", Value: "text/plain"},
		},
		Body: []byte(body),
	}
}

// OpenStream implements filter.Upstreams: a streaming request whose body
// is written through the returned stream, for gRPC. Like an HTTP call it
// holds the cluster set current when it starts until Close, so a reload
// that replaces the cluster lets the stream finish on the old one.
// Cancelling ctx closes the stream: the HTTP/2 transport watches the
// request's context only once the body is written, and a bidirectional
// call (ADS) never ends its body, so without this a reader would stay
// blocked until the server ended the call.
func (s *Server) OpenStream(ctx context.Context, clusterName string, headers []filter.Pair) (filter.UpstreamStream, error) {
	pr, pw := io.Pipe()
	cs := s.acquireClusters()
	cl, ep, req, err := s.calloutRequest(ctx, cs.m, clusterName, headers, pr, -1)
	if err != nil {
		cs.unref()
		return nil, err
	}
	req.Body = pr
	req.Trailer = http.Header{}
	us := &upstreamStream{pw: pw, ready: make(chan struct{}), release: cs.unref}
	us.mu.Lock() // Close may run at once, on a context already over
	us.stop = context.AfterFunc(ctx, us.Close)
	us.mu.Unlock()
	go func() {
		ep.active.Add(1)
		ep.rqTotal.Add(1)
		resp, err := cl.transport.RoundTrip(req)
		ep.active.Add(-1)
		if err != nil {
			ep.rqError.Add(1)
			_ = pr.CloseWithError(err)
		} else {
			cl.countResponse(resp.StatusCode)
		}
		us.resp, us.err = resp, err
		close(us.ready)
	}()
	return us, nil
}

type upstreamStream struct {
	pw      *io.PipeWriter
	ready   chan struct{}
	resp    *http.Response
	err     error
	once    sync.Once
	release func() // the cluster set's reference, dropped once the exchange is over
	mu      sync.Mutex
	stop    func() bool // unregisters the Close on the context's end
}

func (u *upstreamStream) Write(p []byte) error {
	_, err := u.pw.Write(p)
	return err
}

func (u *upstreamStream) CloseWrite() error { return u.pw.Close() }

func (u *upstreamStream) Response() ([]filter.Pair, error) {
	<-u.ready
	if u.err != nil {
		return nil, u.err
	}
	return responseHeaderMap(u.resp).Pairs(), nil
}

func (u *upstreamStream) Read(p []byte) (int, error) {
	<-u.ready
	if u.err != nil {
		return 0, u.err
	}
	return u.resp.Body.Read(p)
}

func (u *upstreamStream) Trailers() []filter.Pair {
	<-u.ready
	if u.resp == nil {
		return nil
	}
	var out []filter.Pair
	for k, vs := range u.resp.Trailer {
		for _, v := range vs {
			out = append(out, filter.Pair{Key: lowerKey(k), Value: v})
		}
	}
	return out
}

func (u *upstreamStream) Close() {
	u.once.Do(func() {
		u.mu.Lock()
		stop := u.stop
		u.mu.Unlock()
		stop()
		_ = u.pw.CloseWithError(errors.New("stream cancelled"))
		go func() {
			<-u.ready
			if u.resp != nil {
				_ = u.resp.Body.Close()
			}
			u.release()
		}()
	})
}

// matchRouteInfo resolves the request's route now, as Envoy's route cache
// does before the filters run, so plugins can read xds.route_name,
// xds.cluster_name and the metadata properties from on_request_headers.
// The router matches again at the end of the chain only when a filter
// has edited the headers since.
func (s *stream) matchRouteInfo() {
	h := s.fc.ReqHeaders
	if h == nil {
		return
	}
	vh, route := s.routeGen.table.match(h)
	s.routeVH, s.route, s.routeVersion, s.routeMatched = vh, route, h.Version(), true
	s.routeWC = nil
	if route != nil && len(route.WeightedClusters) > 0 {
		// One random value per stream, as Envoy's stream id: matching
		// the same route again picks the same cluster.
		if !s.randomSet {
			s.random, s.randomSet = rand.Uint64(), true
		}
		s.routeWC = route.PickWeighted(s.random)
	}
	s.info.VirtualHost, s.info.RouteName, s.info.ClusterName = "", "", ""
	s.info.VirtualHostMetadata, s.info.RouteMetadata, s.info.ClusterMetadata = nil, nil, nil
	if vh != nil {
		s.info.VirtualHost = vh.Name
		s.info.VirtualHostMetadata = vh.Metadata
	}
	if route != nil {
		s.info.RouteName = route.Name
		s.info.RouteMetadata = route.Metadata
		s.info.ClusterName = s.routeClusterName()
		if cl := s.routeGen.clusters.m[s.info.ClusterName]; cl != nil {
			s.info.ClusterMetadata = cl.cfg.Metadata
		}
	}
	s.info.ListenerMetadata = s.cm.listener.Metadata
	s.info.PerFilterConfig = (*chainHost)(s)
	s.refreshRouteTimeouts() // route_timeouts.go
}

// routeClusterName is the cluster the matched route sends to: its
// cluster, the weighted cluster picked for this stream, or the value of
// its cluster_header.
func (s *stream) routeClusterName() string {
	if s.routeWC != nil {
		return s.routeWC.Name
	}
	if s.route != nil {
		if ch := s.route.ClusterHeader; ch != "" {
			// cluster_header: the header's first value as the request
			// has it now; absent, no cluster (503 cluster_not_found).
			if s.fc.ReqHeaders == nil {
				return ""
			}
			v, _ := s.fc.ReqHeaders.Get(ch)
			return v
		}
		return s.route.Cluster
	}
	return ""
}

// ClearRouteCache makes the stream match its route again, as Envoy's
// clearRouteCache: the clear_route_cache foreign function, and what a
// Wasm or Lua filter's edit of the request headers does. The match runs
// on the stream goroutine after the filter call in progress, or in the
// router if that comes first (a filter that continues at once); several
// clears before it (a plugin's edits in one call) make one match.
func (h *chainHost) ClearRouteCache() {
	s := (*stream)(h)
	s.routeCleared.Store(true)
	s.fc.Post(s.rematchRoute)
}

// rematchRoute matches the route again if the route cache was cleared
// since it last did.
func (s *stream) rematchRoute() {
	if s.routeCleared.Swap(false) {
		s.matchRouteInfo()
	}
}
