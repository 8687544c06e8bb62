package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/tracing"
)

// connManager is one listener's HTTP connection manager: it turns each
// request into a stream through the configured filters and the router.
type connManager struct {
	srv      *Server
	listener *config.Listener
	cfg      *config.HTTPConnectionManager
	// routes is the current route generation (generation.go).
	routes atomic.Pointer[routeGeneration]
	// filters is the current generation of HTTP filter factories;
	// chainIndex names this manager's filter chain (generation.go).
	filters    atomic.Pointer[filterGeneration]
	chainIndex int
	serverName string
	log        *slog.Logger
	stats      hcmStats
	// tlsInfo, set for a TLS filter chain, describes a connection's TLS
	// session (connection.* properties).
	tlsInfo func(net.Conn) *filter.TLSInfo
	// open counts this manager's open downstream connections, so a
	// retired listener can wait for them to finish (reload.go).
	open atomic.Int64
	// accessLogs write one line per finished stream (access_log).
	accessLogs accesslog.Loggers
	// tracer traces the streams (tracing); nil without tracing.
	tracer *tracing.Tracer
	// startChildSpan is the router's start_child_span.
	startChildSpan bool

	// localReplies rewrites the proxy's own replies (local_reply_config;
	// nil without one).
	localReplies *localReplies
	// forwarding holds the parsed forwarding settings (forwarding.go).
	forwarding forwardingConfig
}

type hcmStats struct {
	rqTotal     *stats.Counter
	rqCompleted *stats.Counter
	rqXX        [6]*stats.Counter
	rqHTTP1     *stats.Counter
	rqHTTP2     *stats.Counter
	rqActive    *stats.Gauge
	rqReset     *stats.Counter
	rqTooLarge  *stats.Counter
	rsTooLarge  *stats.Counter
	noRoute     *stats.Counter
	// headersTimeout counts request_headers_timeout expiries (408s).
	headersTimeout *stats.Counter
	tooManyHeaders *stats.Counter
	// Stream timeouts: stream_idle_timeout, request_timeout,
	// max_stream_duration.
	rqIdleTimeout   *stats.Counter
	rqTimeout       *stats.Counter
	rqMaxDuration   *stats.Counter
	cxProtocolError *stats.Counter
	cxIdleTimeout   *stats.Counter
	cxMaxDuration   *stats.Counter
	cxTotal         *stats.Counter
	cxActive        *stats.Gauge
	lcxTotal        *stats.Counter
	lcxActive       *stats.Gauge
	// Path normalization (pathnorm.go).
	rqFailedPathNormalization  *stats.Counter
	rqRedirectedNormalizedPath *stats.Counter
	// Upgrades and CONNECT (upgrade.go): accepted ones, those whose
	// stream or tunnel is still open, and refused ones (403).
	upgradesTotal  *stats.Counter
	upgradesActive *stats.Gauge
	upgradeFailed  *stats.Counter
}

func newHCMStats(st *stats.Store, prefix string, listener *config.Listener) hcmStats {
	p := "http." + prefix + "."
	l := ListenerStatPrefix(listener)
	s := hcmStats{
		rqTotal:         st.Counter(p + "downstream_rq_total"),
		rqCompleted:     st.Counter(p + "downstream_rq_completed"),
		rqHTTP1:         st.Counter(p + "downstream_rq_http1_total"),
		rqHTTP2:         st.Counter(p + "downstream_rq_http2_total"),
		rqActive:        st.Gauge(p + "downstream_rq_active"),
		rqReset:         st.Counter(p + "downstream_rq_rx_reset"),
		rqTooLarge:      st.Counter(p + "downstream_rq_too_large"),
		rsTooLarge:      st.Counter(p + "rs_too_large"),
		noRoute:         st.Counter(p + "no_route"),
		headersTimeout:  st.Counter(p + "downstream_rq_header_timeout"),
		tooManyHeaders:  st.Counter(p + "downstream_rq_too_many_headers"),
		rqIdleTimeout:   st.Counter(p + "downstream_rq_idle_timeout"),
		rqTimeout:       st.Counter(p + "downstream_rq_timeout"),
		rqMaxDuration:   st.Counter(p + "downstream_rq_max_duration_reached"),
		cxProtocolError: st.Counter(p + "downstream_cx_protocol_error"),
		cxIdleTimeout:   st.Counter(p + "downstream_cx_idle_timeout"),
		cxMaxDuration:   st.Counter(p + "downstream_cx_max_duration_reached"),
		cxTotal:         st.Counter(p + "downstream_cx_total"),
		cxActive:        st.Gauge(p + "downstream_cx_active"),
		lcxTotal:        st.Counter(l + "downstream_cx_total"),
		lcxActive:       st.Gauge(l + "downstream_cx_active"),

		rqFailedPathNormalization:  st.Counter(p + "downstream_rq_failed_path_normalization"),
		rqRedirectedNormalizedPath: st.Counter(p + "downstream_rq_redirected_with_normalized_path"),

		upgradesTotal:  st.Counter(p + "downstream_cx_upgrades_total"),
		upgradesActive: st.Gauge(p + "downstream_cx_upgrades_active"),
		upgradeFailed:  st.Counter(p + "downstream_rq_ws_on_non_ws_route"),
	}
	for i := 1; i <= 5; i++ {
		s.rqXX[i] = st.Counter(p + "downstream_rq_" + itoa(i) + "xx")
	}
	return s
}

