package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// pki is the set of certificates the TLS tests share.
type pki struct {
	ca, otherCA          *testpki.CA
	server, www, db      *testpki.Cert
	alice, mallory, bob  *testpki.Cert
	upstreamSrv, proxyCl *testpki.Cert
}

func newPKI(t *testing.T) *pki {
	ca, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "other CA")
	return &pki{
		ca: ca, otherCA: other,
		server: ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "proxy"}, DNSNames: []string{"proxy.example.com"}}),
		www:    ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "www"}, DNSNames: []string{"www.example.com"}}),
		db:     ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "db"}, DNSNames: []string{"db.example.com"}}),
		alice: ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}},
			URIs: []string{"spiffe://cluster.local/ns/kafka/sa/alice"}, DNSNames: []string{"alice.example.com"}}),
		bob: ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "bob"},
			URIs: []string{"spiffe://cluster.local/ns/other/sa/bob"}}),
		mallory:     other.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "mallory"}, URIs: []string{"spiffe://cluster.local/ns/kafka/sa/mallory"}}),
		upstreamSrv: ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "broker"}, DNSNames: []string{"broker.internal"}}),
		proxyCl:     ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "the proxy"}}),
	}
}

func inline(b []byte) config.DataSource { return config.DataSource{Inline: b} }

func downstreamTLS(cert *testpki.Cert, alpn ...string) *config.DownstreamTLS {
	return &config.DownstreamTLS{CommonTLS: config.CommonTLS{
		MinVersion: "TLSv1_2", MaxVersion: "TLSv1_3", ALPN: alpn,
		Certificates: []config.TLSCertificate{{CertificateChain: inline(cert.CertPEM), PrivateKey: inline(cert.KeyPEM)}},
	}}
}

// mtls requires a client certificate from ca whose URI SAN is in the
// kafka namespace.
func mtls(cert *testpki.Cert, ca *testpki.CA) *config.DownstreamTLS {
	d := downstreamTLS(cert)
	d.RequireClientCertificate = true
	ds := inline(ca.CertPEM)
	d.TrustedCA = &ds
	prefix := "spiffe://cluster.local/ns/kafka/"
	d.MatchSANs = []config.SANMatcher{{Type: "URI", Matcher: config.StringMatcher{Prefix: &prefix}}}
	return d
}

// tlsExchange dials addr with TLS, writes msg, half-closes and reads
// until the end. The error is the first one the client saw: with TLS 1.3
// a rejected client certificate shows up on the first read.
func tlsExchange(addr string, cfg *tls.Config, msg string) (string, *tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", nil, err
	}
	_ = c.CloseWrite()
	got, err := io.ReadAll(c)
	st := c.ConnectionState()
	return string(got), &st, err
}

