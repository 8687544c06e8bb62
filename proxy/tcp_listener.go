package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// NetworkFilterLoader builds the factory of a configured network filter
// (a Wasm plugin ahead of a tcp_proxy). A FilterLoader that also
// implements it enables network filters; without it a config with one
// fails to start. A factory that holds resources implements io.Closer:
// the server closes it once the listener running it is retired and its
// last connection has ended.
type NetworkFilterLoader interface {
	LoadNetworkFilter(ctx context.Context, listener string, f *config.NetworkFilter) (filter.NetworkFactory, error)
}

// handshakeTimeout bounds the time from accept to a chosen filter chain
// with its TLS handshake done (Envoy's listener_filters_timeout is 15s).
const handshakeTimeout = 15 * time.Second

// directHTTP returns the connection manager of a listener net/http serves
// on its own (one plaintext chain with an HTTP connection manager and no
// match), or nil when the listener needs a netListener.
func directHTTP(l *config.Listener) *config.HTTPConnectionManager {
	if len(l.FilterChains) != 1 {
		return nil
	}
	c := l.FilterChains[0]
	if l.ProxyProtocol != nil || l.OriginalDst {
		return nil // the listener filters run in netListener.classify
	}
	if c.TLS != nil || c.HTTP == nil || len(c.NetworkFilters) > 0 || len(c.Match.ServerNames) > 0 || c.Match.TransportProtocol != "" || len(c.Match.ApplicationProtocols) > 0 {
		return nil
	}
	return c.HTTP
}

// listenerStats are the listener.<address>.* counters of a netListener.
type listenerStats struct {
	cxTotal      *stats.Counter
	cxActive     *stats.Gauge
	cxDestroy    *stats.Counter
	noChainMatch *stats.Counter
	preCxTimeout *stats.Counter
	tls          *tlsStats
}

// netListener is a listener the proxy accepts on itself: several filter
// chains, TLS, or a TCP proxy. For each connection it reads the first
// bytes when a chain depends on them (what Envoy's tls_inspector does:
// TLS or not, and the SNI of the ClientHello), picks the chain, runs the
// TLS handshake, and hands the connection to the chain's HTTP connection
// manager (through that chain's http.Server) or TCP proxy. A TLS chain
// without a transport socket passes the TLS bytes through untouched.
type netListener struct {
	srv     *Server
	cfg     *config.Listener
	chains  []*chainRuntime
	inspect bool // some chain matches on SNI or transport, or terminates TLS
	// ppStats counts the proxy_protocol listener filter (nil without it).
	ppStats *proxyProtoStats
	stats   listenerStats
	log     *slog.Logger
	ln      net.Listener

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections not yet handed to a chain
	wg      sync.WaitGroup
}

// chainRuntime is one filter chain ready to take connections.
type chainRuntime struct {
	cfg   *config.FilterChain
	index int
	// tls is the chain's server config; nil for plaintext or passthrough.
	tls   *tls.Config
	certs []tls.Certificate
	leafs []*x509.Certificate

	cm      *connManager
	httpLn  *chanListener
	httpSrv *httpServer
	// tlsConns hands a TLS connection's TLSInfo to the HTTP connection
	// manager (net/http needs the *tls.Conn itself, so no wrapper can
	// carry it; behind network filters, the *pairConn it reads).
	tlsConns sync.Map // *tls.Conn or *pairConn → *filter.TLSInfo

	// tcp is the chain's TCP proxy; with cm, it runs the chain's network
	// filters ahead of the connection manager (hcm_network.go).
	tcp *tcpProxy
}

