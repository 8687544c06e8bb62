package rbac_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// TestInProcess runs the filter in the library proxy behind mTLS with
// real client certificates: a policy on the peer's URI SAN, DNS SAN and
// subject; a header and path policy open to anyone; a DENY override on
// one route and a route that disables the filter; shadow rules counted
// beside the enforced ones; the 403 body and response code details
// Envoy gives.
func TestInProcess(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "proxy"}, DNSNames: []string{"proxy.example.com"}})
	admin := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "admin"}, URIs: []string{"spiffe://example.org/admin"}})
	bob := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "bob"}, DNSNames: []string{"bob.example.com"}})
	carol := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "carol", Organization: []string{"Acme"}}})

	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up "+r.URL.Path) }))
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := inproc.Start(t, fmt.Sprintf(`
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{certificate_chain: {inline_string: %s}, private_key: {inline_string: %s}}]
            validation_context: {trusted_ca: {inline_string: %s}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_CODE_DETAILS%%\n"}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /open}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.rbac: {"@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute}
              - match: {prefix: /deny}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute
                    rbac:
                      rules_stat_prefix: route.
                      rules:
                        action: DENY
                        policies:
                          no-carol: {permissions: [{any: true}], principals: [{authenticated: {principal_name: {prefix: "CN=carol"}}}]}
              - match: {prefix: /}
                route: {cluster: upstream}
          http_filters:
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              shadow_rules:
                action: DENY
                policies:
                  shadow: {permissions: [{header: {name: x-shadow, present_match: true}}], principals: [{any: true}]}
              rules:
                action: ALLOW
                policies:
                  admin:
                    permissions: [{url_path: {path: {prefix: /admin}}}]
                    principals: [{authenticated: {principal_name: {exact: "spiffe://example.org/admin"}}}]
                  dns:
                    permissions: [{url_path: {path: {exact: /dns}}}]
                    principals: [{authenticated: {principal_name: {exact: bob.example.com}}}]
                  subject:
                    permissions: [{url_path: {path: {exact: /subject}}}]
                    principals: [{authenticated: {principal_name: {exact: "CN=carol,O=Acme"}}}]
                  public:
                    permissions:
                    - and_rules:
                        rules:
                        - header: {name: ":method", string_match: {exact: GET}}
                        - url_path: {path: {prefix: /public}}
                        - not_rule: {destination_port: 1}
                    principals: [{direct_remote_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:%s
`, strconv.Quote(string(server.CertPEM)), strconv.Quote(string(server.KeyPEM)), strconv.Quote(string(ca.CertPEM)), logPath, inproc.Cluster("upstream", up)))
	base := "https://" + p.Addr("main")

	clientFor := func(c *testpki.Cert) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.example.com"}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS}
		}
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	anon, adminC, bobC, carolC := clientFor(nil), clientFor(admin), clientFor(bob), clientFor(carol)

	type check struct {
		client       *http.Client
		who, method  string
		path, header string
		want         int
	}
	checks := []check{
		{adminC, "admin", "GET", "/admin/x?q=1", "", 200}, // URI SAN
		{bobC, "bob", "GET", "/admin/x", "", 403},
		{anon, "anonymous", "GET", "/admin/x", "", 403}, // no certificate: not authenticated as anyone
		{bobC, "bob", "GET", "/dns", "", 200},           // DNS SAN
		{carolC, "carol", "GET", "/dns", "", 403},
		{carolC, "carol", "GET", "/subject", "", 200}, // subject
		{anon, "anonymous", "GET", "/public/page", "", 200},
		{anon, "anonymous", "POST", "/public/page", "", 403},  // and_rules: the method
		{anon, "anonymous", "GET", "/open/anything", "", 200}, // per-route: disabled
		{anon, "anonymous", "GET", "/deny/x", "", 200},        // per-route DENY override
		{carolC, "carol", "GET", "/deny/x", "", 403},
		{anon, "anonymous", "GET", "/public/shadow", "x-shadow", 200}, // shadow denies, rules allow
	}
	for _, c := range checks {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		if c.header != "" {
			req.Header.Set(c.header, "1")
		}
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s %s: %v", c.who, c.method, c.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s %s: %d %q, want %d", c.who, c.method, c.path, resp.StatusCode, b, c.want)
		}
		if c.want == 403 && string(b) != "RBAC: access denied" {
			t.Errorf("%s %s %s: body %q, want Envoy's \"RBAC: access denied\"", c.who, c.method, c.path, b)
		}
	}
	for name, want := range map[string]int64{
		"http.ingress_http.rbac.allowed":        5,
		"http.ingress_http.rbac.denied":         4,
		"http.ingress_http.rbac.shadow_allowed": 8,
		"http.ingress_http.rbac.shadow_denied":  1,
		"http.ingress_http.rbac.route.allowed":  1,
		"http.ingress_http.rbac.route.denied":   1,
	} {
		if got := p.Stat(t, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// Response code details name the denying policy, or none.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		log := string(b)
		if strings.Contains(log, "/deny/x 403 rbac_access_denied_matched_policy[no-carol]") &&
			strings.Contains(log, "/admin/x 403 rbac_access_denied_matched_policy[none]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log lacks the denials' details:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
