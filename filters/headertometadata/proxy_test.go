package headertometadata_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

// TestProxy runs the filter in the library proxy over real sockets. What
// it writes is read back where Envoy users read dynamic metadata: the
// route's response_headers_to_add render %DYNAMIC_METADATA(...)% after
// every filter ran, and the admin /stats show the filter's counters.
// It proves: a present header (regex-rewritten, as a NUMBER), a missing
// one (on_header_missing), remove (the upstream does not see the
// header), a base64 PROTOBUF_VALUE cookie, a response rule, and a
// route's Config replacing the filter's.
func TestProxy(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Cache", "hit")
		fmt.Fprintf(w, "version=%q", r.Header.Get("X-Version"))
	})}
	go up.Serve(upLn)
	defer up.Close()

	logPath := filepath.Join(t.TempDir(), "access.log")
	md := func(name, key string) string {
		return fmt.Sprintf(`{header: {key: %s, value: "%%DYNAMIC_METADATA(%s)%%"}}`, name, key)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: {text_format: "%%REQ(:PATH)%% %%DYNAMIC_METADATA(envoy.filters.http.header_to_metadata:cache)%% %%DYNAMIC_METADATA(envoy.lb:version)%%\n"}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              response_headers_to_add:
              - %s
              - %s
              - %s
              - %s
              routes:
              - match: {prefix: "/tenant"}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.header_to_metadata:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
                    request_rules: [{header: x-tenant, on_header_present: {metadata_namespace: envoy.lb, key: version}}]
              - {match: {prefix: "/"}, route: {cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.header_to_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
              stat_prefix: h2m
              request_rules:
              - header: x-version
                on_header_present: {metadata_namespace: envoy.lb, key: version}
                on_header_missing: {metadata_namespace: envoy.lb, key: version, value: none}
                remove: true
              - header: x-weight
                on_header_present: {metadata_namespace: envoy.lb, key: weight, type: NUMBER, regex_value_rewrite: {pattern: {regex: "^w(\\d+)$"}, substitution: "\\1"}}
              - cookie: s
                on_header_present: {key: session, type: PROTOBUF_VALUE, encode: BASE64}
              response_rules:
              - header: x-cache
                on_header_present: {key: cache}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    load_assignment:
      cluster_name: upstream
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
`, logPath, md("x-md-version", "envoy.lb:version"), md("x-md-weight", "envoy.lb:weight"),
		md("x-md-session", "envoy.filters.http.header_to_metadata:session"),
		md("x-md-lb", "envoy.lb"), upLn.Addr().(*net.TCPAddr).Port)), "h2m")
	if err != nil {
		t.Fatal(err)
	}
	p, err := wasmproxy.New(context.Background(), wasmproxy.Options{Bootstrap: cfg, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	shut := false
	defer func() {
		if !shut {
			p.Shutdown(context.Background())
		}
	}()
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 60 * time.Second}

	pv, _ := proto.Marshal(structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewNumberValue(2)}}))
	session := base64.RawStdEncoding.EncodeToString(pv)
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, tc := range []struct {
		path string
		hdr  []string
		body string
		want map[string]string
	}{
		{"/a", []string{"X-Version", "v2", "X-Weight", "w30", "Cookie", "x=1; s=" + session}, `version=""`, map[string]string{
			"x-md-version": "v2", "x-md-weight": "30", "x-md-session": `["a",2]`,
			"x-md-lb": `{"version":"v2","weight":30}`,
		}},
		// Missing: on_header_missing; a weight the rewrite leaves alone
		// is not a number and is not written.
		{"/b", []string{"X-Weight", "heavy"}, `version=""`, map[string]string{
			"x-md-version": "none", "x-md-weight": "", "x-md-session": "",
		}},
		// The route's Config replaces the filter's: x-version stays (no
		// remove rule), x-tenant is written, no response rule runs.
		{"/tenant", []string{"X-Version", "v2", "X-Tenant", "acme"}, `version="v2"`, map[string]string{
			"x-md-version": "acme",
		}},
	} {
		resp, body := get(tc.path, tc.hdr...)
		if resp.StatusCode != 200 || body != tc.body {
			t.Errorf("%s: %d %q, want 200 %q", tc.path, resp.StatusCode, body, tc.body)
		}
		for k, v := range tc.want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tc.path, k, got, v)
			}
		}
	}

	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	for _, want := range []string{
		"http_filter_name.h2m.request_rules_processed: 6",
		"http_filter_name.h2m.response_rules_processed: 2",
		"http_filter_name.h2m.request_metadata_added: 4",
		"http_filter_name.h2m.request_header_not_found: 2",
		"http_filter_name.h2m.response_metadata_added: 2",
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("/stats lacks %q", want)
		}
	}

	// The response rule's write is seen by the access log, which runs
	// after the response filters (shutdown flushes the log).
	shut = true
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/a hit v2\n/b hit none\n/tenant - acme\n"; string(log) != want {
		t.Errorf("access log %q, want %q", log, want)
	}
}
