package wasmproxy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// pushSecrets is pushAll's snapshot with a listener and SDS secrets
// (protojson of tls.v3.Secret), and a plaintext backend cluster.
func (cp *controlPlane) pushSecrets(t *testing.T, version, listener string, secrets ...string) {
	t.Helper()
	cp.pushClusterSecrets(t, version, backendCluster("1", ""), listener, secrets...)
}

// pushClusterSecrets is pushSecrets with the cluster given.
func (cp *controlPlane) pushClusterSecrets(t *testing.T, version, cluster, listener string, secrets ...string) {
	t.Helper()
	cp.pushResources(t, version, map[resource.Type][]string{
		resource.ClusterType: {cluster}, resource.ListenerType: {listener}, resource.SecretType: secrets,
	})
}

// pushSecretsOnly sets a snapshot of SDS secrets alone, as a control
// plane serving only certificates has.
func (cp *controlPlane) pushSecretsOnly(t *testing.T, version string, secrets ...string) {
	t.Helper()
	cp.pushResources(t, version, map[resource.Type][]string{resource.SecretType: secrets})
}

// jsonString is b as a JSON string, for PEM in protojson text.
func jsonString(b []byte) string {
	j, _ := json.Marshal(string(b))
	return string(j)
}

// certSecret is an SDS Secret named name holding c's certificate and
// key; caSecret one holding ca as a validation context.
func certSecret(name string, c *testpki.Cert) string {
	return fmt.Sprintf(`{"name": %q, "tls_certificate": {"certificate_chain": {"inline_string": %s}, "private_key": {"inline_string": %s}}}`, name, jsonString(c.CertPEM), jsonString(c.KeyPEM))
}

func caSecret(name string, ca *testpki.CA) string {
	return fmt.Sprintf(`{"name": %q, "validation_context": {"trusted_ca": {"inline_string": %s}}}`, name, jsonString(ca.CertPEM))
}

// tlsListener is the listener "ingress" on port whose one filter chain
// terminates TLS with tlsContext (the DownstreamTlsContext's fields, as
// JSON) and answers every request with 200 "over TLS".
func tlsListener(port int, tlsContext string) string {
	return fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
	 "filter_chains": [{
	  "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
	   "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", %s}},
	  "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
	  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	  "stat_prefix": "ingress",
	  "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "over TLS"}}}]}]},
	  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port, tlsContext)
}

// waitServedCert waits, bounded, until a new TLS connection to addr
// with cfg sees the certificate want and is answered "over TLS".
func waitServedCert(t *testing.T, addr string, cfg *tls.Config, want *testpki.Cert) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			last = err.Error()
		} else {
			got := c.ConnectionState().PeerCertificates[0]
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			body, _ := io.ReadAll(c)
			c.Close()
			if got.SerialNumber.Cmp(want.Leaf.SerialNumber) == 0 && strings.Contains(string(body), "over TLS") {
				return
			}
			last = "served " + got.Subject.CommonName
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("never served %s; last: %s", want.Leaf.Subject.CommonName, last)
}

