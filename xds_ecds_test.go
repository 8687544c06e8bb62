package wasmproxy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// headerMutation is an HTTP filter config (a TypedExtensionConfig's
// typed_config, as JSON) adding the response header x-filter-version.
func headerMutation(value string) string {
	return fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
	 "mutations": {"response_mutations": [{"append": {"header": {"key": "x-filter-version", "value": %q}}}]}}`, value)
}

// TestXDSExtensionConfigFetchTimeout: an HTTP filter's ECDS config that
// does not come holds its listener warming only for its config source's
// initial_fetch_timeout, as on Envoy; then the filter takes its
// default_config or, without one, is missing and answers every request
// 500 (Envoy's MissingConfigFilter). apply_default_config_without_warming
// serves the default at once. A config arriving later replaces either.
func TestXDSExtensionConfigFetchTimeout(t *testing.T) {
	for _, apiType := range apiTypes {
		for _, tc := range []struct {
			name string
			// discovery is the rest of config_discovery; timeout the config
			// source's initial_fetch_timeout.
			discovery, timeout string
			// warms: the listener is not served before the timeout.
			warms bool
			// status and header: what a request gets after the timeout;
			// logged its access log line (%RESPONSE_CODE% %RESPONSE_FLAGS%).
			status int
			header string
			logged string
		}{
			{name: "missing", timeout: "1s", warms: true, status: 500, logged: "500 NFCF"},
			{name: "default", discovery: `, "default_config": ` + headerMutation("default"), timeout: "1s", warms: true, status: 200, header: "default", logged: "200 -"},
			{name: "without-warming", discovery: `, "default_config": ` + headerMutation("default") + `, "apply_default_config_without_warming": true`, timeout: "600s", status: 200, header: "default", logged: "200 -"},
		} {
			t.Run(apiType+"/"+tc.name, func(t *testing.T) {
				upPort := upstreamPort(t, "from the upstream")
				cp, _ := startControlPlane(t, "127.0.0.1:0")
				p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))
				port := testnet.FreePort(t)
				url := fmt.Sprintf("http://127.0.0.1:%d/", port)
				logPath := filepath.Join(t.TempDir(), "access.log")
				listener := fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
				 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
				  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
				  "stat_prefix": "ingress",
				  "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
				   "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
				   "path": %q, "log_format": {"text_format_source": {"inline_string": "%%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\n"}}}}],
				  "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
				  "http_filters": [
				   {"name": "add-version", "config_discovery": {"config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": %q},
				    "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"]%s}},
				   {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`,
					port, logPath, tc.timeout, tc.discovery)

				start := time.Now()
				cp.pushAll(t, "1", []string{backendCluster(upPort, "")}, []string{listener}, nil, nil)
				waitCounter(t, p, "listener_manager.lds.update_success", 1)
				if tc.warms {
					if got := getStatus(url); got != 0 && time.Since(start) < time.Second {
						t.Fatalf("the listener answers %d before its filter config's initial_fetch_timeout", got)
					}
				}
				deadline := time.Now().Add(30 * time.Second)
				for getStatus(url) != tc.status && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if got := getStatus(url); got != tc.status {
					t.Fatalf("after the timeout: %d, want %d (last reload error: %s)", got, tc.status, p.ReloadStatus().LastError)
				}
				if tc.warms && time.Since(start) < time.Second {
					t.Errorf("served after %v, before the 1s initial_fetch_timeout", time.Since(start))
				}
				if got := headerOf(t, url, "x-filter-version"); got != tc.header {
					t.Errorf("x-filter-version = %q, want %q", got, tc.header)
				}
				waitLogLine(t, logPath, tc.logged)
				waitReady(t, p)

				// The config arrives: it replaces the default or the missing
				// filter.
				cp.pushAll(t, "2", []string{backendCluster(upPort, "")}, []string{listener}, nil, nil,
					`{"name": "add-version", "typed_config": `+headerMutation("delivered")+`}`)
				waitHeader(t, url, "x-filter-version", "delivered")
				waitBody(t, url, "from the upstream")
			})
		}
	}
}

// waitLogLine waits (30 s at most) for the access log at path to hold the
// line want: entries are written off the data path, after the response.
func waitLogLine(t *testing.T, path, want string) {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSpace(string(data)), "\n")
		if slices.Contains(lines, want) {
			return
		}
	}
	t.Fatalf("access log %s has no line %q: %q", path, want, lines)
}