func (cm *connManager) countResponse(code int) {
	cm.stats.rqCompleted.Inc()
	cm.stats.rqActive.Add(-1)
	if code >= 100 && code < 600 {
		cm.stats.rqXX[code/100].Inc()
	}
}

// countLocalReply counts a request the server answered itself before any
// stream began (a request the codec refused): Envoy counts those as
// requests too.
func (cm *connManager) countLocalReply(code int) {
	cm.stats.rqTotal.Inc()
	cm.stats.rqHTTP1.Inc()
	cm.stats.rqCompleted.Inc()
	if code >= 100 && code < 600 {
		cm.stats.rqXX[code/100].Inc()
	}
}

// maxHeaders is max_headers_count (a model built in code may leave it 0:
// Envoy's default then).
func (cm *connManager) maxHeaders() int {
	if n := int(cm.cfg.MaxHeadersCount); n > 0 {
		return n
	}
	return http1.DefaultMaxHeaders
}

// ServeHTTP runs one stream to completion on the handler goroutine.
func (cm *connManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := headerCount(r); n > cm.maxHeaders() {
		// max_headers_count (HTTP/2; the HTTP/1 codec refuses such a
		// request itself): x/net/http2 bounds only bytes.
		cm.stats.rqTotal.Inc()
		cm.stats.tooManyHeaders.Inc()
		status, body := http.StatusRequestHeaderFieldsTooLarge, []byte("Request Header Fields Too Large")
		hdr := w.Header()
		hdr["Content-Type"] = []string{"text/plain"}
		if lr := cm.localReplies; lr != nil {
			info := filter.StreamInfo{StartTime: time.Now(), ResponseCodeDetails: "http2.too_many_headers", Protocol: "HTTP/2"}
			var headers []filter.Pair
			status, body, headers = lr.rewrite(&info, requestHeaderMap(r), status, body, nil)
			delete(hdr, "Content-Type")
			for _, p := range headers {
				if !isHopByHop(p.Key) {
					hdr[canonicalKey(p.Key)] = append(hdr[canonicalKey(p.Key)], p.Value)
				}
			}
		}
		if server := cm.codecReplyServer(nil); server != "" {
			hdr["Server"] = []string{server}
		}
		if via := cm.cfg.Via; via != "" {
			hdr["Via"] = []string{via}
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
		if status >= 100 && status < 600 {
			cm.stats.rqXX[status/100].Inc()
		}
		return
	}
	if r.Method == http.MethodConnect {
		if p := r.Header.Get(":protocol"); p != "" {
			cm.serveExtendedConnectH2(w, r, p) // xconnect.go
			return
		}
		cm.serveConnectH2(w, r) // connect.go
		return
	}
	growStreamStack(0)
	cm.serveH2Stream(w, r)
}

// serveH2Stream serves a proxied HTTP/2 request (ServeHTTP) as
// serveRequest serves an HTTP/1 one: the request's context (under
// x/net/http2's context of the stream), its cancel and its header map
// live in the stream. The stream's timers and its end cancel through
// the stream's requestCancel, and so does x/net/http2 cancelling its
// context (a reset, the connection's end), so the pool's exchange is
// interrupted through it (a watch) rather than through a
// context.WithCancel of the stream and a context.AfterFunc of the pool.
func (cm *connManager) serveH2Stream(w http.ResponseWriter, r *http.Request) {
	s := new(stream)
	rc := &s.reqCtx
	cancel := s.h2Cancel.reset(rc)
	rc.initCancel(r.Context(), cancel)
	cm.serveStream(s, w, netHTTPRequest(r), rc, cancel, s.h2RequestHeaders(r))
}

// streamStackBytes is about the stack a proxied HTTP/2 stream's
// goroutine reaches (x/net/http2 starts one per stream).
const streamStackBytes = 12 << 10

// growStreamStack makes the calling goroutine's stack hold
// streamStackBytes more: x/net/http2 runs each stream on a new
// goroutine, whose small first stack the stream outgrew deep in its
// calls (router, upstream exchange), each time a copy that walks every
// frame. Grown here, near the goroutine's start, it is one copy of a
// few frames.
//
//go:noinline
func growStreamStack(i int) byte {
	var b [streamStackBytes]byte
	return b[i]
}

// serve runs one stream to completion on the calling goroutine; h is the
// request's header map, pseudo-headers first (HTTP/1 builds it straight
// from the codec's fields, HTTP/2 from the *http.Request). ctx is the
// request's context and cancel, when not nil, its cancel function
// (newStream).
func (cm *connManager) serve(w http.ResponseWriter, r downstreamRequest, ctx context.Context, cancel context.CancelFunc, h *filter.HeaderMap) {
	cm.serveStream(nil, w, r, ctx, cancel, h)
}

// serveStream is serve with the stream s made by the caller (nil: a new
// one), which built the request's header map h in it (newStream).
func (cm *connManager) serveStream(s *stream, w http.ResponseWriter, r downstreamRequest, ctx context.Context, cancel context.CancelFunc, h *filter.HeaderMap) {
	cm.stats.rqTotal.Inc()
	cm.stats.rqActive.Add(1)
	if r.ProtoMajor == 2 {
		cm.stats.rqHTTP2.Inc()
	} else {
		cm.stats.rqHTTP1.Inc()
	}
	// Envoy adds these before any filter sees the request; the request
	// id once the stream knows the request's origin (newStream).
	if v, _ := h.GetLower("x-forwarded-proto"); v == "" {
		scheme, _ := h.GetLower(":scheme")
		h.SetLower("x-forwarded-proto", scheme)
	}
	cm.srv.active.Add(1)
	defer cm.srv.active.Add(-1)
	s = cm.newStream(s, w, r, ctx, cancel, h)
	defer s.filterGen.unref() // after the filters' OnDestroy, even on abort
	defer s.routeGen.unref()
	s.run()
}

// ListenerStatPrefix is Envoy's stat prefix for a listener:
// "listener.<stat_prefix>." when the listener sets one, else by its
// address, "listener.127.0.0.1_8080." (the port joined with an
// underscore, so the name stays dot-separated for tag extraction).
func ListenerStatPrefix(l *config.Listener) string {
	if l.StatPrefix != "" {
		return "listener." + l.StatPrefix + "."
	}
	return listenerAddressStatPrefix(l.Address)
}

func listenerAddressStatPrefix(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "listener." + addr + "."
	}
	if strings.Contains(host, ":") {
		// IPv6, as Envoy writes it: [::1]:80 → [__1]_80.
		host = "[" + strings.ReplaceAll(host, ":", "_") + "]"
	}
	return "listener." + host + "_" + port + "."
}

func headerCount(r *http.Request) int {
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

// connInfo is what a stream learns about its downstream connection.
type connInfo struct {
	id     uint64
	remote netip.AddrPort
	local  netip.AddrPort
	tls    *filter.TLSInfo // nil for plaintext
}

type connInfoKey struct{}

// overTLS reports whether the request came over TLS: connInfo knows,
// also behind network filters, where the connection manager reads
// plaintext from a socket pair.
func overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	return ci != nil && ci.tls != nil
}

var connIDs atomic.Uint64

func (cm *connManager) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{id: connIDs.Add(1)}
	if cm.tlsInfo != nil {
		ci.tls = cm.tlsInfo(c)
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ci.remote = a.AddrPort()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ci.local = a.AddrPort()
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// connOpened and connClosed count a downstream connection.
func (cm *connManager) connOpened() {
	cm.open.Add(1)
	cm.stats.cxTotal.Inc()
	cm.stats.cxActive.Add(1)
	cm.stats.lcxTotal.Inc()
	cm.stats.lcxActive.Add(1)
}

func (cm *connManager) connClosed() {
	cm.open.Add(-1)
	cm.stats.cxActive.Add(-1)
	cm.stats.lcxActive.Add(-1)
}
