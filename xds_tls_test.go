package wasmproxy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// TestXDSOverMTLS: the ADS stream goes through the bootstrap's xds
// cluster like any upstream request, so a control plane that serves
// gRPC over TLS and requires a client certificate (as istiod does) is
// reached with the cluster's UpstreamTlsContext: its client certificate,
// its trusted CA and SNI. The control plane sees the proxy's certificate
// and the pushed listener serves.
func TestXDSOverMTLS(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			dir := t.TempDir()
			ca := testpki.NewCA(t, "control plane CA")
			serverCert := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "xds.local"}, DNSNames: []string{"xds.local"}})
			clientCert := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "proxy-1"}})
			certFile, keyFile := clientCert.WriteFiles(t, dir, "proxy")
			caFile := ca.WriteFile(t, dir, "ca")

			peers := make(chan string, 16)
			creds := credentials.NewTLS(&tls.Config{
				Certificates: []tls.Certificate{serverCert.TLS},
				ClientCAs:    ca.Pool(),
				ClientAuth:   tls.RequireAndVerifyClientCert,
				MinVersion:   tls.VersionTLS12,
			})
			record := grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				if p, ok := peer.FromContext(ss.Context()); ok {
					if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
						select {
						case peers <- ti.State.PeerCertificates[0].Subject.CommonName:
						default:
						}
					}
				}
				return handler(srv, ss)
			})
			cp, _ := startControlPlane(t, "127.0.0.1:0", grpc.Creds(creds), record)

			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from the upstream") }))
			defer up.Close()
			_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())

			cfg := xdsBootstrap(cp.addr, apiType) + fmt.Sprintf(`    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: xds.local
        common_tls_context:
          tls_certificates: [{certificate_chain: {filename: %q}, private_key: {filename: %q}}]
          validation_context: {trusted_ca: {filename: %q}}
`, certFile, keyFile, caFile)
			p := startXDSProxy(t, cfg)

			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			cp.push(t, "1", []string{backendCluster(upPort, "")}, []string{ingressListener(port, `"route": {"cluster": "backend"}`)})
			waitBody(t, url, "from the upstream")
			if cn := <-peers; cn != "proxy-1" {
				t.Errorf("the control plane saw client certificate %q, want the xds cluster's (proxy-1)", cn)
			}
			// The stream is counted on the cluster, as any upstream request.
			if got := p.stats.Counter("cluster.xds_cluster.ssl.handshake").Value(); got == 0 {
				t.Error("cluster.xds_cluster.ssl.handshake = 0: the stream did not go through the cluster's TLS")
			}
		})
	}
}
