package proxy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// TestTLSSANMatchers: match_typed_subject_alt_names in a real mTLS
// handshake go through the model's one StringMatcher: a DNS exact
// matcher follows Envoy's DNS rule (a wildcard certificate name covers
// one label), ignore_case applies to an EMAIL suffix, and a URI
// safe_regex full-matches any alternative.
func TestTLSSANMatchers(t *testing.T) {
	p := newPKI(t)
	up := echoUpstream(t)
	chain := tcpChain("echo")
	chain.TLS = downstreamTLS(p.server)
	chain.TLS.RequireClientCertificate = true
	ca := inline(p.ca.CertPEM)
	chain.TLS.TrustedCA = &ca
	kafka, err := config.NewRegexp(`spiffe://cluster\.local/ns/kafka|spiffe://cluster\.local/ns/kafka/sa/alice`)
	if err != nil {
		t.Fatal(err)
	}
	chain.TLS.MatchSANs = []config.SANMatcher{
		{Type: "DNS", Matcher: config.StringMatcher{Exact: ptr("db.svc.example.com")}},
		{Type: "EMAIL", Matcher: config.StringMatcher{Suffix: ptr("@example.com"), IgnoreCase: true}},
		{Type: "URI", Matcher: config.StringMatcher{SafeRegex: kafka}},
	}
	f := startListener(t, nil, 1<<20, []*config.FilterChain{chain}, staticCluster("echo", up))
	ssl := "listener.127.0.0.1_0.ssl."

	client := func(o testpki.Options) *tls.Config {
		o.Client = true
		o.Subject = pkix.Name{CommonName: "client"}
		cert := p.ca.Issue(t, o)
		return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "proxy.example.com",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }}
	}
	tests := []struct {
		name     string
		cert     testpki.Options
		wantStat string
	}{
		{"DNS wildcard certificate covers the exact name", testpki.Options{DNSNames: []string{"*.svc.example.com"}}, "handshake"},
		{"DNS name in another case", testpki.Options{DNSNames: []string{"DB.SVC.example.com"}}, "handshake"},
		{"DNS wildcard one label too deep", testpki.Options{DNSNames: []string{"*.example.com"}}, "fail_verify_san"},
		{"EMAIL suffix in another case", testpki.Options{Emails: []string{"alice@EXAMPLE.com"}}, "handshake"},
		{"EMAIL other domain", testpki.Options{Emails: []string{"alice@example.org"}}, "fail_verify_san"},
		{"URI second alternative", testpki.Options{URIs: []string{"spiffe://cluster.local/ns/kafka/sa/alice"}}, "handshake"},
		{"URI regex must match whole", testpki.Options{URIs: []string{"spiffe://cluster.local/ns/kafka/sa/bob"}}, "fail_verify_san"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.counter(ssl + tc.wantStat)
			got, _, err := tlsExchange(f.addr, client(tc.cert), "ping")
			if ok := tc.wantStat == "handshake"; ok != (err == nil && got == "ping") {
				t.Fatalf("got %q, %v; want accepted = %v", got, err, ok)
			}
			f.waitCounter(t, ssl+tc.wantStat, before+1)
		})
	}
}
