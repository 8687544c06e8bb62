package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/stats"
)

// endpoint is one upstream host of a cluster.
type endpoint struct {
	address string // "ip:port" after resolution
	// hostname is the endpoint's name for auto_host_rewrite: its
	// configured hostname, else the DNS name it was resolved from (a
	// STATIC endpoint has none).
	hostname string
	active   atomic.Int64
	rqTotal  atomic.Uint64
	rqError  atomic.Uint64
	cxFailed atomic.Uint64
	// cxTotal counts connections made to it: the cluster's
	// upstream_cx_total is their sum (/clusters shows both).
	cxTotal atomic.Uint64
	// failedActiveHC is Envoy's FAILED_ACTIVE_HC flag: the health
	// checker (health.go) failed the host, or has not passed it yet.
	failedActiveHC atomic.Bool
	// failedOutlier is Envoy's FAILED_OUTLIER_CHECK flag: outlier
	// detection (outlier.go) has ejected the host.
	failedOutlier atomic.Bool
	outlier       outlierHost
	// weight (load_balancing_weight, at least 1), priority and
	// edsUnhealthy (health_status UNHEALTHY, DRAINING or TIMEOUT: Envoy's
	// FAILED_EDS_HEALTH) come from the configured endpoint.
	weight       uint32
	priority     uint32
	edsUnhealthy bool
}

func newEndpoint(addr, hostname string, healthChecked bool, cfg config.Endpoint) *endpoint {
	ep := &endpoint{address: addr, hostname: hostname, weight: cfg.LBWeight(), priority: cfg.Priority, edsUnhealthy: cfg.EDSUnhealthy}
	// Envoy adds a host to a health-checked cluster failed, until its
	// first check passes.
	ep.failedActiveHC.Store(healthChecked)
	ep.outlier.successRate, ep.outlier.localSuccessRate = -1, -1
	return ep
}

// healthy reports that no health flag keeps the host out of load
// balancing.
func (ep *endpoint) healthy() bool {
	return !ep.edsUnhealthy && !ep.failedActiveHC.Load() && !ep.failedOutlier.Load()
}

// cluster is a running upstream cluster: its endpoints (re-resolved for
// DNS types), its load balancer and its connection pool.
type cluster struct {
	cfg       *config.Cluster
	transport http.RoundTripper
	// pool is the HTTP/1.1 connection pool (pool.go), also the
	// transport; nil for an HTTP/2 cluster.
	pool   *h1Pool
	log    *slog.Logger
	dialer *net.Dialer
	// tls is the UpstreamTlsContext (tls_cluster.go); nil for plaintext.
	tls *upstreamTLS
	// h2 are the HTTP/2 connections the cluster keeps itself (auto_config,
	// auto_sni or connection limits on HTTP/2: h2conns.go); nil when an
	// x/net transport keeps them.
	h2 *h2Conns

	mu        sync.RWMutex
	endpoints []*endpoint
	// lb is what pick chooses from (lb.go), recomputed by refreshLB.
	lb *lbState
	rr atomic.Uint64
	// hc is the active health checker; nil without health_checks.
	hc *healthChecker
	// od is the outlier detector; nil without outlier_detection. Set
	// before the cluster is shared.
	od *outlierDetector

	stats clusterStats
	// retries counts the retries scheduled and not yet decided
	// (retry.go), bounded by maxRetries: the retry circuit breaker.
	retries    atomic.Int64
	maxRetries int64
	stop       chan struct{}
	// refs counts the cluster sets naming the cluster (generation.go); the
	// last one to go closes it.
	refs      atomic.Int64
	closeOnce sync.Once

	// upstreamFilters make the upstream HTTP filters every attempt
	// runs (upstream_filters.go); closed with the cluster.
	upstreamFilters []filter.Factory
}

type clusterStats struct {
	rqTotal       *stats.Counter
	rqTimeout     *stats.Counter
	cxConnectFail *stats.Counter
	cxTotal       *stats.Counter
	cxActive      *stats.Gauge
	noHealthy     *stats.Counter
	rqXX          [6]*stats.Counter
	// rqCode holds the upstream_rq_<code> counters met so far, copied on
	// write, so that counting a response builds no name.
	rqCode atomic.Pointer[map[int]*stats.Counter]
	// Retries (retry.go), named as Envoy names them.
	rqRetry              *stats.Counter
	rqRetrySuccess       *stats.Counter
	rqRetryLimitExceeded *stats.Counter
	rqRetryOverflow      *stats.Counter
	rqRetryBackoffExp    *stats.Counter
	rqPerTryTimeout      *stats.Counter
	// rqMaxDurationReached counts attempts the cluster's
	// max_stream_duration reset (maxduration.go).
	rqMaxDurationReached *stats.Counter
	// retryOrShadowAbandoned counts requests whose body outgrew the
	// retry/shadow buffer (retry.go).
	retryOrShadowAbandoned *stats.Counter
	membership             *stats.Gauge
	membershipHealthy      *stats.Gauge
	lbHealthyPanic         *stats.Counter
	store                  *stats.Store
	prefix                 string
}