func (s *Server) newNetListener(ctx context.Context, index int, l *config.Listener) (_ *netListener, err error) {
	// The network filters loaded before a failure are closed with it.
	var loaded []filter.NetworkFactory
	defer func() {
		if err != nil {
			closeFactories(loaded)
		}
	}()
	st := s.opts.Stats
	p := ListenerStatPrefix(l)
	nl := &netListener{
		srv: s, cfg: l,
		log: s.opts.Logs.Logger("connection"),
		stats: listenerStats{
			cxTotal:      st.Counter(p + "downstream_cx_total"),
			cxActive:     st.Gauge(p + "downstream_cx_active"),
			cxDestroy:    st.Counter(p + "downstream_cx_destroy"),
			noChainMatch: st.Counter(p + "no_filter_chain_match"),
			preCxTimeout: st.Counter(p + "downstream_pre_cx_timeout"),
			tls:          newTLSStats(st, p),
		},
		pending: map[net.Conn]struct{}{},
	}
	if l.ProxyProtocol != nil {
		nl.ppStats = newProxyProtoStats(st, p, l.ProxyProtocol)
	}
	files := tlsFiles{}
	if s.cfg.Source != "" {
		files.configDir = filepath.Dir(s.cfg.Source)
	}
	for ci, c := range l.FilterChains {
		where := fmt.Sprintf("listener %q: filter_chains[%d]", l.Name, ci)
		cr := &chainRuntime{cfg: c, index: ci}
		if c.TLS != nil || len(c.Match.ServerNames) > 0 || c.Match.TransportProtocol != "" || len(c.Match.ApplicationProtocols) > 0 || len(l.FilterChains) > 1 {
			nl.inspect = true
		}
		if c.TLS != nil {
			cfg, err := files.serverTLS(c.TLS, nl.stats.tls)
			if err != nil {
				return nil, fmt.Errorf("%s: transport_socket: %w", where, err)
			}
			cr.certs, cfg.Certificates = cfg.Certificates, nil
			for i := range cr.certs {
				cr.leafs = append(cr.leafs, leafOf(&cr.certs[i]))
			}
			cfg.GetCertificate = cr.certificate
			cr.tls = cfg
		}
		var factories []filter.NetworkFactory
		for fi, f := range c.NetworkFilters {
			nfl, ok := s.opts.Loader.(NetworkFilterLoader)
			if !ok {
				return nil, fmt.Errorf("%s: filters[%d] %q: no network filter loader configured", where, fi, f.Name)
			}
			fac, err := nfl.LoadNetworkFilter(ctx, l.Name, f)
			if err != nil {
				return nil, err
			}
			factories = append(factories, fac)
			loaded = append(loaded, fac)
		}
		switch {
		case c.HTTP != nil:
			cm, err := s.newConnManager(ctx, index, l, c.HTTP)
			if err != nil {
				return nil, err
			}
			cm.tlsInfo = cr.takeTLSInfo
			cr.cm = cm
			cr.httpLn = newChanListener(nil)
			// Behind network filters the server reads plaintext from a
			// socket pair: HTTP/2 comes with its preface, not ALPN.
			cr.httpSrv = s.newHTTPServer(cm, c.TLS != nil && len(factories) == 0)
			if len(factories) > 0 {
				cr.tcp = newHCMNetworkFilters(s, l, c, factories, cr)
			}
		case c.TCPProxy != nil:
			tp, err := newTCPProxy(s, l, c, factories, &nl.stats)
			if err != nil {
				return nil, err
			}
			cr.tcp = tp
		}
		nl.chains = append(nl.chains, cr)
	}
	return nl, nil
}

// start binds the listener and serves it.
func (nl *netListener) start() error {
	sock, err := nl.srv.bindSocket(nl.cfg)
	if err != nil {
		return err
	}
	nl.serve(sock)
	return nil
}

// serve serves the listener on a bound socket (reload.go hands one over).
func (nl *netListener) serve(ln net.Listener) {
	nl.ln = ln
	for _, c := range nl.chains {
		if c.httpSrv != nil {
			c.httpLn.addr = ln.Addr()
			go func() {
				if err := c.httpSrv.Serve(c.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
					nl.log.Error("listener stopped", "listener", nl.cfg.Name, "err", err)
				}
			}()
		}
	}
	go nl.acceptLoop()
}

func (nl *netListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := nl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			nl.log.Warn("accept failed", "listener", nl.cfg.Name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		nl.mu.Lock()
		if nl.closed {
			nl.mu.Unlock()
			_ = c.Close()
			return
		}
		nl.pending[c] = struct{}{}
		nl.wg.Add(1)
		nl.mu.Unlock()
		nl.stats.cxActive.Add(1)
		go nl.handle(c)
	}
}

