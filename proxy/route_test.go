package proxy

import (
	"net"
	"net/http"
	"regexp"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

func direct(body string) *config.DirectResponse {
	return &config.DirectResponse{Status: 200, Body: []byte(body)}
}

// TestRouteRegexAlternationFullMatch: a safe_regex route matches a path
// that any alternative matches whole, as RE2's FullMatch in Envoy. The
// leftmost-first search for `/api|/api/v1` in "/api/v1" finds "/api",
// which a span check after FindStringIndex rejected: the request got a
// 404.
func TestRouteRegexAlternationFullMatch(t *testing.T) {
	routes := []*config.Route{
		{Match: config.RouteMatch{SafeRegex: &config.Regexp{Regexp: regexp.MustCompile(`/api|/api/v1`)}, CaseSensitive: true}, DirectResponse: direct("api")},
	}
	f := start(t, routes, nil, nil)
	for path, want := range map[string]int{"/api": 200, "/api/v1": 200, "/api/v1?x=1": 200, "/api/v2": 404} {
		resp, body := do(t, mustReq("GET", "http://"+f.addr+path, nil))
		if resp.StatusCode != want || (want == 200 && body != "api") {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
}

// TestRouteHeaderMatchers: header matchers as a request meets them:
// string_match with ignore_case, an inverted regex that also matches an
// absent header, present_match false, repeated headers joined.
func TestRouteHeaderMatchers(t *testing.T) {
	no := false
	digits, err := config.NewRegexp(`\d{3}`)
	if err != nil {
		t.Fatal(err)
	}
	routes := []*config.Route{
		{Match: config.RouteMatch{Prefix: "/env", CaseSensitive: true, Headers: []config.HeaderMatcher{
			{Name: "x-env", StringMatcher: config.StringMatcher{Exact: ptr("PROD"), IgnoreCase: true}},
		}}, DirectResponse: direct("prod")},
		{Match: config.RouteMatch{Prefix: "/code", CaseSensitive: true, Headers: []config.HeaderMatcher{
			{Name: "x-code", StringMatcher: config.StringMatcher{SafeRegex: digits}, InvertMatch: true},
		}}, DirectResponse: direct("not three digits")},
		{Match: config.RouteMatch{Prefix: "/anon", CaseSensitive: true, Headers: []config.HeaderMatcher{
			{Name: "authorization", Present: &no},
		}}, DirectResponse: direct("anonymous")},
		{Match: config.RouteMatch{Prefix: "/multi", CaseSensitive: true, Headers: []config.HeaderMatcher{
			{Name: "x-tag", StringMatcher: config.StringMatcher{Exact: ptr("a,b")}},
		}}, DirectResponse: direct("both")},
	}
	f := start(t, routes, nil, nil)
	tests := []struct {
		name    string
		path    string
		headers [][2]string
		want    string // body of the direct response; "" for a 404
	}{
		{"ignore_case", "/env", [][2]string{{"X-Env", "prod"}}, "prod"},
		{"ignore_case other value", "/env", [][2]string{{"X-Env", "staging"}}, ""},
		{"inverted regex, other value", "/code", [][2]string{{"X-Code", "1234"}}, "not three digits"},
		{"inverted regex, absent", "/code", nil, "not three digits"},
		{"inverted regex, matching", "/code", [][2]string{{"X-Code", "123"}}, ""},
		{"absent header", "/anon", nil, "anonymous"},
		{"present header", "/anon", [][2]string{{"Authorization", "Bearer x"}}, ""},
		{"repeated header joined", "/multi", [][2]string{{"X-Tag", "a"}, {"X-Tag", "b"}}, "both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := mustReq("GET", "http://"+f.addr+tc.path, nil)
			for _, h := range tc.headers {
				req.Header.Add(h[0], h[1])
			}
			resp, body := do(t, req)
			if tc.want == "" && resp.StatusCode != http.StatusNotFound || tc.want != "" && (resp.StatusCode != 200 || body != tc.want) {
				t.Fatalf("got %d %q, want %q", resp.StatusCode, body, tc.want)
			}
		})
	}
}

// TestVirtualHostSelection: the virtual host is chosen from the whole
// :authority as Envoy chooses it — port included unless
// ignore_port_in_host_matching, exact before the longest suffix
// wildcard before the longest prefix wildcard before "*", a wildcard's
// "*" standing for at least one character. Before, everything after
// the last ':' was cut first, so "localhost:18000-canary" (a plugin's
// rewrite in proxy-wasm-go-sdk's http_routing example) matched as
// "localhost".
func TestVirtualHostSelection(t *testing.T) {
	vhosts := []*config.VirtualHost{
		{Name: "exact", Domains: []string{"api.example.com", "LOCALHOST:18000"}},
		{Name: "canary", Domains: []string{"*-canary"}},
		{Name: "suffix", Domains: []string{"*.example.com"}},
		{Name: "longer-suffix", Domains: []string{"*-bar.example.com"}},
		{Name: "prefix", Domains: []string{"foo.*"}},
		{Name: "longer-prefix", Domains: []string{"foo-bar.*"}},
		{Name: "ipv6", Domains: []string{"[::1]"}},
		{Name: "default", Domains: []string{"*"}},
	}
	tests := []struct {
		authority  string
		ignorePort bool
		want       string
	}{
		{"api.example.com", false, "exact"},
		{"API.Example.COM", false, "exact"},
		{"localhost:18000", false, "exact"},
		{"localhost:18000-canary", false, "canary"},
		{"localhost", false, "default"},
		{"api.example.com:443", false, "default"}, // the port is part of the authority
		{"api.example.com:443", true, "exact"},
		{"localhost:18000", true, "default"}, // "localhost" has no virtual host of its own
		{"www.example.com", false, "suffix"},
		{"baz-bar.example.com", false, "longer-suffix"},
		{"-bar.example.com", false, "suffix"}, // "*" is never empty
		{".example.com", false, "default"},
		{"foo.local", false, "prefix"},
		{"foo-bar.local", false, "longer-prefix"},
		{"foo.", false, "default"},
		{"[::1]", false, "ipv6"},
		{"[::1]:8080", true, "ipv6"},
		{"[::1]:8080", false, "default"},
		{"other", false, "default"},
	}
	for _, tc := range tests {
		table := newRouteTable(&config.RouteConfig{VirtualHosts: vhosts, IgnorePortInHostMatching: tc.ignorePort})
		h := filter.NewHeaderMap()
		h.Add(":authority", tc.authority)
		got := "none"
		if vh := table.virtualHost(h); vh != nil {
			got = vh.Name
		}
		if got != tc.want {
			t.Errorf("authority %q (ignore_port_in_host_matching %v): virtual host %s, want %s", tc.authority, tc.ignorePort, got, tc.want)
		}
	}

	// Without a catch-all, an unknown authority (or none) has no virtual
	// host; with only a catch-all, every request has it.
	h := filter.NewHeaderMap()
	h.Add(":path", "/")
	if vh := newRouteTable(&config.RouteConfig{VirtualHosts: vhosts[:1]}).virtualHost(h); vh != nil {
		t.Errorf("no :authority matched virtual host %s", vh.Name)
	}
	if vh := newRouteTable(&config.RouteConfig{VirtualHosts: vhosts[len(vhosts)-1:]}).virtualHost(h); vh == nil || vh.Name != "default" {
		t.Errorf("no :authority with a catch-all only: %v, want default", vh)
	}
}

// TestVirtualHostAfterPluginRewrite: a filter that rewrites the
// authority to "<host>-canary" and clears the route cache — what a Wasm
// plugin's header edit does, as proxy-wasm-go-sdk's http_routing example
// on Envoy — sends the request to the canary virtual host, and the port
// stripping options of the connection manager change the header the
// filters and the upstream see. A native filter's edit alone
// (x-canary: quiet) keeps the route matched before the filters, as in
// Envoy, where only a cleared route cache is matched again.
func TestVirtualHostAfterPluginRewrite(t *testing.T) {
	seen := make(chan string, 4)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Host
		w.Write([]byte("primary"))
	})
	canary := &hooks{decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, _ bool) filter.HeadersStatus {
		switch v, _ := h.Get("x-canary"); v {
		case "1":
			a, _ := h.Get(":authority")
			h.Set(":authority", a+"-canary")
			cb.(filter.RouteCacheClearer).ClearRouteCache()
		case "quiet":
			a, _ := h.Get(":authority")
			h.Set(":authority", a+"-canary")
		}
		return filter.HeadersContinue
	}}
	for _, tc := range []struct {
		name        string
		adjust      func(*config.HTTPConnectionManager)
		upstreamSee func(port string) string
	}{
		{"port kept", nil, func(port string) string { return "127.0.0.1:" + port }},
		{"strip_any_host_port", func(h *config.HTTPConnectionManager) { h.StripAnyHostPort = true }, func(string) string { return "127.0.0.1" }},
		{"strip_matching_host_port", func(h *config.HTTPConnectionManager) { h.StripMatchingHostPort = true }, func(string) string { return "127.0.0.1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes := []*config.Route{prefixRoute("/", "up")}
			f := startWith(t, routes, []string{"canary"}, loader{"canary": canary}, func(l *config.Listener) {
				hcm := l.FilterChains[0].HTTP
				hcm.Routes.VirtualHosts = append([]*config.VirtualHost{
					{Name: "canary", Domains: []string{"*-canary"}, Routes: []*config.Route{{Match: config.RouteMatch{Prefix: "/"}, DirectResponse: direct("canary")}}},
				}, hcm.Routes.VirtualHosts...)
				if tc.adjust != nil {
					tc.adjust(hcm)
				}
			}, staticCluster("up", up))
			_, port, _ := net.SplitHostPort(f.addr)

			req := mustReq("GET", "http://"+f.addr+"/", nil)
			req.Header.Set("x-canary", "1")
			if resp, body := do(t, req); resp.StatusCode != 200 || body != "canary" {
				t.Fatalf("with x-canary: %d %q, want the canary virtual host's reply", resp.StatusCode, body)
			}
			req = mustReq("GET", "http://"+f.addr+"/", nil)
			req.Header.Set("x-canary", "quiet")
			if resp, body := do(t, req); resp.StatusCode != 200 || body != "primary" {
				t.Fatalf("x-canary: quiet (no clear): %d %q, want the upstream", resp.StatusCode, body)
			}
			<-seen
			if resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil)); resp.StatusCode != 200 || body != "primary" {
				t.Fatalf("without x-canary: %d %q, want the upstream", resp.StatusCode, body)
			}
			if got, want := <-seen, tc.upstreamSee(port); got != want {
				t.Errorf("upstream saw Host %q, want %q", got, want)
			}
			// A port other than the listener's stays unless any port is
			// stripped.
			req = mustReq("GET", "http://"+f.addr+"/", nil)
			req.Host = "other.test:1"
			do(t, req)
			want := "other.test:1"
			if tc.name == "strip_any_host_port" {
				want = "other.test"
			}
			if got := <-seen; got != want {
				t.Errorf("Host other.test:1: upstream saw %q, want %q", got, want)
			}
		})
	}
}