func newCluster(ctx context.Context, cfg *config.Cluster, st *stats.Store, log *slog.Logger) (*cluster, error) {
	c := &cluster{cfg: cfg, log: log, stop: make(chan struct{}), maxRetries: config.DefaultMaxRetries}
	if cb := cfg.CircuitBreakers; cb != nil {
		c.maxRetries = int64(cb.MaxRetries)
	}
	p := "cluster." + cfg.Name + "."
	c.stats = clusterStats{
		rqTotal:       st.Counter(p + "upstream_rq_total"),
		rqTimeout:     st.Counter(p + "upstream_rq_timeout"),
		cxConnectFail: st.Counter(p + "upstream_cx_connect_fail"),
		cxTotal:       st.Counter(p + "upstream_cx_total"),
		cxActive:      st.Gauge(p + "upstream_cx_active"),
		noHealthy:     st.Counter(p + "upstream_cx_none_healthy"),
		membership:    st.Gauge(p + "membership_total"),

		membershipHealthy: st.Gauge(p + "membership_healthy"),
		lbHealthyPanic:    st.Counter(p + "lb_healthy_panic"),

		rqRetry:              st.Counter(p + "upstream_rq_retry"),
		rqRetrySuccess:       st.Counter(p + "upstream_rq_retry_success"),
		rqRetryLimitExceeded: st.Counter(p + "upstream_rq_retry_limit_exceeded"),
		rqRetryOverflow:      st.Counter(p + "upstream_rq_retry_overflow"),
		rqRetryBackoffExp:    st.Counter(p + "upstream_rq_retry_backoff_exponential"),
		rqPerTryTimeout:      st.Counter(p + "upstream_rq_per_try_timeout"),
		rqMaxDurationReached: st.Counter(p + "upstream_rq_max_duration_reached"),

		retryOrShadowAbandoned: st.Counter(p + "retry_or_shadow_abandoned"),
		store:                  st,
		prefix:                 p,
	}
	for i := 1; i <= 5; i++ {
		c.stats.rqXX[i] = st.Counter(fmt.Sprintf("%supstream_rq_%dxx", p, i))
	}
	c.dialer = &net.Dialer{Timeout: cfg.ConnectTimeout.D(), KeepAlive: 30 * time.Second}
	if ka := cfg.TCPKeepalive; ka != nil {
		// upstream_connection_options.tcp_keepalive: an unset field keeps
		// the system's value (-1), as Envoy sets only those configured.
		c.dialer.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if ka.Time > 0 {
			c.dialer.KeepAliveConfig.Idle = ka.Time.D()
		}
		if ka.Interval > 0 {
			c.dialer.KeepAliveConfig.Interval = ka.Interval.D()
		}
		if ka.Probes > 0 {
			c.dialer.KeepAliveConfig.Count = int(ka.Probes)
		}
	}
	dialer := c.dialer
	// dial connects to an endpoint (and runs the TLS handshake): conn is
	// the connection to use, counted in upstream_cx_active; raw is the
	// TCP connection under it.
	dialALPN := func(ctx context.Context, addr string, o connOpts, alpn []string) (conn, raw net.Conn, err error) {
		raw, err = dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			c.stats.cxConnectFail.Inc()
			return nil, nil, err
		}
		c.stats.cxTotal.Inc()
		if ep := c.endpointAt(addr); ep != nil {
			ep.cxTotal.Add(1)
		}
		conn = raw
		if c.tls != nil {
			tc, _, err := c.tls.handshakeWith(ctx, raw, alpn, o)
			if err != nil {
				return nil, nil, err
			}
			conn = tc
		}
		c.stats.cxActive.Add(1)
		return &countedConn{Conn: conn, active: c.stats.cxActive}, raw, nil
	}
	dialWith := func(ctx context.Context, addr string, o connOpts) (conn, raw net.Conn, err error) {
		return dialALPN(ctx, addr, o, c.httpALPN())
	}
	dial := func(ctx context.Context, addr string) (conn, raw net.Conn, err error) {
		return dialWith(ctx, addr, connOpts{})
	}
	up := cfg.UpstreamHTTP
	var maxConnRequests int
	var maxConnDuration time.Duration
	if up != nil {
		maxConnRequests, maxConnDuration = int(up.MaxRequestsPerConnection), up.MaxConnectionDuration.D()
	}
	var optsOf func(*http.Request, *upstreamHead) connOpts
	if up != nil && (up.AutoSNI || up.AutoSANValidation) {
		optsOf = func(req *http.Request, head *upstreamHead) connOpts { return requestConnOpts(up, req, head) }
	}
	if cfg.HTTP2 {
		newH2 := func(o connOpts) http.RoundTripper {
			return &http2.Transport{
				AllowHTTP: true,
				// The request carries the accept-encoding the client sent
				// and the answer its content-encoding, as through Envoy's
				// codec: x/net would otherwise ask for gzip itself and
				// decode the answer, dropping its content-encoding.
				DisableCompression: true,
				// idle_timeout (default 1h) closes an HTTP/2 connection
				// without streams, as Envoy's.
				IdleConnTimeout: up.IdleTimeoutOrDefault(),
				DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					conn, _, err := dialWith(ctx, addr, o)
					return conn, err
				},
			}
		}
		c.transport = newH2(connOpts{})
		if optsOf != nil || maxConnRequests > 0 || maxConnDuration > 0 {
			// Connections kept per SNI, or bounded: ours (h2conns.go).
			c.h2 = newH2Conns(up.IdleTimeoutOrDefault(), maxConnRequests, maxConnDuration, newPoolStats(st, p))
			c.transport = &h2Direct{conns: c.h2, dial: dialALPN, opts: optsOf, timeout: cfg.ConnectTimeout.D()}
		}
		tunnels := &h2Tunnels{RoundTripper: c.transport, dial: dial, st: newPoolStats(st, p)} // connect.go
		// Envoy's default (100) unless max_headers_count says otherwise,
		// as the HTTP/1.1 pool's codec.
		tunnels.maxHeaders = http1.DefaultMaxHeaders
		if up != nil && up.MaxHeadersCount > 0 {
			tunnels.maxHeaders = int(up.MaxHeadersCount)
		}
		c.transport = tunnels
	} else {
		connectTimeout := cfg.ConnectTimeout.D()
		c.pool = newH1Pool(func(ctx context.Context, addr string) (net.Conn, net.Conn, error) {
			if connectTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, connectTimeout)
				defer cancel()
			}
			return dial(ctx, addr)
		}, newPoolStats(st, p))
		c.pool.properCase = cfg.ProperCaseHeaderKeys
		c.pool.preserve = cfg.PreserveCase
		c.pool.idleTimeout = up.IdleTimeoutOrDefault()
		c.pool.maxConnRequests, c.pool.maxConnDuration = maxConnRequests, maxConnDuration
		if up != nil {
			c.pool.lim.MaxHeaders = int(up.MaxHeadersCount)
		}
		if optsOf != nil {
			c.pool.connOpts = optsOf
			c.pool.dialWith = func(ctx context.Context, addr string, o connOpts) (net.Conn, net.Conn, error) {
				if connectTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, connectTimeout)
					defer cancel()
				}
				return dialWith(ctx, addr, o)
			}
		}
		if cb := cfg.CircuitBreakers; cb != nil {
			c.pool.maxConnections = int(cb.MaxConnections)
			c.pool.maxPending = int(cb.MaxPendingRequests)
			c.pool.maxRequests = int(cb.MaxRequests)
		}
		c.transport = c.pool
		if cfg.AutoHTTP {
			// auto_config: ALPN picks HTTP/2 or HTTP/1.1 (autohttp.go).
			c.h2 = newH2Conns(up.IdleTimeoutOrDefault(), maxConnRequests, maxConnDuration, newPoolStats(st, p))
			auto := newAutoHTTP(c.pool, c.h2, connectTimeout, dialALPN, optsOf)
			auto.maxHeaders = c.pool.lim.MaxHeaders
			if auto.maxHeaders <= 0 {
				auto.maxHeaders = http1.DefaultMaxHeaders
			}
			c.transport = auto
		}
	}
	if err := c.resolve(ctx); err != nil {
		// Envoy starts with an empty host set when DNS fails and keeps
		// retrying; requests meanwhile get "no healthy upstream".
		log.Warn("cluster resolution failed", "cluster", cfg.Name, "err", err)
	}
	if cfg.OutlierDetection != nil {
		c.od = newOutlierDetector(c)
		c.od.start()
	}
	if cfg.Type != config.ClusterStatic {
		go c.refreshLoop()
	}
	return c, nil
}