// handle takes one accepted connection to its filter chain.
func (nl *netListener) handle(raw net.Conn) {
	defer nl.wg.Done()
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	chain, conn, tlsInfo, err := nl.classify(raw)
	nl.mu.Lock()
	delete(nl.pending, raw)
	nl.mu.Unlock()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			nl.stats.preCxTimeout.Inc()
		}
		nl.log.Debug("connection closed before reaching a filter chain", "listener", nl.cfg.Name, "remote", raw.RemoteAddr().String(), "err", err)
		lingerClose(raw)
		nl.stats.cxTotal.Inc()
		nl.stats.cxActive.Add(-1)
		nl.stats.cxDestroy.Inc()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	if chain.cm != nil {
		// The HTTP connection manager counts the connection from here.
		nl.stats.cxActive.Add(-1)
		if chain.tcp != nil {
			chain.tcp.serve(conn, tlsInfo) // through the network filters
			return
		}
		if tc, ok := conn.(*tls.Conn); ok {
			chain.tlsConns.Store(tc, tlsInfo)
		}
		if !chain.httpLn.push(conn) {
			_ = conn.Close()
		}
		return
	}
	nl.stats.cxTotal.Inc()
	chain.tcp.serve(conn, tlsInfo)
}

// lingerTimeout bounds lingerClose.
const lingerTimeout = 2 * time.Second

// lingerClose closes a connection the client may still be writing to
// without a reset (which could destroy what the client has not read
// yet): half-close, discard what arrives until the client closes or a
// short timeout, then close.
func lingerClose(c net.Conn) {
	_ = closeWrite(c)
	_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c, 1<<20)
	_ = c.Close()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// errNoFilterChain ends a connection no chain matches.
var errNoFilterChain = errors.New("no filter chain matches the connection")

// errPassthrough aborts the inspecting handshake of a chain that does
// not terminate TLS.
var errPassthrough = errors.New("tls passthrough")

// classify picks the chain for a connection and returns the connection
// to hand it (TLS terminated, or the raw bytes replayed from the start).
func (nl *netListener) classify(raw net.Conn) (*chainRuntime, net.Conn, *filter.TLSInfo, error) {
	// The listener filters that change the connection's addresses
	// (originaldst.go, proxyproto.go), before the chain is chosen.
	if nl.cfg.OriginalDst {
		raw = withOriginalDst(raw)
	}
	if pp := nl.cfg.ProxyProtocol; pp != nil {
		c, err := readProxyHeader(raw, pp, nl.ppStats)
		if err != nil {
			return nil, nil, nil, err
		}
		raw = c
	}
	if !nl.inspect {
		return nl.chains[0], raw, nil, nil
	}
	pc := &peekConn{Conn: raw, record: true}
	first, err := pc.peekByte()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the first byte: %w", err)
	}
	if first != 0x16 { // not a TLS handshake record: plaintext
		var protos []string
		if nl.cfg.HTTPInspector {
			protos = httpInspect(pc)
		}
		pc.replay()
		chain := nl.selectChain("", "raw_buffer", protos)
		switch {
		case chain == nil:
			nl.stats.noChainMatch.Inc()
			return nil, nil, nil, errNoFilterChain
		case chain.tls != nil:
			// Plaintext on a TLS port.
			nl.stats.tls.connectionError.Inc()
			return nil, nil, nil, errors.New("plaintext on a TLS filter chain")
		}
		return chain, pc, nil, nil
	}

	hs := &handshakeState{}
	ts := tls.Server(pc, &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			hs.sni = strings.ToLower(hello.ServerName)
			hs.chain = nl.selectChain(hs.sni, "tls", hello.SupportedProtos)
			switch {
			case hs.chain == nil:
				return nil, errNoFilterChain
			case hs.chain.tls == nil:
				return nil, errPassthrough
			}
			// From here the handshake is for real: stop recording and let
			// the server's answers through.
			pc.commit()
			return hs.chain.tls, nil
		},
	})
	ctx := context.WithValue(context.Background(), handshakeKey{}, hs)
	err = ts.HandshakeContext(ctx)
	switch {
	case hs.chain == nil && errors.Is(err, errNoFilterChain):
		nl.stats.noChainMatch.Inc()
		return nil, nil, nil, err
	case hs.chain != nil && hs.chain.tls == nil:
		pc.replay()
		return hs.chain, pc, nil, nil
	case err != nil:
		nl.stats.tls.connectionError.Inc()
		return nil, nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	nl.stats.tls.handshake.Inc()
	return hs.chain, ts, tlsInfo(ts.ConnectionState(), hs.local), nil
}

