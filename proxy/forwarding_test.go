package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// forwardingYAML is a listener in front of the test's upstream; {{HCM}}
// is replaced by connection manager fields.
const forwardingYAML = `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
{{HCM}}
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: up}}]
  clusters:
  - name: up
    connect_timeout: 5s
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{UPPORT}}}}}}]}]
`

// TestForwardingHeaders: x-forwarded-for, x-forwarded-proto, via,
// x-envoy-internal, x-envoy-external-address and the stripping of the
// x-envoy-* control headers, as Envoy's connection manager does them
// for each of use_remote_address, xff_num_trusted_hops, skip_xff_append
// and internal_address_config.
func TestForwardingHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Via", "1.1 origin")
		w.Write([]byte("ok"))
	})
	_, port, _ := strings.Cut(up, ":")
	self := localAddress().String() // what Envoy appends for a loopback peer
	const none = "<absent>"
	for _, tc := range []struct {
		name    string
		hcm     string
		sent    map[string]string
		want    map[string]string
		wantVia string // the response's via
	}{{
		name: "default: no remote address, control headers stripped",
		sent: map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Envoy-Retry-On": "5xx", "X-Envoy-Internal": "true", "X-Envoy-Decorator-Operation": "op"},
		want: map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Envoy-Retry-On": none, "X-Envoy-Internal": none,
			"X-Envoy-External-Address": none, "X-Envoy-Decorator-Operation": "op", "Via": none},
		wantVia: "1.1 origin",
	}, {
		name: "no remote address: a lone internal x-forwarded-for entry is an internal client",
		hcm:  `          internal_address_config: {cidr_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}`,
		sent: map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Envoy-Retry-On": "5xx"},
		want: map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Envoy-Retry-On": "5xx", "X-Envoy-Internal": "true", "X-Envoy-External-Address": none},
	}, {
		name: "no remote address: an internal entry behind another is not",
		hcm:  `          internal_address_config: {cidr_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}`,
		sent: map[string]string{"X-Forwarded-For": "203.0.113.7,10.1.2.3", "X-Envoy-Retry-On": "5xx"},
		want: map[string]string{"X-Envoy-Retry-On": none, "X-Envoy-Internal": none},
	}, {
		name: "no remote address: trusted hops never make a request internal",
		hcm: `          xff_num_trusted_hops: 1
          internal_address_config: {cidr_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}`,
		sent: map[string]string{"X-Forwarded-For": "10.1.2.3,198.51.100.1", "X-Envoy-Retry-On": "5xx"},
		want: map[string]string{"X-Forwarded-For": "10.1.2.3,198.51.100.1", "X-Envoy-Retry-On": none, "X-Envoy-Internal": none},
	}, {
		name: "use_remote_address, a loopback peer that is internal",
		hcm: `          use_remote_address: true
          via: "1.1 edge"
          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.9, prefix_len: 8}]}`,
		sent: map[string]string{"X-Forwarded-Proto": "https", "X-Envoy-Retry-On": "5xx"},
		want: map[string]string{"X-Forwarded-For": self, "X-Forwarded-Proto": "http", "X-Envoy-Retry-On": "5xx", "X-Envoy-Internal": "true",
			"X-Envoy-External-Address": none, "Via": "1.1 edge"},
		wantVia: "1.1 origin, 1.1 edge",
	}, {
		name: "use_remote_address, an internal peer relaying a client: external",
		hcm: `          use_remote_address: true
          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.0, prefix_len: 8}]}`,
		sent: map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Envoy-Retry-On": "5xx", "X-Envoy-Internal": "true", "X-Envoy-Decorator-Operation": "op"},
		want: map[string]string{"X-Forwarded-For": "203.0.113.7," + self, "X-Envoy-Retry-On": none, "X-Envoy-Internal": none,
			"X-Envoy-External-Address": "127.0.0.1", "X-Envoy-Decorator-Operation": none},
		wantVia: "1.1 origin",
	}, {
		name: "use_remote_address without internal addresses: every request is external",
		hcm:  `          use_remote_address: true`,
		sent: map[string]string{"X-Envoy-Upstream-Rq-Timeout-Ms": "10"},
		want: map[string]string{"X-Forwarded-For": self, "X-Envoy-Upstream-Rq-Timeout-Ms": none, "X-Envoy-Internal": none, "X-Envoy-External-Address": "127.0.0.1"},
	}, {
		name: "one trusted hop, no append: the client is the last entry, its scheme kept",
		hcm: `          use_remote_address: true
          xff_num_trusted_hops: 1
          skip_xff_append: true`,
		sent: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "X-Forwarded-Proto": "https"},
		want: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "X-Forwarded-Proto": "https", "X-Envoy-External-Address": "203.0.113.7"},
	}, {
		name: "two trusted hops: the client is the second entry from the end",
		hcm: `          use_remote_address: true
          xff_num_trusted_hops: 2`,
		sent: map[string]string{"X-Forwarded-For": "198.51.100.1,203.0.113.7"},
		want: map[string]string{"X-Forwarded-For": "198.51.100.1,203.0.113.7," + self, "X-Envoy-External-Address": "198.51.100.1"},
	}, {
		name: "trusted hops but a short list: the peer is the client",
		hcm: `          use_remote_address: true
          xff_num_trusted_hops: 3`,
		sent: map[string]string{"X-Forwarded-For": "198.51.100.1"},
		want: map[string]string{"X-Envoy-External-Address": "127.0.0.1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := strings.NewReplacer("{{HCM}}", tc.hcm, "{{UPPORT}}", port).Replace(forwardingYAML)
			f := startYAML(t, yaml, up)
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/p", nil)
			for k, v := range tc.sent {
				req.Header.Set(k, v)
			}
			resp, body := do(t, req)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			seen := <-got
			for k, want := range tc.want {
				v, ok := seen[k]
				switch {
				case want == none && ok:
					t.Errorf("upstream %s = %q, want it absent", k, v)
				case want != none && (len(v) != 1 || v[0] != want):
					t.Errorf("upstream %s = %q, want %q", k, v, want)
				}
			}
			if tc.wantVia != "" && resp.Header.Get("Via") != tc.wantVia {
				t.Errorf("response via = %q, want %q", resp.Header.Get("Via"), tc.wantVia)
			}
		})
	}
}

