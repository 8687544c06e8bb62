package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// tcpService runs serve for every connection on a loopback port and
// returns the port.
func tcpService(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// replacePorts returns an edit for setup that points ports of the
// example's config (pairs: from, to) at ports of the test.
func replacePorts(pairs ...int) func(string) string {
	return func(s string) string {
		for i := 0; i+1 < len(pairs); i += 2 {
			s = strings.ReplaceAll(s, fmt.Sprintf("port_value: %d", pairs[i]), fmt.Sprintf("port_value: %d", pairs[i+1]))
		}
		return s
	}
}

// roundTrip writes each part (pausing between them so they arrive as
// separate reads), half-closes, and returns what comes back until the
// connection ends.
func roundTrip(t *testing.T, c net.Conn, parts ...string) (string, error) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := c.Write([]byte(p)); err != nil {
			return "", err
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestTCPPrepend runs examples/tcp-prepend (the second seed's
// onDownstreamData) in front of a real TCP echo service.
func TestTCPPrepend(t *testing.T) {
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	dir, listen, admin := setup(t, "examples/tcp-prepend/envoy.yaml", plugin(t, "examples/tcp-prepend"), replacePorts(9000, echo))
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--component-log-level", "wasm:debug")
	const p = "prepend payload to downstream data"
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"one chunk", []string{"hello"}, p + "hello"},
		{"every chunk gets the payload", []string{"one", "two"}, p + "one" + p + "two"},
		{"no data, no payload", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", in.listen)
			if err != nil {
				t.Fatal(err)
			}
			got, err := roundTrip(t, c, tc.parts...)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if !strings.Contains(in.Logs(), "ready to process streams") {
		t.Errorf("no debug log from the plugin's start:\n%s", in.Logs())
	}
	if _, stats := get(t, "http://"+in.admin+"/stats"); !strings.Contains(stats, "tcp.echo.downstream_cx_total: 3") {
		t.Errorf("stats lack tcp.echo.downstream_cx_total: 3:\n%s", grepLines(stats, "tcp."))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// mtlsSetup makes a CA, the proxy's certificate (written where
// examples/mtls-identity/envoy.yaml expects it) and client certificates,
// and starts the example with its upstreams replaced by the test's.
type mtlsFixture struct {
	in                  *instance
	kafka               string // the TCP listener
	ca                  *testpki.CA
	alice, mallory, bob *testpki.Cert
	// seen receives what the upstreams saw: the HTTP header, or the TCP
	// identity line and the data after it.
	seen chan string
}

func mtlsSetup(t *testing.T) *mtlsFixture {
	t.Helper()
	f := &mtlsFixture{seen: make(chan string, 16)}
	f.ca = testpki.NewCA(t, "e2e CA")
	other := testpki.NewCA(t, "rogue CA")
	server := f.ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}})
	f.alice = f.ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}}})
	f.bob = f.ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "bob"}})
	f.mallory = other.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "admin"}})

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.seen <- r.Header.Get("X-Client-Identity")
		fmt.Fprint(w, "hello from the app\n")
	})}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { app.Close() })
	broker := tcpService(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		line, _ := r.ReadString('\n')
		rest, _ := io.ReadAll(r)
		f.seen <- line + "|" + string(rest)
		fmt.Fprintf(c, "ack %d bytes", len(rest))
	})
	kafkaPort := freePort(t)
	dir, listen, admin := setup(t, "examples/mtls-identity/envoy.yaml", plugin(t, "examples/mtls-identity"),
		replacePorts(9080, appLn.Addr().(*net.TCPAddr).Port, 9092, broker, 19093, kafkaPort))
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	server.WriteFiles(t, certs, "server")
	f.ca.WriteFile(t, certs, "ca")
	f.in = run(t, dir, listen, admin, "-c", "envoy.yaml")
	f.kafka = fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	return f
}

