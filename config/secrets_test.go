package config

import (
	"encoding/base64"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
)

// tlsListener is a config with a TLS listener whose DownstreamTlsContext
// (the part after "typed_config:") is ctx, indented under it.
func tlsListener(ctx string) string {
	return `
static_resources:
  listeners:
    - name: tls
      address: {socket_address: {address: 127.0.0.1, port_value: 10443}}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
` + ctx + `
          filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: t
                cluster: c
  clusters:
    - name: c
      load_assignment:
        cluster_name: c
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]
`
}

// minimalWasm is minimal with one Wasm HTTP filter in front of the
// router, its code at filename: plugin.wasm (wasmCodePath).
const minimalWasm = `
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: main
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}]
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {vm_config: {code: {local: {filename: plugin.wasm}}}}
                  - name: envoy.filters.http.router
`

const wasmCodePath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config.vm_config.code"

// TestErrorsNeverQuoteSecrets: a mistake in a secret's value (a PEM key
// where a DataSource or base64 belongs, a session ticket key or generic
// secret that is not base64) is reported with its field path and what
// was wrong, and the error never holds the secret. Values of other
// fields are still quoted.
func TestErrorsNeverQuoteSecrets(t *testing.T) {
	const keyBody = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKEYSECRET"
	const ticket = "not-base64!session-ticket-key-material-SECRET"
	const hmac = "hmac secret with spaces SECRET"
	const urlPassword = "url-pass-SECRET"
	pem := "-----BEGIN PRIVATE KEY-----\\n" + keyBody + "\\n-----END PRIVATE KEY-----\\n"
	certPath := "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]"
	tests := []struct {
		name, config, want string
		// unsupported: the secret sits in a field wasmproxy does not
		// implement, which Parse refuses by name before looking inside;
		// the JSON stage is then run without the allow-list, as it runs
		// inside fields passed on whole, to see the value error.
		unsupported string
	}{
		{
			name: "a PEM key where the DataSource belongs",
			config: tlsListener(`              common_tls_context:
                tls_certificates: [{certificate_chain: {filename: a.pem}, private_key: "` + pem + `"}]`),
			want: "envoy.yaml: " + certPath + ".private_key: expected an object (DataSource), got a string",
		},
		{
			name: "a PEM key in inline_bytes",
			config: tlsListener(`              common_tls_context:
                tls_certificates: [{certificate_chain: {filename: a.pem}, private_key: {inline_bytes: "` + pem + `"}}]`),
			want: "envoy.yaml: " + certPath + ".private_key.inline_bytes: expected base64 text, got a string",
		},
		{
			name: "a password as a number",
			config: tlsListener(`              common_tls_context:
                tls_certificates: [{certificate_chain: {filename: a.pem}, private_key: {filename: a.key}, password: {inline_string: 12345678901234567890}}]`),
			want:        "envoy.yaml: " + certPath + ".password.inline_string: expected a string (quote the value), got a number",
			unsupported: "envoy.yaml: not supported yet: " + certPath + ".password",
		},
		{
			name: "session ticket keys that are not base64",
			config: tlsListener(`              session_ticket_keys: {keys: [{inline_bytes: "` + ticket + `"}]}
              common_tls_context:
                tls_certificates: [{certificate_chain: {filename: a.pem}, private_key: {filename: a.key}}]`),
			want:        "envoy.yaml: static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.session_ticket_keys.keys[0].inline_bytes: expected base64 text, got a string",
			unsupported: "envoy.yaml: not supported yet: static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.session_ticket_keys",
		},
		{
			name: "a generic secret that is not base64",
			config: `
static_resources:
  secrets:
    - name: hmac
      generic_secret: {secrets: {cookie: {inline_bytes: "` + hmac + `"}}}
`,
			want:        `envoy.yaml: static_resources.secrets[0].generic_secret.secrets["cookie"].inline_bytes: expected base64 text, got a string`,
			unsupported: "envoy.yaml: not supported yet: static_resources.secrets",
		},
		{
			name:   "a remote code URL with a password",
			config: strings.Replace(minimalWasm, "local: {filename: plugin.wasm}", `remote: {http_uri: {uri: "ftp://robot:`+urlPassword+`@plugins.example/p.wasm", cluster: c, timeout: 5s}, sha256: `+strings.Repeat("a", 64)+`}`, 1),
			want:   `envoy.yaml: ` + wasmCodePath + `.remote.http_uri.uri: unsupported scheme "ftp" in "ftp://robot:[redacted]@plugins.example/p.wasm" (want http://, https:// or oci://)`,
		},
		{
			// Not a secret: the value is quoted, as it helps.
			name: "a stat prefix as a boolean",
			config: tlsListener(`              common_tls_context:
                tls_certificates: [{certificate_chain: {filename: a.pem}, private_key: {filename: a.key}}]`) +
				"\n", // (unchanged; see the replace below)
			want: "envoy.yaml: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix: expected a string (quote the value), got boolean true",
		},
	}
	tests[len(tests)-1].config = strings.Replace(tests[len(tests)-1].config, "stat_prefix: t", "stat_prefix: true", 1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.config), "envoy.yaml")
			if err == nil {
				t.Fatal("the config loaded")
			}
			if tt.unsupported != "" {
				if err.Error() != tt.unsupported {
					t.Errorf("Parse: error\n got %s\nwant %s", err, tt.unsupported)
				}
				tree, terr := jsonTree([]byte(tt.config))
				if terr != nil {
					t.Fatal(terr)
				}
				_, err = normalizeMessage(tree, (&bootstrapv3.Bootstrap{}).ProtoReflect().Descriptor(), "", walk{})
				if err == nil {
					t.Fatal("the JSON stage accepted the value")
				}
				err = withSource(err, "envoy.yaml")
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			for _, secret := range []string{keyBody, ticket, hmac, urlPassword, base64.StdEncoding.EncodeToString([]byte(hmac))} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error quotes the secret %q: %s", secret, err)
				}
			}
		})
	}
}
