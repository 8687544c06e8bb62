package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Active health checking, as Envoy's HealthCheckerImplBase and its HTTP,
// TCP and gRPC sessions: one session per host, each on its own timer.
// A host starts failed (FAILED_ACTIVE_HC) and its first successful check
// makes it healthy; after that healthy_threshold successes in a row are
// needed. A failed answer (an unexpected HTTP status, a gRPC status
// other than SERVING) makes a healthy host unhealthy at once; network
// failures (connect, reset, timeout) and retriable statuses only after
// unhealthy_threshold in a row. Checks use connections of their own,
// outside the cluster's pool and its stats, through the cluster's
// transport socket.

// hcResult is the outcome of one check.
type hcResult int

const (
	hcSuccess hcResult = iota
	// hcActive is an answer that fails the host at once.
	hcActive
	// hcRetriable is an answer counted toward unhealthy_threshold.
	hcRetriable
	// hcNetwork is a connect failure, reset or timeout: counted toward
	// unhealthy_threshold and in network_failure.
	hcNetwork
)

// healthChecker runs a cluster's sessions.
type healthChecker struct {
	c   *cluster
	cfg *config.HealthCheck

	attempt, success, failure, networkFailure, verifyCluster *stats.Counter
	healthy, degraded                                        *stats.Gauge

	ctx    context.Context // ends with the cluster
	cancel context.CancelFunc
	mu     sync.Mutex
	byAddr map[*endpoint]*hcSession
	wg     sync.WaitGroup
}

// hcSession checks one host.
type hcSession struct {
	hc     *healthChecker
	ep     *endpoint
	cancel context.CancelFunc
	// firstDone is closed once the first check has a result: cluster
	// start-up waits for it, as Envoy's cluster initialization waits for
	// the first round of health checks.
	firstDone chan struct{}

	first                  bool
	numHealthy, numUnhealt uint32

	// Per-protocol state, reused between checks when reuse_connection.
	httpClient *http.Client
	closeIdle  func()
	tcpConn    net.Conn
}

func newHealthChecker(c *cluster) *healthChecker {
	p := c.stats.prefix + "health_check."
	st := c.stats.store
	ctx, cancel := context.WithCancel(context.Background())
	return &healthChecker{
		c: c, cfg: c.cfg.HealthCheck, ctx: ctx, cancel: cancel,
		attempt:        st.Counter(p + "attempt"),
		success:        st.Counter(p + "success"),
		failure:        st.Counter(p + "failure"),
		networkFailure: st.Counter(p + "network_failure"),
		verifyCluster:  st.Counter(p + "verify_cluster"),
		healthy:        st.Gauge(p + "healthy"),
		degraded:       st.Gauge(p + "degraded"),
		byAddr:         map[*endpoint]*hcSession{},
	}
}

// sync starts a session for each new host and stops those of hosts gone
// (a DNS re-resolution changed the membership).
func (hc *healthChecker) sync(eps []*endpoint) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.ctx.Err() != nil {
		return
	}
	keep := map[*endpoint]bool{}
	for _, ep := range eps {
		keep[ep] = true
		if hc.byAddr[ep] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(hc.ctx)
		s := &hcSession{hc: hc, ep: ep, cancel: cancel, firstDone: make(chan struct{}), first: true}
		hc.byAddr[ep] = s
		hc.wg.Add(1)
		go s.run(ctx)
	}
	for ep, s := range hc.byAddr {
		if !keep[ep] {
			s.cancel()
			delete(hc.byAddr, ep)
		}
	}
	hc.refreshHealthyLocked()
}

func (hc *healthChecker) refreshHealthyLocked() {
	n := 0
	for ep := range hc.byAddr {
		if !ep.failedActiveHC.Load() {
			n++
		}
	}
	hc.healthy.Set(int64(n))
}

// waitFirst waits until every current host has had its first check, or
// ctx ends.
func (hc *healthChecker) waitFirst(ctx context.Context) {
	hc.mu.Lock()
	var chans []chan struct{}
	for _, s := range hc.byAddr {
		chans = append(chans, s.firstDone)
	}
	hc.mu.Unlock()
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-hc.ctx.Done():
			return
		}
	}
}

// stop ends every session and waits for their goroutines.
func (hc *healthChecker) stop() {
	hc.mu.Lock()
	hc.cancel()
	hc.byAddr = map[*endpoint]*hcSession{}
	hc.mu.Unlock()
	hc.wg.Wait()
}