func (f *mtlsFixture) clientTLS(cert *testpki.Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost"}
	if cert != nil {
		// Offered even when the proxy's CA list does not name its issuer.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	return cfg
}

func (f *mtlsFixture) stat(t *testing.T, name string) string {
	_, stats := get(t, "http://"+f.in.admin+"/stats")
	for _, l := range strings.Split(stats, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return v
		}
	}
	return ""
}

// TestMTLSIdentityHTTP: over HTTP/2 and HTTP/1.1 the app sees the
// verified identity, never the one the client claims; clients without a
// valid certificate are refused and counted; plaintext is refused.
func TestMTLSIdentityHTTP(t *testing.T) {
	f := mtlsSetup(t)
	url := "https://" + f.in.listen + "/"
	for _, tc := range []struct {
		name      string
		transport http.RoundTripper
		proto     string
	}{
		{"HTTP/2", &http2.Transport{TLSClientConfig: f.clientTLS(f.alice)}, "HTTP/2.0"},
		{"HTTP/1.1", &http.Transport{TLSClientConfig: f.clientTLS(f.alice), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("X-Client-Identity", "CN=admin") // a lie the plugin must drop
			resp, err := (&http.Client{Transport: tc.transport, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello from the app\n" || resp.Proto != tc.proto {
				t.Fatalf("got %s %d %q", resp.Proto, resp.StatusCode, body)
			}
			if got := <-f.seen; got != "CN=alice,O=Acme" {
				t.Fatalf("the app saw x-client-identity %q, want the certificate's subject", got)
			}
		})
	}
	for _, tc := range []struct {
		name string
		cert *testpki.Cert
		stat string
	}{
		{"no client certificate", nil, "fail_verify_no_cert"},
		{"certificate from another CA", f.mallory, "fail_verify_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS(tc.cert)}, Timeout: 10 * time.Second}
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with %d, want a failed handshake", resp.StatusCode)
			}
			if got := f.stat(t, "listener.127.0.0.1_"+portOf(f.in.listen)+".ssl."+tc.stat); got != "1" {
				t.Errorf("ssl.%s = %q, want 1", tc.stat, got)
			}
		})
	}
	t.Run("plaintext on the TLS port", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + f.in.listen + "/")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("plaintext request got %d", resp.StatusCode)
		}
		if got := f.stat(t, "listener.127.0.0.1_"+portOf(f.in.listen)+".ssl.connection_error"); got == "" || got == "0" {
			t.Errorf("ssl.connection_error = %q after a plaintext request", got)
		}
	})
	// After every refusal the proxy still serves.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS(f.bob)}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-f.seen; got != "CN=bob" {
		t.Fatalf("identity %q, want CN=bob", got)
	}
}

// TestMTLSIdentityTCP: the broker receives the identity line before the
// client's bytes; a client without a valid certificate never reaches it.
func TestMTLSIdentityTCP(t *testing.T) {
	f := mtlsSetup(t)
	c, err := tls.Dial("tcp", f.kafka, f.clientTLS(f.alice))
	if err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(t, c, "produce orders 1", "produce orders 2")
	if err != nil || got != "ack 32 bytes" {
		t.Fatalf("client got %q, %v", got, err)
	}
	if seen := <-f.seen; seen != "x-client-identity: CN=alice,O=Acme\n|produce orders 1produce orders 2" {
		t.Fatalf("the broker saw %q", seen)
	}
	for _, cert := range []*testpki.Cert{nil, f.mallory} {
		c, err := tls.Dial("tcp", f.kafka, f.clientTLS(cert))
		if err != nil {
			continue // TLS 1.2 would fail here; with 1.3 the refusal shows on the first read
		}
		if got, err := roundTrip(t, c, "sneak in"); err == nil {
			t.Fatalf("client without a valid certificate got %q and no error", got)
		}
	}
	select {
	case seen := <-f.seen:
		t.Fatalf("the broker was reached without a valid certificate: %q", seen)
	case <-time.After(100 * time.Millisecond):
	}
	if got := f.stat(t, "tcp.kafka.downstream_cx_total"); got != "1" {
		t.Errorf("tcp.kafka.downstream_cx_total = %q, want 1 (refused handshakes never reach the chain)", got)
	}
}

