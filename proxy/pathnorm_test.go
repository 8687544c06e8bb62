package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// pathYAML routes /admin to a 403 direct response and the rest to the
// test's upstream; {{HCM}} holds the path settings.
const pathYAML = `
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
              routes:
              - match: {prefix: /admin}
                direct_response: {status: 403, body: {inline_string: blocked}}
              - match: {prefix: /}
                route: {cluster: up}
  clusters:
  - name: up
    connect_timeout: 5s
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{UPPORT}}}}}}]}]
`

// TestPathNormalization: normalize_path, merge_slashes and
// path_with_escaped_slashes_action rewrite :path before the route is
// chosen (so "/public/../admin" meets the /admin route) and the upstream
// receives the result, still in origin form; a path they refuse gets
// 400, one they redirect 307 to the normalized path.
func TestPathNormalization(t *testing.T) {
	up := newRequestLineUpstream(t)
	_, port, _ := strings.Cut(up.addr, ":")
	type exchange struct {
		path     string
		status   string // the response's status line
		upstream string // the request line the upstream saw ("" when it saw none)
	}
	for _, tc := range []struct {
		name      string
		hcm       string
		exchanges []exchange
		stat      string // a counter that must count the refused and redirected requests afterwards
		statN     uint64
	}{{
		name: "none: every path as sent",
		exchanges: []exchange{
			{"/public/../admin", "HTTP/1.1 200 OK", "GET /public/../admin HTTP/1.1"},
			{"//internal.example/admin", "HTTP/1.1 200 OK", "GET //internal.example/admin HTTP/1.1"},
			{"/a%2Fb", "HTTP/1.1 200 OK", "GET /a%2Fb HTTP/1.1"},
		},
	}, {
		name: "normalize_path and merge_slashes",
		hcm: `          normalize_path: true
          merge_slashes: true`,
		exchanges: []exchange{
			{"/public/../admin", "HTTP/1.1 403 Forbidden", ""},
			{"/public/%2e%2E/admin/x", "HTTP/1.1 403 Forbidden", ""},
			{"/a/./b/%7Euser/%2e%2e/c?x=/../y", "HTTP/1.1 200 OK", "GET /a/b/c?x=/../y HTTP/1.1"},
			{"//internal.example//admin/", "HTTP/1.1 200 OK", "GET /internal.example/admin/ HTTP/1.1"},
			{"/a%2Fb/%41", "HTTP/1.1 200 OK", "GET /a%2Fb/A HTTP/1.1"},
			{"/../../etc", "HTTP/1.1 200 OK", "GET /etc HTTP/1.1"},
		},
	}, {
		name: "normalize_path alone keeps empty segments, in origin form",
		hcm:  `          normalize_path: true`,
		exchanges: []exchange{
			{"//x/./admin", "HTTP/1.1 200 OK", "GET //x/admin HTTP/1.1"},
		},
	}, {
		name: "escaped slashes rejected",
		hcm:  `          path_with_escaped_slashes_action: REJECT_REQUEST`,
		exchanges: []exchange{
			{"/a%2fb", "HTTP/1.1 400 Bad Request", ""},
			{"/a%5Cb", "HTTP/1.1 400 Bad Request", ""},
			{"/a/b?next=%2F", "HTTP/1.1 200 OK", "GET /a/b?next=%2F HTTP/1.1"}, // the query is not the path
		},
		stat: "http.in.downstream_rq_failed_path_normalization", statN: 2,
	}, {
		name: "escaped slashes unescaped and forwarded",
		hcm: `          path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD
          normalize_path: true`,
		exchanges: []exchange{
			{"/admin%2Fx", "HTTP/1.1 403 Forbidden", ""},
			{"/a%5Cb", "HTTP/1.1 200 OK", "GET /a/b HTTP/1.1"},
		},
	}, {
		name: "escaped slashes redirected",
		hcm: `          path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT
          merge_slashes: true`,
		exchanges: []exchange{
			{"/a%2F%2Fb?q=1", "HTTP/1.1 307 Temporary Redirect", ""},
			{"/a//b", "HTTP/1.1 200 OK", "GET /a/b HTTP/1.1"}, // nothing escaped: forwarded
		},
		stat: "http.in.downstream_rq_redirected_with_normalized_path", statN: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := startYAML(t, strings.NewReplacer("{{HCM}}", tc.hcm, "{{UPPORT}}", port).Replace(pathYAML), "")
			for _, ex := range tc.exchanges {
				before := up.last()
				got := rawExchange(t, f.addr, "GET "+ex.path+" HTTP/1.1\r\nHost: front.example\r\n\r\n")
				if got != ex.status {
					t.Errorf("%s: %q, want %q", ex.path, got, ex.status)
				}
				seen := up.last()
				if ex.upstream == "" && seen != before {
					t.Errorf("%s: the upstream saw %q", ex.path, seen)
				}
				if ex.upstream != "" && seen != ex.upstream {
					t.Errorf("%s: the upstream saw %q, want %q", ex.path, seen, ex.upstream)
				}
			}
			if tc.stat != "" {
				if n := f.st.Counter(tc.stat).Value(); n != tc.statN {
					t.Errorf("%s = %d, want %d", tc.stat, n, tc.statN)
				}
			}
		})
	}
}