// TestLastXFFAddress: the trusted client address is taken from the end
// of x-forwarded-for, skipping the trusted hops, as Envoy's
// getLastAddressFromXFF; anything that is not an IP address gives none.
func TestLastXFFAddress(t *testing.T) {
	for _, tc := range []struct {
		xff  string
		skip int
		want string // "" for none
	}{
		{"1.2.3.4", 0, "1.2.3.4"},
		{"1.2.3.4, 5.6.7.8", 0, "5.6.7.8"},
		{"1.2.3.4, 5.6.7.8", 1, "1.2.3.4"},
		{"1.2.3.4, 5.6.7.8", 2, ""},
		{" 2001:db8::1 ,10.0.0.1", 1, "2001:db8::1"},
		{"1.2.3.4,unknown", 0, ""},
		{"1.2.3.4,", 0, ""},
		{"[2001:db8::1]", 0, ""},
	} {
		a, ok := lastXFFAddress(tc.xff, tc.skip)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("lastXFFAddress(%q, %d) = %q, want %q", tc.xff, tc.skip, got, tc.want)
		}
	}
	if !(&forwardingConfig{internal: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}).isInternal(netip.MustParseAddr("::ffff:10.1.2.3")) {
		t.Error("an IPv4-mapped address is not matched against IPv4 ranges")
	}
}

// TestEdgeRequestID: an external request's x-request-id is replaced
// only on an edge (use_remote_address and not internal), and kept there
// under preserve_external_request_id, as Envoy's mutateRequestHeaders.
func TestEdgeRequestID(t *testing.T) {
	got := make(chan string, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Request-Id")
		w.Write([]byte("ok"))
	})
	_, port, _ := strings.Cut(up, ":")
	const sent = "client-chosen-id"
	for _, tc := range []struct {
		name string
		hcm  string
		kept bool
	}{
		{name: "not an edge: kept", kept: true},
		{name: "edge: replaced", hcm: `          use_remote_address: true`},
		{name: "edge, preserve_external_request_id: kept", hcm: `          use_remote_address: true
          preserve_external_request_id: true`, kept: true},
		{name: "use_remote_address, internal peer: kept", hcm: `          use_remote_address: true
          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.0, prefix_len: 8}]}`, kept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := strings.NewReplacer("{{HCM}}", tc.hcm, "{{UPPORT}}", port).Replace(forwardingYAML)
			f := startYAML(t, yaml, up)
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/p", nil)
			req.Header.Set("X-Request-Id", sent)
			if resp, body := do(t, req); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			id := <-got
			if tc.kept && id != sent {
				t.Errorf("upstream x-request-id = %q, want the client's %q", id, sent)
			}
			if !tc.kept && (id == sent || id == "") {
				t.Errorf("upstream x-request-id = %q, want a new one", id)
			}
		})
	}
}

// TestJoinedHeader: a header's values as one (Envoy's codec folds a
// repeated x-forwarded-for with ","): absent, once, and repeated among
// other fields, in order.
func TestJoinedHeader(t *testing.T) {
	h := filter.NewHeaderMap(filter.Pair{Key: ":path", Value: "/"})
	if v, ok := joinedHeader(h, "x-forwarded-for"); ok || v != "" {
		t.Errorf("absent: %q %v", v, ok)
	}
	h.Add("X-Forwarded-For", "203.0.113.7")
	if v, ok := joinedHeader(h, "x-forwarded-for"); !ok || v != "203.0.113.7" {
		t.Errorf("once: %q %v", v, ok)
	}
	h.Add("x-other", "o")
	h.Add("x-forwarded-for", "10.1.2.3")
	h.Add("x-forwarded-for", "")
	if v, ok := joinedHeader(h, "x-forwarded-for"); !ok || v != "203.0.113.7,10.1.2.3," {
		t.Errorf("repeated: %q %v", v, ok)
	}
	e := filter.NewHeaderMap(filter.Pair{Key: "te", Value: ""})
	if v, ok := joinedHeader(e, "te"); !ok || v != "" {
		t.Errorf("one empty value: %q %v, want \"\" true", v, ok)
	}
}
