package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// upstreamTLS is a cluster's UpstreamTlsContext, ready to wrap
// connections to its endpoints.
type upstreamTLS struct {
	cfg   *tls.Config
	local *x509.Certificate // the client certificate presented, or nil
	// verifier checks the upstream's certificate; a connection with a
	// SAN override (auto_san_validation) checks the names through it.
	verifier *peerVerifier
	stats    *tlsStats
	// notReady, when the context's SDS secrets did not arrive in time,
	// counts the connections failed for it
	// (client_ssl_socket_factory.upstream_context_secrets_not_ready).
	notReady *stats.Counter
}

// errSecretsNotReady fails a connection through a TLS context whose SDS
// secrets did not arrive: a connection failure to the router (503, UF),
// as Envoy's NotReadySslSocket closes the connection before it connects.
var errSecretsNotReady = errors.New("upstream TLS: the context's SDS secrets are not ready")

// configureTLS prepares the cluster's upstream TLS, if it has one. Files
// are read relative to the working directory or, failing that, beside the
// config file. It runs before the cluster makes any connection.
func (c *cluster) configureTLS(configSource string) error {
	if c.cfg.TLS == nil {
		return nil
	}
	files := tlsFiles{}
	if configSource != "" {
		files.configDir = filepath.Dir(configSource)
	}
	st := newTLSStats(c.stats.store, c.stats.prefix)
	cfg, v, err := files.clientTLS(c.cfg.TLS, st)
	if err != nil {
		return fmt.Errorf("cluster %q: transport_socket: %w", c.cfg.Name, err)
	}
	u := &upstreamTLS{cfg: cfg, stats: st, verifier: v}
	if c.cfg.TLS.SecretsNotReady {
		u.notReady = c.stats.store.Counter(c.stats.prefix + "client_ssl_socket_factory.upstream_context_secrets_not_ready")
	}
	if len(cfg.Certificates) > 0 {
		u.local = leafOf(&cfg.Certificates[0])
	}
	c.tls = u
	return nil
}

// handshake runs the client handshake on conn. alpn is offered when the
// context configures no ALPN protocols (Envoy offers the cluster's HTTP
// protocol then).
func (u *upstreamTLS) handshake(ctx context.Context, conn net.Conn, alpn []string) (*tls.Conn, *filter.TLSInfo, error) {
	return u.handshakeWith(ctx, conn, alpn, connOpts{})
}

// handshakeWith is handshake with a request's transport socket options
// (autosni.go): its SNI replaces the context's sni, and its SAN replaces
// the context's SAN matchers, as Envoy's overrides do.
func (u *upstreamTLS) handshakeWith(ctx context.Context, conn net.Conn, alpn []string, o connOpts) (*tls.Conn, *filter.TLSInfo, error) {
	if u.notReady != nil {
		u.notReady.Inc()
		_ = conn.Close()
		return nil, nil, errSecretsNotReady
	}
	cfg := u.cfg
	if (len(cfg.NextProtos) == 0 && len(alpn) > 0) || o != (connOpts{}) {
		cfg = cfg.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = alpn
		}
		if o.sni != "" {
			cfg.ServerName = o.sni
		}
		if o.san != "" {
			names := []string{o.san}
			cfg.VerifyConnection = func(cs tls.ConnectionState) error { return u.verifier.verifyNames(cs, names) }
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		u.stats.connectionError.Inc()
		_ = conn.Close()
		return nil, nil, fmt.Errorf("upstream TLS handshake: %w", err)
	}
	u.stats.handshake.Inc()
	return tc, tlsInfo(tc.ConnectionState(), u.local), nil
}

// httpALPN is what an HTTP cluster offers through ALPN by default. An
// auto_config cluster offers h2 too on the first connection to a host
// only (autohttp.go); its pool's own connections are HTTP/1.1.
func (c *cluster) httpALPN() []string {
	if c.cfg.HTTP2 {
		return []string{"h2"}
	}
	return []string{"http/1.1"}
}

// dialTCP connects to ep for a TCP proxy: the cluster's connect timeout
// covers the TCP connect and the TLS handshake. The TLSInfo is nil for a
// plaintext cluster.
func (c *cluster) dialTCP(ctx context.Context, ep *endpoint) (net.Conn, *filter.TLSInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout.D())
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, "tcp", ep.address)
	if err != nil {
		c.stats.cxConnectFail.Inc()
		ep.cxFailed.Add(1)
		return nil, nil, err
	}
	c.stats.cxTotal.Inc()
	ep.cxTotal.Add(1)
	if c.tls == nil {
		return conn, nil, nil
	}
	tc, info, err := c.tls.handshake(ctx, conn, nil)
	if err != nil {
		return nil, nil, err
	}
	return tc, info, nil
}
