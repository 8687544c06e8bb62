package proxy

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
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
