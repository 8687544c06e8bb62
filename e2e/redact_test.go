package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// secretConfig is a bootstrap whose HTTPS listener has its certificate
// and private key inline, and whose Wasm filter is fetched from a URL
// with basic-auth credentials; the proxied route answers from a second
// listener. Placeholders: listener, upstream and admin ports, the
// certificate and key (JSON strings), the code URL and its sha256.
const secretConfig = `
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: %d}}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {inline_string: %s}
                    private_key: {inline_string: %s}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: web_service}}]}]
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: '{"requiredKeys": ["id"]}'}
                        vm_config:
                          code:
                            remote:
                              http_uri: {uri: "%s", cluster: web_service, timeout: 10s}
                              sha256: %s
                  - name: envoy.filters.http.router
    - name: staticreply
      address: {socket_address: {address: 127.0.0.1, port_value: %d}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: upstream
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "hello from the server\n"}}}]}]
                http_filters: [{name: envoy.filters.http.router}]
  clusters:
    - name: web_service
      load_assignment:
        cluster_name: web_service
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
`

// secretWasmPlugin is an Istio WasmPlugin for the main listener's port
// with its code at a URL with credentials.
const secretWasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: validate, namespace: istio-system}
spec:
  url: "%s"
  sha256: %s
  phase: AUTHN
  match: [{ports: [{number: %d}]}]
  pluginConfig: {requiredKeys: ["token"]}
`

// keyLines are the base64 lines of a PEM key: none may show anywhere.
func keyLines(keyPEM []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return append(lines, base64.StdEncoding.EncodeToString(keyPEM)[:40])
}

// shownSecret returns the first secret text holds, "" for none.
func shownSecret(text string, secrets []string) string {
	for _, s := range secrets {
		if strings.Contains(text, s) {
			return s
		}
	}
	return ""
}

// TestSecretsNeverShown runs the proxy with an inline TLS private key and
// plugin code fetched (config and Istio WasmPlugin alike) from a server
// that wants basic auth, the credentials in the URLs. The proxy serves
// HTTPS with the key and loads the code with the credentials; then no
// admin endpoint, no failed reload's status and no line of the debug log
// shows the key or the password, and /config_dump shows "[redacted]"
// where they were.
func TestSecretsNeverShown(t *testing.T) {
	const password = "e2e-registry-pass-20260301"
	code, err := os.ReadFile(plugin(t, "examples/json-validation"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	digest := hex.EncodeToString(sum[:])
	codeServer := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "robot" || pass != password || r.URL.Path != "/plugin.wasm" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(code)
	})}
	codeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = codeServer.Serve(codeLn) }()
	t.Cleanup(func() { codeServer.Close() })
	codeURL := fmt.Sprintf("http://robot:%s@%s/plugin.wasm", password, codeLn.Addr())
	shownURL := fmt.Sprintf("http://robot:[redacted]@%s/plugin.wasm", codeLn.Addr())

	ca := testpki.NewCA(t, "e2e CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}})
	secrets := append(keyLines(server.KeyPEM), password)

	lp, up, ap := freePort(t), freePort(t), freePort(t)
	jsonText := func(b []byte) string { j, _ := json.Marshal(string(b)); return string(j) }
	config := func(sha string) string {
		return fmt.Sprintf(secretConfig, lp, jsonText(server.CertPEM), jsonText(server.KeyPEM), codeURL, sha, up, up, ap)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("envoy.yaml", config(digest))
	write("wasmplugin.yaml", fmt.Sprintf(secretWasmPlugin, codeURL, digest, lp))
	in := run(t, dir, fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap),
		"-c", "envoy.yaml", "--wasm-plugins", "wasmplugin.yaml", "-l", "debug", "--reload-poll-interval", "0")

	// The key and the credentials work: HTTPS with the inline key, both
	// plugins (config: requires id; WasmPlugin: requires token) loaded.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}}
	for body, want := range map[string]int{`{"id": "x", "token": "y"}`: 200, `{"id": "x"}`: 403, `{"token": "y"}`: 403} {
		resp, got := post(t, client, "https://"+in.listen+"/", "application/json", strings.NewReader(body))
		if resp.StatusCode != want {
			t.Errorf("POST %s = %d %q, want %d", body, resp.StatusCode, got, want)
		}
	}

	base := "http://" + in.admin
	code200, dump := get(t, base+"/config_dump")
	if code200 != 200 {
		t.Fatalf("/config_dump = %d\n%s", code200, dump)
	}
	for _, want := range []string{
		`"private_key": {` + "\n" + `                 "inline_string": "[redacted]"`,
		`"uri": "` + shownURL + `"`, // the bootstrap's remote code
		`"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"`,
	} {
		if !strings.Contains(strings.Join(strings.Fields(dump), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("/config_dump lacks %s:\n%s", want, dump)
		}
	}
	if n := strings.Count(dump, shownURL); n != 2 {
		t.Errorf("/config_dump shows the redacted code URL %d times, want 2 (bootstrap and ECDS):\n%s", n, dump)
	}

	// A reload that fails on the code quotes its URL.
	write("envoy.yaml", config(strings.Repeat("f", 64)))
	if status, body := postEmpty(t, base+"/reload"); status != 500 || !strings.Contains(body, shownURL) {
		t.Errorf("POST /reload = %d, want 500 naming %s:\n%s", status, shownURL, body)
	}
	for _, path := range []string{"/config_dump", "/listeners", "/listeners?format=json", "/clusters", "/clusters?format=json",
		"/server_info", "/reload_status", "/stats", "/stats/prometheus", "/help", "/", "/logging"} {
		status, body := get(t, base+path)
		if s := shownSecret(body, secrets); s != "" {
			t.Errorf("GET %s (%d) shows the secret %q:\n%s", path, status, s, body)
		}
	}
	in.stop()
	logs := in.Logs()
	if s := shownSecret(logs, secrets); s != "" {
		t.Errorf("the log shows the secret %q:\n%s", s, logs)
	}
	if !strings.Contains(logs, shownURL) {
		t.Errorf("the log never names the code URL (redacted): the test proves nothing about URLs\n%s", logs)
	}
}

// TestConfigErrorHidesKey: a private key pasted as PEM where base64
// belongs (inline_bytes) stops the start with an error that names the
// field and what is wrong, and does not print the key.
func TestConfigErrorHidesKey(t *testing.T) {
	ca := testpki.NewCA(t, "e2e CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}})
	jsonText := func(b []byte) string { j, _ := json.Marshal(string(b)); return string(j) }
	cfg := fmt.Sprintf(secretConfig, freePort(t), jsonText(server.CertPEM), jsonText(server.KeyPEM), "http://127.0.0.1:1/p.wasm", strings.Repeat("a", 64), freePort(t), freePort(t), freePort(t))
	cfg = strings.Replace(cfg, "private_key: {inline_string:", "private_key: {inline_bytes:", 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	in := start(t, dir, "-c", "envoy.yaml")
	if code := in.wait(60 * time.Second); code == 0 {
		t.Fatalf("started with a bad key\n%s", in.Logs())
	}
	out := in.Logs()
	want := "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key.inline_bytes: expected base64 text, got a string"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if s := shownSecret(out, keyLines(server.KeyPEM)); s != "" {
		t.Errorf("output shows the key (%q):\n%s", s, out)
	}
}
