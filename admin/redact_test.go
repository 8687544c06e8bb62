package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Secrets the config below holds; none may leave the admin server in any
// encoding.
const (
	dumpKeyPEM     = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGDOWNSTREAMKEY\n-----END PRIVATE KEY-----\n"
	dumpUpKey      = "-----BEGIN EC PRIVATE KEY-----\nUPSTREAMKEYMATERIAL\n-----END EC PRIVATE KEY-----\n"
	dumpTicket1    = "session-ticket-key-1-aes-and-hmac-material-0123456789abcdef0123456789abcdef012345"
	dumpTicket2    = "session-ticket-key-2-aes-and-hmac-material-0123456789abcdef0123456789abcdef012345"
	dumpHMAC       = "oauth2-hmac-secret-3c4d5e"
	dumpAPIKey     = "generic-api-key-77aa88bb"
	dumpURLPass    = "plugin-registry-pass-9876"
	dumpYAMLKey    = "CONFIGYAMLKEYMATERIAL"
	dumpReloadPass = "reload-error-pass-1234"
)

var dumpSecrets = []string{dumpKeyPEM, "DOWNSTREAMKEY", dumpUpKey, dumpTicket1, dumpTicket2, dumpHMAC, dumpAPIKey, dumpURLPass, dumpYAMLKey, dumpReloadPass}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// secretDump is a bootstrap as protojson with a secret in every place
// Envoy's dump redacts: an inline private key and session ticket keys in
// a listener's TLS context (inside an Any), a private key inside a
// TypedStruct, a generic secret and a map of them among the static
// secrets.
func secretDump() []byte {
	return fmt.Appendf(nil, `{
  "static_resources": {
    "listeners": [{
      "name": "tls",
      "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10443}},
      "filter_chains": [{
        "transport_socket": {
          "name": "envoy.transport_sockets.tls",
          "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [{
              "certificate_chain": {"inline_string": "-----BEGIN CERTIFICATE-----\npublic\n-----END CERTIFICATE-----\n"},
              "private_key": {"inline_string": %s}
            }]},
            "session_ticket_keys": {"keys": [{"inline_bytes": %q}, {"inline_bytes": %q}]}
          }
        }
      }]
    }],
    "clusters": [{
      "name": "backend",
      "transport_socket": {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
          "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
          "type_url": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
          "value": {"sni": "backend.internal", "common_tls_context": {"tls_certificates": [{"private_key": {"inline_bytes": %q}}]}}
        }
      }
    }],
    "secrets": [
      {"name": "hmac", "generic_secret": {"secret": {"inline_string": %q}}},
      {"name": "tokens", "generic_secret": {"secrets": {"api": {"inline_bytes": %q}}}}
    ]
  }
}`, jsonString(dumpKeyPEM), b64(dumpTicket1), b64(dumpTicket2), b64(dumpUpKey), dumpHMAC, b64(dumpAPIKey))
}

