package proxy

import (
	"errors"
	"net"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Network filters ahead of an HTTP connection manager (Envoy: read
// filters before envoy.filters.network.http_connection_manager, such as
// Istio's NETWORK-type WasmPlugins on an HTTP port). Each connection runs
// through a TCP proxy session whose terminal, instead of a cluster, is
// the chain's HTTP server, reached over an in-memory socket pair: bytes
// from the client go through on_downstream_data to the connection
// manager, its responses through on_upstream_data to the client, with
// the same pause, buffer-edit and close semantics as ahead of a
// tcp_proxy. TLS, if any, ends before the filters, as in Envoy, so the
// connection manager reads plaintext and tells HTTP/2 by its preface.

// newHCMNetworkFilters makes the TCP proxy that runs the chain's network
// filters ahead of its connection manager cr.cm. Envoy has no tcp.* or
// cluster.* stats for such a chain, so those go to a private store; the
// connection is counted by the connection manager.
func newHCMNetworkFilters(s *Server, l *config.Listener, chain *config.FilterChain, factories []filter.NetworkFactory, cr *chainRuntime) *tcpProxy {
	private := stats.New()
	ls := &listenerStats{cxActive: private.Gauge("cx_active"), cxDestroy: private.Counter("cx_destroy")}
	p := buildTCPProxy(s, l, chain.Name, &config.TCPProxy{StatPrefix: "hcm"}, factories, ls, private)
	p.local = func(sess *tcpSession) (net.Conn, error) {
		filterSide, httpSide, err := socketPair()
		if err != nil {
			return nil, err
		}
		hc := &pairConn{Conn: httpSide, remote: sess.down.RemoteAddr(), local: sess.down.LocalAddr()}
		if ti := sess.info.DownstreamTLS; ti != nil {
			cr.tlsConns.Store(hc, ti)
		}
		if !cr.httpLn.push(hc) {
			cr.tlsConns.Delete(hc)
			_ = filterSide.Close()
			_ = httpSide.Close()
			return nil, errors.New("the HTTP connection manager is shut down")
		}
		return filterSide, nil
	}
	return p
}

// pairConn is the connection manager's end of the socket pair, with the
// client connection's addresses, which the connection manager reports
// (source.address, x-forwarded-for) as its own.
type pairConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *pairConn) RemoteAddr() net.Addr { return c.remote }
func (c *pairConn) LocalAddr() net.Addr  { return c.local }

// CloseWrite half-closes, as net/http does before closing a connection
// whose request it did not read to the end.
func (c *pairConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