// resolve (re)computes the endpoint list. STATIC endpoints must be IP
// literals; STRICT_DNS uses every address of every name; LOGICAL_DNS the
// first address of the first name, as Envoy.
func (c *cluster) resolve(ctx context.Context) error {
	type resolved struct {
		addr, hostname string
		cfg            config.Endpoint
	}
	var addrs []resolved
	var firstErr error
	for _, e := range c.cfg.Endpoints {
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil {
			return fmt.Errorf("cluster %q: endpoint %q: %w", c.cfg.Name, e.Address, err)
		}
		if c.cfg.Type == config.ClusterStatic {
			addrs = append(addrs, resolved{e.Address, e.Hostname, e})
			continue
		}
		hostname := e.Hostname
		if hostname == "" {
			hostname = host
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := lookupFamily(rctx, host, c.cfg.DNSLookupFamily)
		cancel()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if c.cfg.Type == config.ClusterLogicalDNS {
			addrs = append(addrs, resolved{net.JoinHostPort(ips[0], port), hostname, e})
			break
		}
		for _, ip := range ips {
			addrs = append(addrs, resolved{net.JoinHostPort(ip, port), hostname, e})
		}
	}
	c.mu.Lock()
	old := map[string]*endpoint{}
	for _, ep := range c.endpoints {
		old[ep.address] = ep
	}
	eps := make([]*endpoint, 0, len(addrs))
	for _, a := range addrs {
		if ep, ok := old[a.addr]; ok && ep.hostname == a.hostname && ep.weight == a.cfg.LBWeight() && ep.priority == a.cfg.Priority {
			eps = append(eps, ep)
		} else {
			eps = append(eps, newEndpoint(a.addr, a.hostname, c.cfg.HealthCheck != nil, a.cfg))
		}
	}
	c.endpoints = eps
	c.refreshLBLocked()
	hc := c.hc
	c.mu.Unlock()
	c.stats.membership.Set(int64(len(eps)))
	if hc != nil {
		hc.sync(eps)
	}
	return firstErr
}

// refreshLB recomputes the hosts load balancing uses after a health
// change.
func (c *cluster) refreshLB() {
	c.mu.Lock()
	c.refreshLBLocked()
	c.mu.Unlock()
}

// refreshLBLocked is refreshLB with c.mu held: the priorities' loads
// and hosts, with Envoy's panic rule (lb.go).
func (c *cluster) refreshLBLocked() {
	healthy := 0
	for _, ep := range c.endpoints {
		if ep.healthy() {
			healthy++
		}
	}
	c.stats.membershipHealthy.Set(int64(healthy))
	c.lb = buildLBState(c.cfg, c.endpoints)
}

// startHealthChecks starts the active health checker, once the cluster's
// transport socket is configured.
func (c *cluster) startHealthChecks() {
	if c.cfg.HealthCheck == nil {
		return
	}
	hc := newHealthChecker(c)
	c.mu.Lock()
	c.hc = hc
	eps := c.endpoints
	c.mu.Unlock()
	hc.sync(eps)
}

// waitHealthChecks waits for the first check of every host (Envoy's
// cluster initialization), or for ctx.
func (c *cluster) waitHealthChecks(ctx context.Context) {
	c.mu.RLock()
	hc := c.hc
	c.mu.RUnlock()
	if hc != nil {
		hc.waitFirst(ctx)
	}
}

// closeHostConnections closes the pooled idle connections to addr
// (close_connections_on_host_health_failure).
func (c *cluster) closeHostConnections(addr string) {
	if c.pool != nil {
		c.pool.closeIdleTo(addr)
	}
}

// lookupFamily resolves host to the addresses dns_lookup_family takes,
// in the resolver's order: AUTO ("") the IPv6 ones when there are any,
// else the IPv4 ones; V4_PREFERRED the reverse; V4_ONLY and V6_ONLY one
// family; ALL every address. No address of the family is an error, as a
// failed lookup is.
func lookupFamily(ctx context.Context, host, family string) ([]string, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := pickFamily(addrs, family)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no address for dns_lookup_family %s", host, familyName(family))
	}
	return out, nil
}