func TestTLSDownstreamMTLS(t *testing.T) {
	p := newPKI(t)
	up := echoUpstream(t)
	h := &netHooks{}
	chain := tcpChain("echo", "f")
	chain.TLS = mtls(p.server, p.ca)
	f := startListener(t, netLoader{"f": h}, 1<<20, []*config.FilterChain{chain}, staticCluster("echo", up))
	ssl := "listener.127.0.0.1_0.ssl."

	client := func(cert *testpki.Cert) *tls.Config {
		cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "proxy.example.com"}
		if cert != nil {
			// Sent even when the server's list of acceptable CAs does not
			// name its issuer (Go's client would send none then).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
		}
		return cfg
	}
	tests := []struct {
		name     string
		cfg      *tls.Config
		wantErr  bool
		wantStat string
	}{
		{"valid client certificate", client(p.alice), false, "handshake"},
		{"no client certificate", client(nil), true, "fail_verify_no_cert"},
		{"certificate from another CA", client(p.mallory), true, "fail_verify_error"},
		{"certificate outside the allowed SANs", client(p.bob), true, "fail_verify_san"},
		{"TLS 1.2 client", func() *tls.Config { c := client(p.alice); c.MaxVersion = tls.VersionTLS12; return c }(), false, "handshake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.counter(ssl + tc.wantStat)
			got, _, err := tlsExchange(f.addr, tc.cfg, "ping")
			switch {
			case tc.wantErr && err == nil:
				t.Fatalf("connection succeeded (read %q), want a failed handshake", got)
			case !tc.wantErr && (err != nil || got != "ping"):
				t.Fatalf("got %q, %v; want the echo", got, err)
			}
			f.waitCounter(t, ssl+tc.wantStat, before+1)
		})
	}

	t.Run("plaintext on the TLS port", func(t *testing.T) {
		before := f.counter(ssl + "connection_error")
		if got := exchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
			t.Fatalf("plaintext client got %q, want the connection closed", got)
		}
		f.waitCounter(t, ssl+"connection_error", before+1)
	})

	t.Run("TLS facts reach the filter", func(t *testing.T) {
		// The last connection the filter saw is the TLS 1.2 one above;
		// make a fresh TLS 1.3 one.
		if got, _, err := tlsExchange(f.addr, client(p.alice), "x"); err != nil || got != "x" {
			t.Fatalf("got %q, %v", got, err)
		}
		h.mu.Lock()
		info := h.infos[len(h.infos)-1]
		h.mu.Unlock()
		ti := info.DownstreamTLS
		if ti == nil {
			t.Fatal("no DownstreamTLS")
		}
		checks := map[string][2]string{
			"version":     {ti.Version, "TLSv1.3"},
			"sni":         {ti.ServerName, "proxy.example.com"},
			"peer":        {filter.CertificateSubject(ti.PeerCertificate()), "CN=alice,O=Acme"},
			"peer uri":    {filter.FirstURISAN(ti.PeerCertificate()), "spiffe://cluster.local/ns/kafka/sa/alice"},
			"peer dns":    {filter.FirstDNSSAN(ti.PeerCertificate()), "alice.example.com"},
			"local":       {filter.CertificateSubject(ti.LocalCertificate), "CN=proxy"},
			"local dns":   {filter.FirstDNSSAN(ti.LocalCertificate), "proxy.example.com"},
			"peer sha256": {fmt.Sprint(len(ti.PeerCertificateSHA256())), "64"},
		}
		for what, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s = %q, want %q", what, c[0], c[1])
			}
		}
	})
}

// TestTLSFilterChainsBySNI: chains picked by SNI (exact, wildcard,
// catch-all), a TLS passthrough chain, and no match.
func TestTLSFilterChainsBySNI(t *testing.T) {
	p := newPKI(t)
	echo := echoUpstream(t)
	// The passthrough target terminates TLS itself with its own certificate.
	ptLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.upstreamSrv.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptLn.Close() })
	go func() {
		for {
			c, err := ptLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				_, _ = fmt.Fprintf(c, "broker got %s", b)
			}()
		}
	}()

	www := tcpChain("echo")
	www.Match.ServerNames = []string{"www.example.com"}
	www.TLS = downstreamTLS(p.www)
	wild := tcpChain("echo")
	wild.Match.ServerNames = []string{"*.example.com"}
	wild.TLS = downstreamTLS(p.db)
	passthrough := tcpChain("broker")
	passthrough.Match = config.FilterChainMatch{ServerNames: []string{"broker.internal"}, TransportProtocol: "tls"}
	f := startListener(t, nil, 1<<20, []*config.FilterChain{www, wild, passthrough},
		staticCluster("echo", echo), staticCluster("broker", ptLn.Addr().String()))

	tests := []struct {
		sni      string
		wantCert string // CN of the certificate the client was shown
		wantErr  bool
	}{
		{"www.example.com", "www", false},
		{"db.example.com", "db", false},
		{"deep.sub.example.com", "db", false},
		{"broker.internal", "broker", false},
		{"unknown.test", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: tc.sni, InsecureSkipVerify: tc.sni == "deep.sub.example.com"}
			got, st, err := tlsExchange(f.addr, cfg, "hi")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, want no filter chain match", got)
				}
				f.waitCounter(t, "listener.127.0.0.1_0.no_filter_chain_match", 1)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cn := st.PeerCertificates[0].Subject.CommonName; cn != tc.wantCert {
				t.Errorf("server certificate %q, want %q", cn, tc.wantCert)
			}
			want := "hi"
			if tc.sni == "broker.internal" {
				want = "broker got hi"
			}
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	t.Run("no SNI and no catch-all", func(t *testing.T) {
		_, _, err := tlsExchange(f.addr, &tls.Config{InsecureSkipVerify: true}, "x")
		if err == nil {
			t.Fatal("want the connection refused without SNI")
		}
	})
}