// interval is Envoy's HealthCheckerImplBase::interval: before the
// cluster's first upstream connection, no_traffic_interval (or
// no_traffic_healthy_interval for a healthy host); after, the interval
// of the last result (unhealthy_interval after a failure), or its edge
// interval while a transition is pending; plus the jitters.
func (hc *healthChecker) interval(healthyResult, pending, hostHealthy bool) time.Duration {
	cfg := hc.cfg
	var base time.Duration
	switch {
	case hc.c.stats.cxTotal.Value() == 0:
		base = cfg.NoTrafficInterval.D()
		if hostHealthy && cfg.NoTrafficHealthyInterval > 0 {
			base = cfg.NoTrafficHealthyInterval.D()
		}
	case !healthyResult && pending:
		base = cfg.UnhealthyEdgeInterval.D()
	case !healthyResult:
		base = cfg.UnhealthyInterval.D()
	case pending:
		base = cfg.HealthyEdgeInterval.D()
	default:
		base = cfg.Interval.D()
	}
	if p := cfg.IntervalJitterPercent; p > 0 {
		if span := int64(base) * int64(p) / 100; span > 0 {
			base += time.Duration(rand.Int64N(span))
		}
	}
	if j := cfg.IntervalJitter.D(); j > 0 {
		base += time.Duration(rand.Int64N(int64(j)))
	}
	return base
}

func (s *hcSession) run(ctx context.Context) {
	defer s.hc.wg.Done()
	defer s.closeConns()
	var delay time.Duration
	if j := s.hc.cfg.InitialJitter.D(); j > 0 {
		delay = time.Duration(rand.Int64N(int64(j)))
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.hc.attempt.Inc()
		cctx, cancel := context.WithTimeout(ctx, s.hc.cfg.Timeout.D())
		res := s.check(cctx)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-check: the result belongs to no one
		}
		if res != hcSuccess {
			s.closeConns()
		}
		t.Reset(s.handle(res))
	}
}

// handle applies one result to the host as Envoy's handleSuccess and
// handleFailure, and returns the time to the next check.
func (s *hcSession) handle(res hcResult) time.Duration {
	hc, ep := s.hc, s.ep
	wasHealthy := !ep.failedActiveHC.Load()
	changed, pending := false, false
	if res == hcSuccess {
		s.numUnhealt = 0
		if !wasHealthy {
			s.numHealthy++
			if s.first || s.numHealthy >= hc.cfg.HealthyThreshold {
				ep.failedActiveHC.Store(false)
				changed = true
			} else {
				pending = true
			}
		}
		hc.success.Inc()
	} else {
		s.numHealthy = 0
		if wasHealthy {
			s.numUnhealt++
			if res == hcActive || s.numUnhealt >= hc.cfg.UnhealthyThreshold {
				ep.failedActiveHC.Store(true)
				changed = true
			} else {
				pending = true
			}
		}
		hc.failure.Inc()
		if res == hcNetwork {
			hc.networkFailure.Inc()
		}
	}
	first := s.first
	s.first = false
	if res == hcSuccess && hc.c.od != nil {
		hc.c.od.healthCheckPassed(ep)
	}
	if changed {
		hc.c.log.Info("health check changed a host", "cluster", hc.c.cfg.Name, "host", ep.address, "healthy", res == hcSuccess)
		hc.mu.Lock()
		hc.refreshHealthyLocked()
		hc.mu.Unlock()
		hc.c.refreshLB()
		if res != hcSuccess && hc.c.cfg.CloseConnectionsOnHostHealthFailure {
			hc.c.closeHostConnections(ep.address)
		}
	}
	if first {
		// Only now: what waits for the first round (the cluster's
		// initialization) must find the load balancer rebuilt with
		// this result, or its first requests go by the hosts' initial
		// state (every host failed: panic, so to any host).
		close(s.firstDone)
	}
	return hc.interval(res == hcSuccess, pending, !ep.failedActiveHC.Load())
}

func (s *hcSession) check(ctx context.Context) hcResult {
	switch cfg := s.hc.cfg; {
	case cfg.HTTP != nil:
		return s.checkHTTP(ctx, cfg.HTTP)
	case cfg.GRPC != nil:
		return s.checkGRPC(ctx, cfg.GRPC)
	default:
		return s.checkTCP(ctx, cfg.TCP)
	}
}

func (s *hcSession) closeConns() {
	if s.closeIdle != nil {
		s.closeIdle()
	}
	if s.tcpConn != nil {
		s.tcpConn.Close()
		s.tcpConn = nil
	}
}

// dial connects to the host through the cluster's transport socket.
func (s *hcSession) dial(ctx context.Context, alpn []string) (net.Conn, error) {
	c := s.hc.c
	conn, err := c.dialer.DialContext(ctx, "tcp", s.ep.address)
	if err != nil {
		return nil, err
	}
	if c.tls == nil {
		return conn, nil
	}
	tc, _, err := c.tls.handshake(ctx, conn, alpn)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// client is the session's HTTP client: HTTP/1.1 (one kept connection)
// or HTTP/2 with prior knowledge.
func (s *hcSession) client(h2 bool) *http.Client {
	if s.httpClient != nil {
		return s.httpClient
	}
	reuse := s.hc.cfg.ReuseConnection
	if h2 {
		t := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return s.dial(ctx, []string{"h2"})
		}}
		s.closeIdle = t.CloseIdleConnections
		s.httpClient = &http.Client{Transport: t}
	} else {
		t := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return s.dial(ctx, []string{"http/1.1"})
			},
			DisableCompression:  true,
			DisableKeepAlives:   !reuse,
			MaxIdleConnsPerHost: 1,
		}
		s.closeIdle = t.CloseIdleConnections
		s.httpClient = &http.Client{Transport: t}
	}
	s.httpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return s.httpClient
}