// pickFamily is lookupFamily's choice among resolved addresses.
func pickFamily(addrs []netip.Addr, family string) []string {
	var v4, v6 []string
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a.String())
		} else {
			v6 = append(v6, a.String())
		}
	}
	var out []string
	switch family {
	case "V4_ONLY":
		out = v4
	case "V6_ONLY":
		out = v6
	case "V4_PREFERRED":
		if out = v4; len(out) == 0 {
			out = v6
		}
	case "ALL":
		out = append(v4, v6...)
	default: // AUTO
		if out = v6; len(out) == 0 {
			out = v4
		}
	}
	return out
}

func familyName(f string) string {
	if f == "" {
		return "AUTO"
	}
	return f
}

func (c *cluster) refreshLoop() {
	every := c.cfg.DNSRefreshRate.D()
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.resolve(context.Background()); err != nil {
				c.log.Debug("cluster re-resolution failed", "cluster", c.cfg.Name, "err", err)
			}
		}
	}
}

// pick chooses an endpoint by the cluster's policy; nil when the cluster
// has no host to use.
func (c *cluster) pick() *endpoint { return c.pickHash(0, false) }

// pickHash is pick with the request's hash (route hash_policy) for
// RING_HASH and MAGLEV, which also chooses the priority.
func (c *cluster) pickHash(hash uint64, hasHash bool) *endpoint {
	c.mu.RLock()
	st := c.lb
	c.mu.RUnlock()
	if st == nil || len(st.prios) == 0 {
		return nil
	}
	h := hash
	if !hasHash {
		h = rand.Uint64()
	}
	p := st.choosePriority(h)
	if st.inPanic(p) {
		c.stats.lbHealthyPanic.Inc()
	}
	return st.prios[p].pickIn(c, hash, hasHash)
}