// handshakeState is one connection's choices during the handshake.
type handshakeState struct {
	sni   string
	chain *chainRuntime
	local *x509.Certificate
}

type handshakeKey struct{}

// certificate picks the chain's certificate for a ClientHello (the first
// the client supports, as Go's own selection does for SNI) and records it
// as the connection's local certificate.
func (c *chainRuntime) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	pick := 0
	for i := range c.certs {
		if hello.SupportsCertificate(&c.certs[i]) == nil {
			pick = i
			break
		}
	}
	if hs, ok := hello.Context().Value(handshakeKey{}).(*handshakeState); ok {
		hs.local = c.leafs[pick]
	}
	return &c.certs[pick], nil
}

// takeTLSInfo gives the HTTP connection manager the TLS facts of a
// connection handed to it (once).
func (c *chainRuntime) takeTLSInfo(conn net.Conn) *filter.TLSInfo {
	if v, ok := c.tlsConns.LoadAndDelete(conn); ok {
		return v.(*filter.TLSInfo)
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil
	}
	return tlsInfo(tc.ConnectionState(), nil)
}

// selectChain applies Envoy's filter chain match order: server name
// (exact, then the longest wildcard suffix, then chains without server
// names), then transport protocol (an exact match over none), then
// application protocols (the connection's in its own order, the first
// a chain lists winning, else a chain that lists none).
func (nl *netListener) selectChain(sni, transport string, protos []string) *chainRuntime {
	var byName []*chainRuntime
	if sni != "" {
		for _, c := range nl.chains {
			for _, n := range c.cfg.Match.ServerNames {
				if n == sni {
					byName = append(byName, c)
				}
			}
		}
		for rest := sni; len(byName) == 0; {
			dot := strings.IndexByte(rest, '.')
			if dot < 0 {
				break
			}
			rest = rest[dot+1:]
			wildcard := "*." + rest
			for _, c := range nl.chains {
				for _, n := range c.cfg.Match.ServerNames {
					if n == wildcard {
						byName = append(byName, c)
					}
				}
			}
		}
	}
	if len(byName) == 0 {
		for _, c := range nl.chains {
			if len(c.cfg.Match.ServerNames) == 0 {
				byName = append(byName, c)
			}
		}
	}
	var byTransport []*chainRuntime
	for _, c := range byName {
		if c.cfg.Match.TransportProtocol == transport {
			byTransport = append(byTransport, c)
		}
	}
	if len(byTransport) == 0 {
		for _, c := range byName {
			if c.cfg.Match.TransportProtocol == "" {
				byTransport = append(byTransport, c)
			}
		}
	}
	for _, p := range protos {
		for _, c := range byTransport {
			if slices.Contains(c.cfg.Match.ApplicationProtocols, p) {
				return c
			}
		}
	}
	for _, c := range byTransport {
		if len(c.cfg.Match.ApplicationProtocols) == 0 {
			return c
		}
	}
	return nil
}

// httpInspectMax bounds what the HTTP inspector reads looking for the
// end of the request line.
const httpInspectMax = 8192

// h2Preface is the start of HTTP/2's connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n"

