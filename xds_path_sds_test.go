package wasmproxy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

const (
	secretTypeURL    = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	extensionTypeURL = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
)

// TestXDSSecretsAndFiltersFromFiles: everything from files, as Envoy's
// filesystem subscriptions. The listener's certificate (sds_config:
// path_config_source) and the CA its cluster trusts for a TLS upstream
// come from Secret files; an HTTP filter's config from an ECDS file
// (config_discovery.config_source: path_config_source). A real TLS
// client sees the certificate; rewriting the file rotates it for the
// next connection; rewriting the ECDS file changes what the filter does.
func TestXDSSecretsAndFiltersFromFiles(t *testing.T) {
	ca := testpki.NewCA(t, "file CA")
	first := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "first"}, DNSNames: []string{"ingress.local"}})
	second := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "second"}, DNSNames: []string{"ingress.local"}})
	upCert := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "backend"}, DNSNames: []string{"backend.local"}})
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "upstream over TLS") }))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{upCert.TLS}}
	up.StartTLS()
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())

	dir := t.TempDir()
	cdsFile, ldsFile := filepath.Join(dir, "cds.json"), filepath.Join(dir, "lds.json")
	certFile, caFile, ecdsFile := filepath.Join(dir, "cert.json"), filepath.Join(dir, "ca.json"), filepath.Join(dir, "ecds.json")
	fileSource := func(path string) string {
		return fmt.Sprintf(`{"path_config_source": {"path": %q}, "resource_api_version": "V3"}`, path)
	}
	headerFilter := func(value string) string {
		return fmt.Sprintf(`{"name": "add-version", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
		 "mutations": {"response_mutations": [{"append": {"header": {"key": "x-filter-version", "value": %q}}}]}}}`, value)
	}
	port := testnet.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	writeDiscoveryResponse(t, certFile, secretTypeURL, "s1", certSecret("ingress-cert", first))
	writeDiscoveryResponse(t, caFile, secretTypeURL, "ca1", caSecret("backend-ca", ca))
	writeDiscoveryResponse(t, ecdsFile, extensionTypeURL, "e1", headerFilter("one"))
	writeDiscoveryResponse(t, cdsFile, clusterTypeURL, "c1", backendCluster(upPort, fmt.Sprintf(`"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
	  "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": "backend.local",
	  "common_tls_context": {"validation_context_sds_secret_config": {"name": "backend-ca", "sds_config": %s}}}},`, fileSource(caFile))))
	writeDiscoveryResponse(t, ldsFile, listenerTypeURL, "l1", fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
	 "filter_chains": [{
	  "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
	   "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
	   "common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "ingress-cert", "sds_config": %s}]}}},
	  "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
	   "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	   "stat_prefix": "ingress",
	   "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
	   "http_filters": [
	    {"name": "add-version", "config_discovery": {"config_source": %s, "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"]}},
	    {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`,
		port, fileSource(certFile), fileSource(ecdsFile)))
	p := startXDSProxy(t, fmt.Sprintf(`node: {id: proxy-1, cluster: fleet}
dynamic_resources:
  cds_config: {path_config_source: {path: %s}, resource_api_version: V3}
  lds_config: {path_config_source: {path: %s}, resource_api_version: V3}
`, cdsFile, ldsFile))

	// get makes one request over a new TLS connection: the serial of the
	// certificate the listener showed, the response's filter header and
	// body.
	get := func() (serial *big.Int, header, body string, err error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "ingress.local"})
		if err != nil {
			return nil, "", "", err
		}
		defer c.Close()
		serial = c.ConnectionState().PeerCertificates[0].SerialNumber
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		raw, _ := io.ReadAll(c)
		head, b, _ := strings.Cut(string(raw), "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "x-filter-version") {
				header = strings.TrimSpace(v)
			}
		}
		return serial, header, b, nil
	}
	// until waits, bounded, for a request to see cert, header and the
	// upstream's body.
	until := func(cert *testpki.Cert, header string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			serial, h, body, err := get()
			if err == nil && serial.Cmp(cert.Leaf.SerialNumber) == 0 && h == header && strings.Contains(body, "upstream over TLS") {
				return
			}
			last = fmt.Sprintf("serial %v header %q body %q err %v", serial, h, body, err)
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("never saw certificate %v with x-filter-version %q and the upstream's body; last: %s", cert.Leaf.SerialNumber, header, last)
	}
	until(first, "one")
	waitReady(t, p)

	// Rotation: the certificate file is rewritten; the next connection
	// sees the new certificate.
	writeDiscoveryResponse(t, certFile, secretTypeURL, "s2", certSecret("ingress-cert", second))
	until(second, "one")
	waitCounter(t, p, "sds.ingress-cert.update_success", 2)

	// The ECDS file is rewritten: the filter's new config applies.
	writeDiscoveryResponse(t, ecdsFile, extensionTypeURL, "e2", headerFilter("two"))
	until(second, "two")

	// A secret of the wrong kind (a generic secret where the listener
	// wants a certificate) is never served: the listener warms, and the
	// version before keeps serving the certificate it has.
	writeDiscoveryResponse(t, certFile, secretTypeURL, "s3", `{"name": "ingress-cert", "generic_secret": {"secret": {"inline_string": "x"}}}`)
	waitCounter(t, p, "sds.ingress-cert.update_attempt", 3)
	until(second, "two")
}