// TestPathRedirectLocation: UNESCAPE_AND_REDIRECT answers 307 with the
// normalized path (query kept) in location, without running filters;
// a gRPC request gets 400 instead, as on Envoy.
func TestPathRedirectLocation(t *testing.T) {
	hcm := `          path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT
          merge_slashes: true`
	f := startYAML(t, strings.NewReplacer("{{HCM}}", hcm, "{{UPPORT}}", "1").Replace(pathYAML), "")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/a%2F%2Fb?q=1", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "/a/b?q=1" {
		t.Errorf("got %d location %q, want 307 /a/b?q=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ = http.NewRequest("POST", "http://"+f.addr+"/svc%2FMethod", nil)
	req.Header.Set("Content-Type", "application/grpc")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("gRPC: got %d, want 400", resp.StatusCode)
	}
}

// TestNormalizePathRules: the normalization steps one by one, in
// Envoy's order.
func TestNormalizePathRules(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.HTTPConnectionManager
		in   string
		want string
		act  pathAction
	}{
		{config.HTTPConnectionManager{}, "/a/../b", "/a/../b", pathContinue},
		{pathSettings(true, false, ""), "/a/b/..", "/a/", pathContinue},
		{pathSettings(true, false, ""), "/a/b/.", "/a/b/", pathContinue},
		{pathSettings(true, false, ""), "/..", "/", pathContinue},
		{pathSettings(true, false, ""), "/a\\b\\..\\c", "/a/c", pathContinue},
		{pathSettings(true, false, ""), "/%61%2D%5f%7e%2e", "/a-_~.", pathContinue},
		{pathSettings(true, false, ""), "/%3a%2F%zz%", "/%3a%2F%zz%", pathContinue},
		{pathSettings(true, false, ""), "/caf\xc3\xa9 \"x\"", "/caf%C3%A9%20%22x%22", pathContinue},
		{pathSettings(true, false, ""), "/a/.b/..c/...", "/a/.b/..c/...", pathContinue},
		{pathSettings(true, false, ""), "*", "*", pathContinue},
		{pathSettings(false, true, ""), "///a//b///?q=//", "/a/b/?q=//", pathContinue},
		{pathSettings(false, true, ""), "//", "//", pathContinue}, // Envoy's result: a slash before and after nothing
		{pathSettings(false, false, "UNESCAPE_AND_FORWARD"), "/a%2fb%5C", "/a/b\\", pathContinue},
		{pathSettings(true, false, "UNESCAPE_AND_FORWARD"), "/a%2fb%5C", "/a/b/", pathContinue},
		{pathSettings(false, false, "UNESCAPE_AND_REDIRECT"), "/a%2Fb", "/a/b", pathRedirect},
		{pathSettings(false, false, "REJECT_REQUEST"), "/a%2F", "/a%2F", pathReject},
		{pathSettings(false, false, "REJECT_REQUEST"), "/a%2", "/a%2", pathContinue},
	} {
		h := filter.NewHeaderMap(filter.Pair{Key: ":path", Value: tc.in})
		act := normalizePath(&tc.cfg, h)
		got, _ := h.Get(":path")
		if got != tc.want || act != tc.act {
			t.Errorf("%+v %q: %q action %d, want %q action %d", tc.cfg.HCMRequestHandling, tc.in, got, act, tc.want, tc.act)
		}
	}
}

func pathSettings(normalize, merge bool, escaped string) config.HTTPConnectionManager {
	var c config.HTTPConnectionManager
	c.NormalizePath, c.MergeSlashes, c.PathWithEscapedSlashes = normalize, merge, escaped
	return c
}