// TestHTTPOverTLS: an HTTP connection manager on a TLS chain speaks
// HTTP/2 or HTTP/1.1 as ALPN decides, and filters see the client
// certificate.
// TestHTTPOverTLS: HTTP/2 through ALPN and HTTP/1.1 over a TLS filter
// chain, with the client's certificate visible to filters; with
// request_headers_timeout too, which wraps HTTP/1.1 connections and must
// keep all of that (and answer slow headers with an encrypted 408).
func TestHTTPOverTLS(t *testing.T) {
	for _, timeout := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("request_headers_timeout=%v", timeout), func(t *testing.T) { testHTTPOverTLS(t, timeout) })
	}
}

func testHTTPOverTLS(t *testing.T, headersTimeout time.Duration) {
	p := newPKI(t)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xfp=%s", r.Header.Get("X-Forwarded-Proto"))
	})
	seen := &hooks{}
	var subject, protocol string
	seen.decodeHeaders = func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
		protocol = cb.Info().Protocol
		if ti := cb.Info().DownstreamTLS; ti != nil {
			subject = filter.CertificateSubject(ti.PeerCertificate())
		}
		return filter.HeadersContinue
	}
	hcm := &config.HTTPConnectionManager{
		StatPrefix: "tls", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
		Routes:  &config.RouteConfig{VirtualHosts: []*config.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute("/", "web")}}}},
		Filters: []*config.HTTPFilter{{Name: "seen"}, {Name: "router", Router: true}},

		RequestHeadersTimeout: config.Duration(headersTimeout),
	}
	d := downstreamTLS(p.server, "h2", "http/1.1")
	ca := inline(p.ca.CertPEM)
	d.TrustedCA = &ca // request (not require) a client certificate
	chain := &config.FilterChain{TLS: d, HTTP: hcm}
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: []*config.FilterChain{chain}}},
		Clusters:  []*config.Cluster{staticCluster("web", up)},
	}
	f := startBootstrap(t, cfg, loader{"seen": seen})

	tlsCfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "proxy.example.com", Certificates: []tls.Certificate{p.alice.TLS}}
	h2t := &http2.Transport{TLSClientConfig: tlsCfg}
	h1t := &http.Transport{TLSClientConfig: tlsCfg.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	t.Cleanup(func() { h2t.CloseIdleConnections(); h1t.CloseIdleConnections() })
	h2, h1 := &http.Client{Transport: h2t}, &http.Client{Transport: h1t}
	for _, tc := range []struct {
		name   string
		client *http.Client
		want   string
	}{
		{"HTTP/2 through ALPN", h2, "HTTP/2"},
		{"HTTP/1.1", h1, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject = ""
			resp, err := tc.client.Get("https://" + f.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "xfp=https" {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "xfp=https")
			}
			if protocol != tc.want {
				t.Errorf("downstream protocol %q, want %q", protocol, tc.want)
			}
			if subject != "CN=alice,O=Acme" {
				t.Errorf("filter saw peer subject %q", subject)
			}
		})
	}
	t.Run("plaintext HTTP on the TLS port", func(t *testing.T) {
		if got := exchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
			t.Fatalf("got %q, want the connection closed", got)
		}
	})
	if headersTimeout == 0 {
		return
	}
	t.Run("slow headers over TLS", func(t *testing.T) {
		c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "proxy.example.com", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		start := time.Now()
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.TrimSpace(line) != "HTTP/1.1 408 Request Timeout" {
			t.Fatalf("got %q, want the 408 (encrypted)", line)
		}
		// Only the header timeout answers 408 (without it the read ends
		// at the 10 s deadline, with no line); how soon is the machine's.
		t.Logf("408 after %v", time.Since(start))
		if got := f.st.Counter("http.tls.downstream_rq_header_timeout").Value(); got != 1 {
			t.Errorf("downstream_rq_header_timeout = %d, want 1", got)
		}
	})
}