// TestXDSSecretRotation: a listener's DownstreamTlsContext takes its
// certificate and its client CA over SDS (sds_config: ads), as istiod
// and Envoy Gateway deliver them. Until the certificate arrives the
// listener warms (is not served); then a real mTLS client sees it; a
// rotated certificate is what the next connection sees.
func TestXDSSecretRotation(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			ca := testpki.NewCA(t, "mesh CA")
			first := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "first"}, DNSNames: []string{"ingress.local"}})
			second := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "second"}, DNSNames: []string{"ingress.local"}})
			client := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "client"}})
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))

			port := testnet.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			ads := `{"ads": {}, "resource_api_version": "V3"}`
			listener := tlsListener(port, fmt.Sprintf(`"require_client_certificate": true,
			 "common_tls_context": {
			  "tls_certificate_sds_secret_configs": [{"name": "ingress-cert", "sds_config": %s}],
			  "validation_context_sds_secret_config": {"name": "client-ca", "sds_config": %s}}`, ads, ads))
			mtls := &tls.Config{RootCAs: ca.Pool(), ServerName: "ingress.local", Certificates: []tls.Certificate{client.TLS}}

			// The client CA but not the certificate: the listener warms.
			cp.pushSecrets(t, "1", listener, caSecret("client-ca", ca))
			waitCounter(t, p, "sds.client-ca.update_success", 1)
			dump, _ := configDump(t, p)
			if dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0); dig(dl, "warming_state") == nil {
				t.Errorf("the listener without its certificate shows as %v, want warming_state", dl)
			}
			if c, err := tls.Dial("tcp", addr, mtls); err == nil {
				c.Close()
				t.Fatal("the listener serves before its certificate arrived over SDS")
			}

			cp.pushSecrets(t, "2", listener, caSecret("client-ca", ca), certSecret("ingress-cert", first))
			waitServedCert(t, addr, mtls, first)
			// A client without a certificate is refused: the CA from SDS
			// is enforced.
			if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "ingress.local"}); err == nil {
				// TLS 1.3: the server's refusal comes after the client's
				// handshake; a request shows whether it is served.
				c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				body, _ := io.ReadAll(c)
				c.Close()
				if strings.Contains(string(body), "over TLS") {
					t.Error("a client without a certificate was served")
				}
			}
			// Rotation: the next connection sees the new certificate.
			cp.pushSecrets(t, "3", listener, caSecret("client-ca", ca), certSecret("ingress-cert", second))
			waitServedCert(t, addr, mtls, second)
			waitCounter(t, p, "sds.ingress-cert.update_success", 2)
			if _, text := configDump(t, p); strings.Contains(text, "PRIVATE KEY") {
				t.Error("/config_dump shows a delivered private key")
			}
		})
	}
}

// TestXDSClusterSecrets: a delivered cluster's UpstreamTlsContext takes
// its client certificate and the CA it trusts over SDS. Until the
// certificate arrives the cluster warms, and so does the listener
// routing to it (neither is served); then the upstream, which requires
// a client certificate, sees the one from SDS.
func TestXDSClusterSecrets(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			ca := testpki.NewCA(t, "upstream CA")
			serverCert := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "backend"}, DNSNames: []string{"backend.local"}})
			client := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "proxy-from-sds"}})
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "upstream saw "+r.TLS.PeerCertificates[0].Subject.CommonName)
			}))
			up.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
			up.StartTLS()
			defer up.Close()
			_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
			clientSecret, caSec := certSecret("backend-client", client), caSecret("backend-ca", ca)
			cluster := backendCluster(upPort, `"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			  "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": "backend.local",
			  "common_tls_context": {
			   "tls_certificate_sds_secret_configs": [{"name": "backend-client", "sds_config": {"ads": {}, "resource_api_version": "V3"}}],
			   "validation_context_sds_secret_config": {"name": "backend-ca", "sds_config": {"ads": {}, "resource_api_version": "V3"}}}}},`)

			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))
			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			listener := ingressListener(port, `"route": {"cluster": "backend"}`)

			// The CA but not the client certificate: cluster and listener warm.
			cp.pushClusterSecrets(t, "1", cluster, listener, caSec)
			waitCounter(t, p, "sds.backend-ca.update_success", 1)
			waitCounter(t, p, "listener_manager.lds.update_success", 1)
			dump, _ := configDump(t, p)
			if got := dig(dump["ClustersConfigDump"], "dynamic_warming_clusters", 0, "cluster", "name"); got != "backend" || dig(dump["ClustersConfigDump"], "dynamic_active_clusters") != nil {
				t.Errorf("ClustersConfigDump %v, want backend warming", dump["ClustersConfigDump"])
			}
			if dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0); dig(dl, "warming_state") == nil {
				t.Errorf("the listener routing to a warming cluster shows as %v, want warming_state", dl)
			}
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
				t.Fatalf("the listener serves (%d) before its cluster's secret arrived", resp.StatusCode)
			}
			cp.pushClusterSecrets(t, "2", cluster, listener, caSec, clientSecret)
			waitBody(t, url, "upstream saw proxy-from-sds")
		})
	}
}