func portOf(hostPort string) string {
	_, p, _ := net.SplitHostPort(hostPort)
	return p
}

// TestWasmNetworkFilterAheadOfHCM: the seed's listener with a Wasm
// network filter (the chaos plugin's TCP side) inserted ahead of its
// http_connection_manager, as an Istio NETWORK WasmPlugin on an HTTP
// port is: HTTP requests go through both plugins (the seed's 403 and
// 200), and a connection whose first bytes make the network plugin
// panic is closed (FAIL_CLOSED) while the listener keeps serving.
func TestWasmNetworkFilterAheadOfHCM(t *testing.T) {
	chaos, err := os.ReadFile(plugin(t, "e2e/testdata/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		return strings.Replace(s, `      filter_chains:
        - filters:
            - name: envoy.http_connection_manager`, `      filter_chains:
        - filters:
            - name: envoy.filters.network.wasm
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
                config:
                  name: conn
                  vm_config: {vm_id: conn, code: {local: {filename: chaos.wasm}}}
            - name: envoy.http_connection_manager`, 1)
	})
	if err := os.WriteFile(filepath.Join(dir, "chaos.wasm"), chaos, 0o644); err != nil {
		t.Fatal(err)
	}
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	post := func(body string) (int, string) {
		resp, err := http.Post("http://"+listen+"/", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"id": "x"}`); code != 403 {
		t.Errorf("body without token: %d %q, want 403 from json-validation", code, body)
	}
	if code, body := post(`{"id": "x", "token": "y"}`); code != 200 || strings.TrimSpace(body) != "hello from the server" {
		t.Errorf("valid body: %d %q, want 200 from the upstream", code, body)
	}
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := roundTrip(t, c, "panic please\r\n\r\n"); got != "" {
		t.Errorf("the connection that made the network plugin panic got %q, want it closed", got)
	}
	if code, _ := post(`{"id": "x", "token": "y"}`); code != 200 {
		t.Errorf("after the network plugin's trap: %d, want 200 (another instance)", code)
	}
	if _, stats := get(t, "http://"+admin+"/stats"); !strings.Contains(stats, "wasm.conn.runtime_errors: 1") {
		t.Errorf("stats lack wasm.conn.runtime_errors: 1:\n%s", grepLines(stats, "wasm."))
	}
	if !strings.Contains(in.Logs(), "plugin conn: proxy_on_downstream_data failed") {
		t.Errorf("the trap is not logged:\n%s", in.Logs())
	}
}

// TestReloadRebuiltNetworkPlugin: a network plugin's .wasm rebuilt under
// the same config is noticed (polling, or POST /reload): its listener is
// rebuilt and new connections run the new module, as HTTP filters do.
func TestReloadRebuiltNetworkPlugin(t *testing.T) {
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	prepend := plugin(t, "examples/tcp-prepend")
	chaos, err := os.ReadFile(plugin(t, "e2e/testdata/chaos")) // passes ordinary data unchanged
	if err != nil {
		t.Fatal(err)
	}
	dir, listen, admin := setup(t, "examples/tcp-prepend/envoy.yaml", prepend, replacePorts(9000, echo))
	run(t, dir, listen, admin, "-c", "envoy.yaml", "--reload-poll-interval", "0")
	talk := func() string {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(t, c, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := talk(); got != "prepend payload to downstream datahello" {
		t.Fatalf("before: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), chaos, 0o644); err != nil {
		t.Fatal(err)
	}
	var st reloadStatus
	if code := adminJSON(t, "POST", "http://"+admin+"/reload", &st); code != 200 || !strings.Contains(strings.Join(st.Changed, ","), "listener~ main") {
		t.Fatalf("reload: %d %+v", code, st)
	}
	if got := talk(); got != "hello" {
		t.Errorf("after the rebuilt module: %q, want the new plugin's (data unchanged)", got)
	}
}