// httpInspect is Envoy's http_inspector listener filter: from the first
// line of a plaintext connection (read, and replayed after), the
// application protocol — "h2c" for HTTP/2's preface, "http/1.1" for an
// HTTP/1.1 request line, "http/1.0" for any other version (HTTP/0.9's
// line without one included), as Envoy's inspector names them — or none
// when it is not HTTP.
func httpInspect(pc *peekConn) []string {
	line := pc.peekLine(httpInspectMax)
	if line == h2Preface {
		return []string{"h2c"}
	}
	line, ok := strings.CutSuffix(line, "\r\n")
	if !ok {
		return nil
	}
	method, rest, ok := strings.Cut(line, " ")
	if !ok || method == "" {
		return nil
	}
	target, version, hasVersion := strings.Cut(rest, " ")
	if target == "" {
		return nil
	}
	switch {
	case version == "HTTP/1.1":
		return []string{"http/1.1"}
	case !hasVersion:
		// HTTP/0.9's request line: Envoy's parser takes it, and every
		// version but 1.1 is "http/1.0" to the inspector.
		return []string{"http/1.0"}
	case len(version) == 8 && strings.HasPrefix(version, "HTTP/") && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return []string{"http/1.0"}
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// drain stops HTTP keep-alives on the listener's HTTP chains.
func (nl *netListener) drain() {
	for _, c := range nl.chains {
		if c.httpSrv != nil {
			c.httpSrv.SetKeepAlivesEnabled(false)
		}
	}
}

// shutdown stops accepting, waits (bounded by ctx) for HTTP streams and
// TCP connections to end, then closes what is left.
func (nl *netListener) shutdown(ctx context.Context) error {
	nl.mu.Lock()
	nl.closed = true
	for c := range nl.pending {
		_ = c.Close()
	}
	nl.mu.Unlock()
	if nl.ln != nil {
		_ = nl.ln.Close()
	}
	var errs []error
	for _, c := range nl.chains {
		if c.httpSrv != nil {
			if err := c.httpSrv.Shutdown(ctx); err != nil {
				_ = c.httpSrv.Close()
				errs = append(errs, fmt.Errorf("listener %q: %w", nl.cfg.Name, err))
			}
		}
		if c.tcp != nil {
			c.tcp.closeAll()
		}
	}
	nl.wg.Wait()
	return errors.Join(errs...)
}

// close stops everything at once (a failed start).
func (nl *netListener) close() {
	if nl.ln != nil {
		_ = nl.ln.Close()
	}
	for _, c := range nl.chains {
		if c.httpSrv != nil {
			_ = c.httpSrv.Close()
		}
	}
}

// peekConn lets the listener look at the first bytes of a connection and
// then either hand them on (replay) or let a TLS server that consumed
// them carry on (commit). While inspecting, whatever the inspecting TLS
// server writes is dropped: the chain may turn out to pass TLS through.
type peekConn struct {
	net.Conn
	record bool // reads are recorded; writes are dropped
	buf    []byte
	pos    int // replay position in buf
}

func (c *peekConn) peekByte() (byte, error) {
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return 0, err
	}
	c.pos = 0 // the byte is read again by whoever reads next
	return b[0], nil
}

// peekLine reads (recording) until a "\r\n", max bytes, or an error,
// and returns what was read; the next reader reads it again.
func (c *peekConn) peekLine(max int) string {
	var b [512]byte
	for !bytes.Contains(c.buf, []byte("\r\n")) && len(c.buf) < max && maybeRequestLine(c.buf) {
		n, err := c.Conn.Read(b[:min(len(b), max-len(c.buf))])
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			break
		}
	}
	c.pos = 0
	line := string(c.buf)
	if i := strings.Index(line, "\r\n"); i >= 0 {
		line = line[:i+2]
	}
	return line
}

// maybeRequestLine reports whether b can still be the start of an
// HTTP request line: a method of token characters, then printable
// text. The HTTP inspector stops reading as soon as it cannot (a
// binary protocol), as Envoy's parser gives up on the first bad byte.
func maybeRequestLine(b []byte) bool {
	inMethod := true
	for i, c := range b {
		switch {
		case inMethod && c == ' ' && i > 0:
			inMethod = false
		case inMethod && !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0):
			return false
		case !inMethod && (c < 0x20 && c != '\r' && c != '\n' || c == 0x7f):
			return false
		}
	}
	return true
}

func (c *peekConn) Read(p []byte) (int, error) {
	if c.pos < len(c.buf) {
		n := copy(p, c.buf[c.pos:])
		c.pos += n
		if !c.record && c.pos == len(c.buf) {
			c.buf, c.pos = nil, 0
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if c.record && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		c.pos = len(c.buf)
	}
	return n, err
}

func (c *peekConn) Write(p []byte) (int, error) {
	if c.record {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// replay stops recording: the next reads return everything read so far.
func (c *peekConn) replay() {
	c.record = false
	c.pos = 0
}

// commit stops recording and forgets what was read: the reader consumed
// it.
func (c *peekConn) commit() {
	c.record = false
	c.buf, c.pos = nil, 0
}

// CloseWrite half-closes the underlying TCP connection.
func (c *peekConn) CloseWrite() error { return closeWrite(c.Conn) }

// chanListener feeds connections accepted (and classified) elsewhere to
// an http.Server.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the server; false when the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