// TestXDSSecretFetchTimeout: a secret that does not come holds what
// needs it warming only for its sds_config's initial_fetch_timeout, as
// on Envoy; then the listener takes connections and closes each at once
// (Envoy's NotReadySslSocket, counted in
// listener.<address>.server_ssl_socket_factory.downstream_context_secrets_not_ready),
// and the cluster is served but fails every connection (503, flag UF,
// counted in cluster.<name>.client_ssl_socket_factory.upstream_context_secrets_not_ready). The secret
// arriving later is applied as any update.
func TestXDSSecretFetchTimeout(t *testing.T) {
	sdsSource := `{"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "1s"}`
	for _, apiType := range apiTypes {
		t.Run(apiType+"/listener", func(t *testing.T) {
			ca := testpki.NewCA(t, "late CA")
			cert := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "late"}, DNSNames: []string{"ingress.local"}})
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))
			port := testnet.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			listener := tlsListener(port, fmt.Sprintf(`"common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "ingress-cert", "sds_config": %s}]}`, sdsSource))
			client := &tls.Config{RootCAs: ca.Pool(), ServerName: "ingress.local"}

			start := time.Now()
			cp.pushSecrets(t, "1", listener)
			waitCounter(t, p, "listener_manager.lds.update_success", 1)
			// Warming: nothing listens; then each connection is closed.
			notReady := fmt.Sprintf("listener.127.0.0.1_%d.server_ssl_socket_factory.downstream_context_secrets_not_ready", port)
			deadline := time.Now().Add(30 * time.Second)
			for p.stats.Counter(notReady).Value() == 0 && time.Now().Before(deadline) {
				if c, err := tls.Dial("tcp", addr, client); err == nil {
					c.Close()
					t.Fatal("a TLS handshake succeeded without the certificate")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if p.stats.Counter(notReady).Value() == 0 {
				t.Fatalf("%s never counted: the listener never took a connection", notReady)
			}
			if since := time.Since(start); since < time.Second {
				t.Errorf("the listener took a connection after %v, before the 1s initial_fetch_timeout", since)
			}
			waitReady(t, p)
			dump, _ := configDump(t, p)
			if dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0); dig(dl, "active_state") == nil || dig(dl, "warming_state") != nil {
				t.Errorf("the listener past its secret's timeout shows as %v, want active_state, as Envoy's", dl)
			}
			cp.pushSecrets(t, "2", listener, certSecret("ingress-cert", cert))
			waitServedCert(t, addr, client, cert)
		})
		t.Run(apiType+"/cluster", func(t *testing.T) {
			ca := testpki.NewCA(t, "upstream CA")
			serverCert := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "backend"}, DNSNames: []string{"backend.local"}})
			client := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "proxy-from-sds"}})
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "upstream saw "+r.TLS.PeerCertificates[0].Subject.CommonName)
			}))
			up.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
			up.StartTLS()
			defer up.Close()
			_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
			cluster := backendCluster(upPort, fmt.Sprintf(`"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			  "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": "backend.local",
			  "common_tls_context": {
			   "tls_certificate_sds_secret_configs": [{"name": "backend-client", "sds_config": %s}],
			   "validation_context_sds_secret_config": {"name": "backend-ca", "sds_config": %s}}}},`, sdsSource, sdsSource))
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))
			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			logPath := filepath.Join(t.TempDir(), "access.log")
			listener := strings.Replace(ingressListener(port, `"route": {"cluster": "backend"}`), `"stat_prefix": "ingress",`,
				fmt.Sprintf(`"stat_prefix": "ingress", "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
				 "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
				 "path": %q, "log_format": {"text_format_source": {"inline_string": "%%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\n"}}}}],`, logPath), 1)

			start := time.Now()
			cp.pushClusterSecrets(t, "1", cluster, listener, caSecret("backend-ca", ca))
			waitCounter(t, p, "listener_manager.lds.update_success", 1)
			deadline := time.Now().Add(30 * time.Second)
			for getStatus(url) != 503 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if got := getStatus(url); got != 503 {
				t.Fatalf("past the client certificate's timeout: %d, want 503", got)
			}
			if since := time.Since(start); since < time.Second {
				t.Errorf("served after %v, before the 1s initial_fetch_timeout", since)
			}
			// As Envoy's NotReadySslSocket: a connection failure (UF), counted.
			waitLogLine(t, logPath, "503 UF")
			if n := p.stats.Counter("cluster.backend.client_ssl_socket_factory.upstream_context_secrets_not_ready").Value(); n == 0 {
				t.Error("cluster.backend.client_ssl_socket_factory.upstream_context_secrets_not_ready not counted")
			}
			waitReady(t, p)
			cp.pushClusterSecrets(t, "2", cluster, listener, caSecret("backend-ca", ca), certSecret("backend-client", client))
			waitBody(t, url, "upstream saw proxy-from-sds")
		})
	}
}