// checkHTTP is Envoy's HttpActiveHealthCheckSession: GET path with the
// configured host (else the cluster's name) and user-agent Envoy/HC,
// then the request_headers_to_add/remove.
func (s *hcSession) checkHTTP(ctx context.Context, cfg *config.HTTPHealthCheck) hcResult {
	c := s.hc.c
	host := cfg.Host
	if host == "" {
		host = c.cfg.Name
	}
	h := filter.NewHeaderMap(
		filter.Pair{Key: ":method", Value: http.MethodGet},
		filter.Pair{Key: ":path", Value: cfg.Path},
		filter.Pair{Key: ":authority", Value: host},
		filter.Pair{Key: "user-agent", Value: "Envoy/HC"},
	)
	applyHeaderMutations(h, cfg.Headers, &accesslog.Entry{
		Info:           &filter.StreamInfo{UpstreamAddr: s.ep.address, ClusterName: c.cfg.Name},
		RequestHeaders: h.Get,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.ep.address, nil)
	if err != nil {
		return hcNetwork
	}
	req.URL.Opaque = cfg.Path
	req.Host = host
	for _, p := range h.Pairs() {
		if p.Key == "" || p.Key[0] == ':' {
			continue
		}
		req.Header.Add(p.Key, p.Value)
	}
	if !s.hc.cfg.ReuseConnection {
		req.Close = true
	}
	resp, err := s.client(cfg.HTTP2).Do(req)
	if err != nil {
		return hcNetwork
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return hcNetwork
	}
	if resp.Close && s.closeIdle != nil {
		s.closeIdle()
	}
	switch {
	case config.InStatusRanges(cfg.ExpectedStatuses, resp.StatusCode):
		return hcSuccess
	case config.InStatusRanges(cfg.RetriableStatuses, resp.StatusCode):
		return hcRetriable
	}
	return hcActive
}

// checkGRPC calls grpc.health.v1.Health/Check over HTTP/2: SERVING
// passes; any other status, a gRPC error or a non-200 answer fails the
// host at once; a transport failure is a network failure.
func (s *hcSession) checkGRPC(ctx context.Context, cfg *config.GRPCHealthCheck) hcResult {
	c := s.hc.c
	authority := cfg.Authority
	if authority == "" {
		authority = c.cfg.Name
	}
	msg, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: cfg.ServiceName})
	if err != nil {
		return hcActive
	}
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.ep.address+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return hcNetwork
	}
	req.Host = authority
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	req.Header.Set("user-agent", "Envoy/HC")
	resp, err := s.client(true).Do(req)
	if err != nil {
		return hcNetwork
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if err != nil {
		return hcNetwork
	}
	if resp.StatusCode != http.StatusOK {
		return hcActive
	}
	status := resp.Trailer.Get("grpc-status")
	if status == "" {
		status = resp.Header.Get("grpc-status") // trailers-only
	}
	if status != "0" || len(data) < 5 {
		return hcActive
	}
	n := binary.BigEndian.Uint32(data[1:5])
	if data[0] != 0 || int(n) != len(data)-5 {
		return hcActive
	}
	var out healthpb.HealthCheckResponse
	if err := proto.Unmarshal(data[5:], &out); err != nil || out.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return hcActive
	}
	return hcSuccess
}

// checkTCP is Envoy's TcpActiveHealthCheckSession: connect; with a send
// payload, write it and pass once the receive payloads have all arrived
// in order; without one, the connect passes (and the connection is not
// kept). A close or the timeout before the match is a network failure.
func (s *hcSession) checkTCP(ctx context.Context, cfg *config.TCPHealthCheck) hcResult {
	conn := s.tcpConn
	if conn == nil {
		var err error
		if conn, err = s.dial(ctx, nil); err != nil {
			return hcNetwork
		}
	}
	s.tcpConn = conn
	if len(cfg.Send) == 0 && len(cfg.Receive) == 0 {
		s.closeConns()
		return hcSuccess
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if len(cfg.Send) > 0 {
		if _, err := conn.Write(cfg.Send); err != nil {
			return hcNetwork
		}
	}
	var got []byte
	buf := make([]byte, 4096)
	for !tcpMatch(cfg.Receive, got) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !tcpMatch(cfg.Receive, got) {
			return hcNetwork
		}
		if len(got) > 1<<20 {
			return hcNetwork
		}
	}
	if !stop() {
		return hcNetwork // the deadline was set: the connection is spent
	}
	if !s.hc.cfg.ReuseConnection {
		s.closeConns()
	}
	return hcSuccess
}

// tcpMatch is Envoy's TcpHealthCheckMatcher::match: each segment found
// after the previous one's end.
func tcpMatch(segments [][]byte, got []byte) bool {
	start := 0
	for _, seg := range segments {
		i := bytes.Index(got[start:], seg)
		if i < 0 {
			return false
		}
		start += i + len(seg)
	}
	return true
}
