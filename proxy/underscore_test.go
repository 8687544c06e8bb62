package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// TestHeadersWithUnderscores: common_http_protocol_options
// headers_with_underscores_action on request header names, as Envoy's
// codecs: ALLOW passes them, DROP_HEADER removes them before anything
// sees the request, REJECT_REQUEST answers 400 over HTTP/1.1 and resets
// the stream over HTTP/2, without reaching the upstream; each counted in
// Envoy's http1./http2. codec stats.
func TestHeadersWithUnderscores(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	})
	_, port, _ := net.SplitHostPort(up)
	h2c := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	for _, tc := range []struct {
		name, action string
		http2        bool
		wantStatus   int // 0: the stream is reset
		wantHeader   string
		stat         string
	}{
		{"allow", "ALLOW", false, 200, "v", ""},
		{"drop", "DROP_HEADER", false, 200, "", "http1.dropped_headers_with_underscores"},
		{"drop h2", "DROP_HEADER", true, 200, "", "http2.dropped_headers_with_underscores"},
		{"reject", "REJECT_REQUEST", false, 400, "", "http1.requests_rejected_with_underscores_in_headers"},
		{"reject h2", "REJECT_REQUEST", true, 0, "", "http2.requests_rejected_with_underscores_in_headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(yamlListener, "stat_prefix: in\n",
				"stat_prefix: in\n          common_http_protocol_options: {headers_with_underscores_action: "+tc.action+"}\n", 1) + `
            virtual_hosts: [{name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]
` + yamlClusters
			f := startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(cfg), up)
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
			req.Header["X_Custom"] = []string{"v"}
			client := http.DefaultClient
			if tc.http2 {
				client = h2c
			}
			resp, err := client.Do(req)
			if tc.wantStatus == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("status %d, want a reset stream", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			if tc.wantStatus == 200 {
				h := <-seen
				if got := h.Get("X_Custom"); got != tc.wantHeader {
					t.Errorf("upstream saw x_custom %q, want %q", got, tc.wantHeader)
				}
			}
			if tc.stat != "" {
				if got := f.st.Counter(tc.stat).Value(); got != 1 {
					t.Errorf("%s = %d, want 1", tc.stat, got)
				}
			}
		})
	}
}