func (c *cluster) countResponse(code int) {
	if code >= 100 && code < 600 {
		c.stats.rqXX[code/100].Inc()
		c.stats.codeCounter(code).Inc()
	}
}

// codeCounter is upstream_rq_<code>.
func (st *clusterStats) codeCounter(code int) *stats.Counter {
	if m := st.rqCode.Load(); m != nil {
		if ctr, ok := (*m)[code]; ok {
			return ctr
		}
	}
	ctr := st.store.Counter(st.prefix + "upstream_rq_" + itoa(code))
	for {
		old := st.rqCode.Load()
		m := make(map[int]*stats.Counter, 8)
		if old != nil {
			for k, v := range *old {
				m[k] = v
			}
		}
		m[code] = ctr
		if st.rqCode.CompareAndSwap(old, &m) {
			return ctr
		}
	}
}

func (c *cluster) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.mu.RLock()
		hc := c.hc
		c.mu.RUnlock()
		if hc != nil {
			hc.stop()
		}
		if c.od != nil {
			c.od.stop()
		}
		if c.pool != nil {
			c.pool.close()
		}
		if t, ok := c.transport.(*h2Tunnels); ok {
			t.close() // connect.go
		}
		if c.h2 != nil {
			c.h2.close()
		}
		c.closeIdle()
		closeFactories(c.upstreamFilters)
	})
}

// closeIdle drops pooled upstream connections that carry no request.
func (c *cluster) closeIdle() {
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// endpointAt is the current endpoint with address addr, nil when a
// re-resolution has just removed it.
func (c *cluster) endpointAt(addr string) *endpoint {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, ep := range c.endpoints {
		if ep.address == addr {
			return ep
		}
	}
	return nil
}

// hasEndpoint reports that ep is still one of the cluster's hosts.
func (c *cluster) hasEndpoint(ep *endpoint) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.endpoints {
		if e == ep {
			return true
		}
	}
	return false
}

// snapshotEndpoints copies the current endpoints for the admin API.
func (c *cluster) snapshotEndpoints() []*endpoint {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*endpoint(nil), c.endpoints...)
}

func itoa(n int) string {
	if n >= 0 && n < 1000 {
		return smallInts[n]
	}
	return fmt.Sprint(n)
}

var smallInts = func() (s [1000]string) {
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	return
}()

// countedConn is an upstream connection of a pool, counted in the
// cluster's upstream_cx_active until the pool closes it.
type countedConn struct {
	net.Conn
	active *stats.Gauge
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.active.Add(-1) })
	return c.Conn.Close()
}