// TestUpstreamTLS: clusters reach a TLS upstream that requires the
// proxy's client certificate, over TCP and HTTP; an upstream the
// trusted CA does not vouch for is refused.
func TestUpstreamTLS(t *testing.T) {
	p := newPKI(t)
	var lastSNI string
	srvCfg := &tls.Config{
		Certificates: []tls.Certificate{p.upstreamSrv.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.Pool(),
		NextProtos:   []string{"http/1.1"},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			lastSNI = h.ServerName
			return nil, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
	}()

	tlsCluster := func(name string, ca *testpki.CA) *config.Cluster {
		cl := staticCluster(name, ln.Addr().String())
		ds := inline(ca.CertPEM)
		cl.TLS = &config.UpstreamTLS{SNI: "broker.internal", CommonTLS: config.CommonTLS{
			MinVersion: "TLSv1_2", MaxVersion: "TLSv1_3", TrustedCA: &ds,
			Certificates: []config.TLSCertificate{{CertificateChain: inline(p.proxyCl.CertPEM), PrivateKey: inline(p.proxyCl.KeyPEM)}},
		}}
		return cl
	}
	good, wrongCA := tlsCluster("broker", p.ca), tlsCluster("untrusted", p.otherCA)

	t.Run("tcp_proxy", func(t *testing.T) {
		h := &netHooks{}
		f := startListener(t, netLoader{"f": h}, 1<<20, []*config.FilterChain{tcpChain("broker", "f")}, good)
		got := exchange(t, f.addr, "GET / HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
		if !strings.Contains(got, "hello the proxy") {
			t.Fatalf("got %q", got)
		}
		if lastSNI != "broker.internal" {
			t.Errorf("upstream saw SNI %q", lastSNI)
		}
		f.waitCounter(t, "cluster.broker.ssl.handshake", 1)
		h.mu.Lock()
		ut := h.infos[0].UpstreamTLS
		h.mu.Unlock()
		if ut == nil || filter.CertificateSubject(ut.PeerCertificate()) != "CN=broker" || filter.CertificateSubject(ut.LocalCertificate) != "CN=the proxy" {
			t.Fatalf("upstream TLS info = %+v", ut)
		}
	})
	t.Run("tcp_proxy to an untrusted upstream", func(t *testing.T) {
		f := startListener(t, nil, 1<<20, []*config.FilterChain{tcpChain("untrusted")}, wrongCA)
		if got := exchange(t, f.addr, "x"); got != "" {
			t.Fatalf("got %q", got)
		}
		f.waitCounter(t, "cluster.untrusted.ssl.fail_verify_error", 1)
	})
	t.Run("router", func(t *testing.T) {
		// A response filter sees the upstream TLS session (upstream.*
		// properties), as a Wasm plugin would through proxy_get_property.
		var ut *filter.TLSInfo
		h := &hooks{encodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			ut = cb.Info().UpstreamTLS
			return filter.HeadersContinue
		}}
		f := start(t, []*config.Route{prefixRoute("/", "broker")}, []string{"f"}, loader{"f": h}, good)
		for i := 0; i < 2; i++ { // the second request reuses the pooled connection
			ut = nil
			resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
			if resp.StatusCode != 200 || body != "hello the proxy" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if ut == nil || filter.CertificateSubject(ut.PeerCertificate()) != "CN=broker" ||
				filter.CertificateSubject(ut.LocalCertificate) != "CN=the proxy" || ut.Version == "" {
				t.Fatalf("request %d: upstream TLS info = %+v", i, ut)
			}
		}
	})
	t.Run("terminated CONNECT", func(t *testing.T) {
		// The tunnel's upstream side is the cluster's TLS connection:
		// the client speaks plaintext into the tunnel (connect.go).
		f := startWith(t, []*config.Route{connectRoute("broker", &config.ConnectConfig{})}, nil, loader{}, upgradeTypes(config.UpgradeConnect), good)
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		// No half-close: the upstream's close after its answer ends the
		// tunnel and the connection.
		if _, err := io.WriteString(c, "CONNECT broker:443 HTTP/1.1\r\nHost: broker:443\r\n\r\nGET / HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(string(got), "hello the proxy") {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}