// secretExtensionConfig is an Istio WasmPlugin as ECDS delivers it, its
// code at a URL with basic-auth credentials.
func secretExtensionConfig() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{
  "name": "istio-system.auth",
  "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
    "config": {"name": "istio-system.auth", "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"remote": {
      "http_uri": {"uri": "https://robot:%s@plugins.example/auth.wasm", "timeout": "30s"},
      "sha256": "%s"
    }}}}
  }
}`, dumpURLPass, strings.Repeat("ab", 32)))
}

// holdsSecret reports which secret body holds, as is, JSON-escaped or in
// base64 (how protojson prints bytes).
func holdsSecret(body string) string {
	for _, s := range dumpSecrets {
		for _, form := range []string{s, strings.ReplaceAll(s, "\n", `\n`), b64(s)} {
			if strings.Contains(body, form) {
				return s
			}
		}
	}
	return ""
}

// secretReloader is a provider whose last reload failed with an error
// that quotes a URL with credentials.
type secretReloader struct{ *testProvider }

func (p secretReloader) Reload(context.Context, string) (ReloadStatus, error) {
	return p.ReloadStatus(), fmt.Errorf("reload failed")
}

func (p secretReloader) ReloadStatus() ReloadStatus {
	err := "fetching https://robot:" + dumpReloadPass + "@plugins.example/auth.wasm: server answered 404 Not Found"
	// The history (on /reload_status and the home page) holds it too.
	return ReloadStatus{Failures: 1, LastError: err, History: []ReloadRecord{{Trigger: "file", Outcome: ReloadFailed, Error: err}}}
}

// TestNoSecretLeavesTheAdminServer serves a configuration full of
// secrets over a real HTTP server and reads every endpoint: /config_dump
// (bootstrap and ECDS sections) shows "[redacted]" where Envoy's dump
// does, and no endpoint's body holds any secret's bytes.
func TestNoSecretLeavesTheAdminServer(t *testing.T) {
	p := newTestProvider()
	p.dump = secretDump()
	p.ecs = []json.RawMessage{secretExtensionConfig()}
	p.info.Options.ConfigYAML = "static_resources:\n  secrets:\n  - name: k\n    tls_certificate:\n      private_key: {inline_string: " + dumpYAMLKey + "}\n"
	// The input must hold every secret, or the test proves nothing.
	input := string(p.dump) + string(p.ecs[0]) + p.info.Options.ConfigYAML + secretReloader{p}.ReloadStatus().LastError
	for _, s := range dumpSecrets {
		if !strings.Contains(input, s) && !strings.Contains(input, b64(s)) && !strings.Contains(input, strings.ReplaceAll(s, "\n", `\n`)) {
			t.Fatalf("the test config lacks %q", s)
		}
	}
	s := New(secretReloader{p}, stats.New(), logging.NewRegistry(io.Discard, logging.LevelInfo))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	base := "http://" + l.Addr().String()

	code, dump := httpGet(t, base+"/config_dump")
	if code != http.StatusOK {
		t.Fatalf("/config_dump = %d:\n%s", code, dump)
	}
	var v any
	if err := json.Unmarshal([]byte(dump), &v); err != nil {
		t.Fatalf("/config_dump is not JSON: %v\n%s", err, dump)
	}
	bootstrap := []any{"configs", 0, "bootstrap", "static_resources"}
	tlsContext := append(append([]any{}, bootstrap...), "listeners", 0, "filter_chains", 0, "transport_socket", "typed_config")
	for _, c := range []struct {
		path []any
		want any
	}{
		{append(append([]any{}, tlsContext...), "common_tls_context", "tls_certificates", 0, "private_key", "inline_string"), "[redacted]"},
		{append(append([]any{}, tlsContext...), "common_tls_context", "tls_certificates", 0, "certificate_chain", "inline_string"), "-----BEGIN CERTIFICATE-----\npublic\n-----END CERTIFICATE-----\n"},
		// bytes print in base64, so "[redacted]" reads W3JlZGFjdGVkXQ==
		// (envoyproxy/envoy#10096).
		{append(append([]any{}, tlsContext...), "session_ticket_keys", "keys", 1, "inline_bytes"), "W3JlZGFjdGVkXQ=="},
		{append(append([]any{}, bootstrap...), "clusters", 0, "transport_socket", "typed_config", "value", "common_tls_context", "tls_certificates", 0, "private_key", "inline_bytes"), "W3JlZGFjdGVkXQ=="},
		{append(append([]any{}, bootstrap...), "clusters", 0, "transport_socket", "typed_config", "value", "sni"), "backend.internal"},
		{append(append([]any{}, bootstrap...), "secrets", 0, "generic_secret", "secret", "inline_string"), "[redacted]"},
		{append(append([]any{}, bootstrap...), "secrets", 1, "generic_secret", "secrets", "api", "inline_bytes"), "W3JlZGFjdGVkXQ=="},
		{[]any{"configs", 1, "@type"}, "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"},
		{[]any{"configs", 1, "ecds_filters", 0, "ecds_filter", "typed_config", "config", "vm_config", "code", "remote", "http_uri", "uri"}, "https://robot:[redacted]@plugins.example/auth.wasm"},
	} {
		if got := jsonPath(t, v, c.path...); got != c.want {
			t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
		}
	}

	for _, path := range []string{"/", "/help", "/ready", "/server_info", "/listeners", "/listeners?format=json",
		"/clusters", "/clusters?format=json", "/config_dump", "/stats", "/stats?format=json", "/stats/prometheus",
		"/reload_status", "/no_such_page"} {
		code, body := httpGet(t, base+path)
		if s := holdsSecret(body); s != "" {
			t.Errorf("GET %s (%d) shows the secret %q:\n%s", path, code, s, body)
		}
	}
	code, body := httpPost(t, base+"/reload")
	if s := holdsSecret(body); s != "" {
		t.Errorf("POST /reload (%d) shows the secret %q:\n%s", code, s, body)
	}
	_, info := httpGet(t, base+"/server_info")
	if !strings.Contains(info, `\"private_key\":{\"inline_string\":\"[redacted]\"}`) {
		t.Errorf("/server_info config_yaml is not the redacted bootstrap:\n%s", info)
	}
}

// TestConfigDumpFailsClosed: a dump the server cannot read as a
// bootstrap (so cannot redact) is not shown, and the error does not
// quote it.
func TestConfigDumpFailsClosed(t *testing.T) {
	f := newFixture(t, func(p *testProvider) {
		p.dump = []byte(`{"static_resources":{"secrets":[{"generic_secret":{"secret":{"inline_bytes":"not base64: ` + dumpHMAC + `"}}}]}}`)
	})
	code, body := httpGet(t, f.srv.URL+"/config_dump")
	if code != http.StatusInternalServerError || holdsSecret(body) != "" {
		t.Errorf("/config_dump = %d:\n%s", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func httpPost(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
