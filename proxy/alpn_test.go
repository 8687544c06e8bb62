package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestFilterChainApplicationProtocols: filter_chain_match.
// application_protocols picks the chain from the TLS ClientHello's ALPN
// (the client's protocols in their order) and, with the http_inspector,
// from a plaintext connection's first line ("http/1.1", "http/1.0",
// "h2c"); a connection with none of the listed protocols takes the
// chain that lists none. The inspected bytes reach the upstream intact.
func TestFilterChainApplicationProtocols(t *testing.T) {
	p := newPKI(t)
	tagged := func(tag string) string {
		return tcpUpstream(t, func(c net.Conn) {
			_, _ = io.WriteString(c, tag+":")
			_, _ = io.Copy(c, c)
			_ = c.(*net.TCPConn).CloseWrite()
		})
	}
	chain := func(cluster, transport string, tlsCert bool, protos ...string) *config.FilterChain {
		c := tcpChain(cluster)
		c.Match = config.FilterChainMatch{TransportProtocol: transport, ApplicationProtocols: protos}
		if tlsCert {
			c.TLS = downstreamTLS(p.www, protos...)
		}
		return c
	}
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, HTTPInspector: true,
			FilterChains: []*config.FilterChain{
				chain("tls-h2", "tls", true, "h2"),
				chain("tls-any", "tls", true),
				chain("http1", "raw_buffer", false, "http/1.1", "http/1.0"),
				chain("h2c", "raw_buffer", false, "h2c"),
				chain("plain", "raw_buffer", false),
			},
		}},
	}
	for _, name := range []string{"tls-h2", "tls-any", "http1", "h2c", "plain"} {
		cfg.Clusters = append(cfg.Clusters, staticCluster(name, tagged(name)))
	}
	f := startBootstrap(t, cfg, nil)

	for _, tc := range []struct {
		alpn []string
		want string
	}{
		{[]string{"h2"}, "tls-h2:hi"},
		{[]string{"spdy/3", "h2"}, "tls-h2:hi"},
		{[]string{"http/1.1"}, "tls-any:hi"},
		{nil, "tls-any:hi"},
	} {
		got, _, err := tlsExchange(f.addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "www.example.com", NextProtos: tc.alpn}, "hi")
		if err != nil {
			t.Errorf("ALPN %q: %v", tc.alpn, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ALPN %q: got %q, want %q", tc.alpn, got, tc.want)
		}
	}

	for _, tc := range []struct{ name, send, wantTag string }{
		{"HTTP/1.1", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", "http1"},
		{"HTTP/1.0", "HEAD / HTTP/1.0\r\n\r\n", "http1"},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2c"},
		{"not HTTP", "\x00\x01binary\r\n", "plain"},
		{"HTTP/0.9 line", "GET /\r\n", "http1"},
		{"bad version", "GET / HTTP/1.x\r\n", "plain"},
		{"empty first line", "\r\nGET / HTTP/1.1\r\n", "plain"},
		{"short and closed", "GE", "plain"},
	} {
		if got, want := exchange(t, f.addr, tc.send), tc.wantTag+":"+tc.send; got != want {
			t.Errorf("%s: got %q, want %q", tc.name, got, want)
		}
	}
}