// TestRedirectRoutes: a redirect route answers with its status and a
// Location built as Envoy builds it, for a real client.
func TestRedirectRoutes(t *testing.T) {
	rd := func(r config.Redirect) *config.Redirect {
		if r.Status == 0 {
			r.Status = 301
		}
		return &r
	}
	routes := []*config.Route{
		{Match: config.RouteMatch{Prefix: "/https", CaseSensitive: true}, Redirect: rd(config.Redirect{Scheme: "https"})},
		{Match: config.RouteMatch{Prefix: "/moved", CaseSensitive: true}, Redirect: rd(config.Redirect{Host: "new.example", Path: "/landing", Status: 308})},
		{Match: config.RouteMatch{Prefix: "/own-query", CaseSensitive: true}, Redirect: rd(config.Redirect{Path: "/q?fixed=1", StripQuery: true})},
		{Match: config.RouteMatch{Prefix: "/old/", CaseSensitive: true}, Redirect: rd(config.Redirect{PrefixRewrite: "/new/", Status: 302})},
		{Match: config.RouteMatch{Prefix: "/port", CaseSensitive: true}, Redirect: rd(config.Redirect{Port: 8443, StripQuery: true, Status: 307})},
		{Match: config.RouteMatch{Prefix: "/see", CaseSensitive: true}, Redirect: rd(config.Redirect{Scheme: "http", Status: 303})},
	}
	f := start(t, routes, nil, nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		host, path   string
		xfp          string
		wantStatus   int
		wantLocation string
	}{
		{"example.com", "/https/a?b=1", "", 301, "https://example.com/https/a?b=1"},
		{"example.com:80", "/https/a", "", 301, "https://example.com/https/a"}, // the old scheme's default port goes
		{"example.com:8080", "/https/a", "", 301, "https://example.com:8080/https/a"},
		{"example.com:443", "/see", "https", 303, "http://example.com/see"},
		{"example.com", "/moved/x?y=2", "", 308, "http://new.example/landing?y=2"},
		{"example.com", "/own-query?drop=1", "", 301, "http://example.com/q?fixed=1"},
		{"example.com", "/old/a/b?c=d", "", 302, "http://example.com/new/a/b?c=d"},
		{"example.com:80", "/port/x?q=1", "", 307, "http://example.com:8443/port/x"},
		{"[::1]:80", "/port", "", 307, "http://[::1]:8443/port"},
	}
	for _, tc := range tests {
		req := mustReq("GET", "http://"+f.addr+tc.path, nil)
		req.Host = tc.host
		if tc.xfp != "" {
			req.Header.Set("X-Forwarded-Proto", tc.xfp)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || resp.Header.Get("Location") != tc.wantLocation {
			t.Errorf("Host %s GET %s: %d Location %q, want %d %q", tc.host, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.wantStatus, tc.wantLocation)
		}
	}
}
