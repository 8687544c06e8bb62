package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// TestForwardClientCert: x-forwarded-client-cert under each
// forward_client_cert_details mode, over real mTLS connections (and a
// TLS connection without a client certificate): the client's own header
// is removed, passed on, appended to or replaced as Envoy does, with By
// (the proxy's URI SAN), Hash and the set_current_client_cert_details
// fields of the client's certificate.
func TestForwardClientCert(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "proxy"}, DNSNames: []string{"proxy.example.com"},
		URIs: []string{"spiffe://cluster.local/ns/edge/sa/proxy"}})
	alice := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}},
		URIs: []string{"spiffe://cluster.local/ns/shop/sa/alice"}, DNSNames: []string{"alice.example.com", "alice.internal"}})
	sum := sha256.Sum256(alice.Leaf.Raw)
	hash := hex.EncodeToString(sum[:])

	got := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Write([]byte("ok"))
	})
	const sent = "By=spiffe://evil;Hash=00"
	for _, tc := range []struct {
		name    string
		mode    string
		details *config.ClientCertDetails
		mtls    bool
		want    string // "" when the header must be absent
	}{
		{"sanitize (default)", "", nil, true, ""},
		{"forward only", "FORWARD_ONLY", nil, true, sent},
		{"forward only, no client certificate", "FORWARD_ONLY", nil, false, ""},
		{"always forward only, no client certificate", "ALWAYS_FORWARD_ONLY", nil, false, sent},
		{"sanitize set", "SANITIZE_SET", &config.ClientCertDetails{Subject: true},
			true, `By=spiffe://cluster.local/ns/edge/sa/proxy;Hash=` + hash + `;Subject="CN=alice,O=Acme"`},
		{"sanitize set, URI and DNS", "SANITIZE_SET", &config.ClientCertDetails{URI: true, DNS: true},
			true, `By=spiffe://cluster.local/ns/edge/sa/proxy;Hash=` + hash + `;URI=spiffe://cluster.local/ns/shop/sa/alice;DNS=alice.example.com;DNS=alice.internal`},
		// Envoy's order, whatever the config's.
		{"sanitize set, everything but the PEM", "SANITIZE_SET", &config.ClientCertDetails{DNS: true, URI: true, Subject: true},
			true, `By=spiffe://cluster.local/ns/edge/sa/proxy;Hash=` + hash + `;Subject="CN=alice,O=Acme";URI=spiffe://cluster.local/ns/shop/sa/alice;DNS=alice.example.com;DNS=alice.internal`},
		{"append forward, no client certificate", "APPEND_FORWARD", nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startClientCertProxy(t, server, ca, up, func(h *config.HTTPConnectionManager) {
				h.ForwardClientCertDetails, h.ClientCertDetails = tc.mode, tc.details
			})
			seen := clientCertRequest(t, f.addr, ca, alice, tc.mtls, sent, got)
			if v := seen.Values("X-Forwarded-Client-Cert"); tc.want == "" && v != nil || tc.want != "" && (len(v) != 1 || v[0] != tc.want) {
				t.Errorf("upstream x-forwarded-client-cert = %q, want %q", v, tc.want)
			}
		})
	}

	// APPEND_FORWARD with the certificate and chain: the element is
	// appended after the client's, and Cert and Chain decode to the PEM
	// the client presented.
	f := startClientCertProxy(t, server, ca, up, func(h *config.HTTPConnectionManager) {
		h.ForwardClientCertDetails = "APPEND_FORWARD"
		h.ClientCertDetails = &config.ClientCertDetails{Cert: true, Chain: true, Subject: true}
	})
	v := clientCertRequest(t, f.addr, ca, alice, true, sent, got).Get("X-Forwarded-Client-Cert")
	prefix := sent + ",By=spiffe://cluster.local/ns/edge/sa/proxy;Hash=" + hash + `;Cert="`
	if !strings.HasPrefix(v, prefix) {
		t.Fatalf("x-forwarded-client-cert = %q, want it to start with %q", v, prefix)
	}
	fields := strings.Split(strings.TrimPrefix(v, sent+","), ";")
	if len(fields) != 5 || fields[4] != `Subject="CN=alice,O=Acme"` {
		t.Fatalf("x-forwarded-client-cert element %q: want By, Hash, Cert, Chain, Subject", v)
	}
	for i, name := range []string{"Cert", "Chain"} {
		quoted := strings.TrimPrefix(fields[2+i], name+"=")
		pemText, err := url.PathUnescape(strings.Trim(quoted, `"`))
		if err != nil || pemText != string(alice.CertPEM) || strings.ContainsAny(quoted[1:len(quoted)-1], "\n =+/") {
			t.Errorf("%s = %q: does not decode to the client's PEM (%v)", name, quoted, err)
		}
	}
}

func startClientCertProxy(t *testing.T, server *testpki.Cert, ca *testpki.CA, up string, adjust func(*config.HTTPConnectionManager)) *fixture {
	t.Helper()
	return startWith(t, []*config.Route{prefixRoute("/", "up")}, nil, nil, func(l *config.Listener) {
		chain := l.FilterChains[0]
		chain.TLS = downstreamTLS(server)
		trusted := inline(ca.CertPEM)
		chain.TLS.TrustedCA = &trusted // a client certificate is asked for, not required
		adjust(chain.HTTP)
	}, staticCluster("up", up))
}

// clientCertRequest sends one request over TLS (with alice's certificate
// when mtls) carrying x-forwarded-client-cert: sent, and returns the
// headers the upstream saw.
func clientCertRequest(t *testing.T, addr string, ca *testpki.CA, alice *testpki.Cert, mtls bool, sent string, got chan http.Header) http.Header {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.example.com"}
	if mtls {
		cfg.Certificates = []tls.Certificate{alice.TLS}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
	req.Header.Set("X-Forwarded-Client-Cert", sent)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return <-got
}

// TestServerHeaderTransformation: the server header of responses (from
// the upstream, and the proxy's own) under each
// server_header_transformation, over HTTP/1.1 and HTTP/2.
func TestServerHeaderTransformation(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "origin/1.0")
		w.Write([]byte("ok"))
	})
	h2 := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	for _, tc := range []struct {
		mode               string
		proxied, localResp []string // the server values of a proxied response and of a direct response
	}{
		{"", []string{"edge"}, []string{"edge"}},
		{"APPEND_IF_ABSENT", []string{"origin/1.0"}, []string{"edge"}},
		{"PASS_THROUGH", []string{"origin/1.0"}, nil},
	} {
		routes := []*config.Route{
			{Match: config.RouteMatch{Prefix: "/local", CaseSensitive: true}, DirectResponse: &config.DirectResponse{Status: 200, Body: []byte("local")}},
			prefixRoute("/", "up"),
		}
		f := startWith(t, routes, nil, nil, func(l *config.Listener) {
			l.FilterChains[0].HTTP.ServerName = "edge"
			l.FilterChains[0].HTTP.ServerHeaderTransformation = tc.mode
		}, staticCluster("up", up))
		for _, client := range []*http.Client{http.DefaultClient, h2} {
			for path, want := range map[string][]string{"/": tc.proxied, "/local": tc.localResp} {
				resp, err := client.Get("http://" + f.addr + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if v := resp.Header.Values("Server"); strings.Join(v, "|") != strings.Join(want, "|") {
					t.Errorf("%q %s %s: server %q, want %q", tc.mode, resp.Proto, path, v, want)
				}
			}
		}
	}
}
