package config

import (
	"crypto/x509/pkix"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

func str(s string) *string { return &s }

func mustRegexp(t *testing.T, expr string) *Regexp {
	t.Helper()
	re, err := NewRegexp(expr)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// TestStringMatcher: every kind of StringMatcher, with and without
// ignore_case, as Envoy's StringMatcherImpl: ASCII case folding only,
// none for safe_regex, and a regex must match the whole value.
func TestStringMatcher(t *testing.T) {
	re := func(expr string) *Regexp { return mustRegexp(t, expr) }
	tests := []struct {
		name string
		m    StringMatcher
		in   string
		want bool
	}{
		{"exact", StringMatcher{Exact: str("abc")}, "abc", true},
		{"exact other case", StringMatcher{Exact: str("abc")}, "ABC", false},
		{"exact ignore_case", StringMatcher{Exact: str("abc"), IgnoreCase: true}, "aBC", true},
		{"exact ignore_case longer", StringMatcher{Exact: str("abc"), IgnoreCase: true}, "abcd", false},
		{"exact ignore_case is ASCII only", StringMatcher{Exact: str("k"), IgnoreCase: true}, "\u212a", false}, // KELVIN SIGN folds to k in Unicode
		{"exact empty", StringMatcher{Exact: str("")}, "", true},
		{"prefix", StringMatcher{Prefix: str("/api")}, "/api/v1", true},
		{"prefix other case", StringMatcher{Prefix: str("/api")}, "/API/v1", false},
		{"prefix ignore_case", StringMatcher{Prefix: str("/api"), IgnoreCase: true}, "/API/v1", true},
		{"prefix longer than value", StringMatcher{Prefix: str("/api/v1"), IgnoreCase: true}, "/api", false},
		{"suffix", StringMatcher{Suffix: str(".com")}, "a.example.com", true},
		{"suffix other case", StringMatcher{Suffix: str(".com")}, "a.example.COM", false},
		{"suffix ignore_case", StringMatcher{Suffix: str(".com"), IgnoreCase: true}, "a.example.COM", true},
		{"suffix longer than value", StringMatcher{Suffix: str("x.com"), IgnoreCase: true}, ".com", false},
		{"contains", StringMatcher{Contains: str("mid")}, "amidst", true},
		{"contains other case", StringMatcher{Contains: str("mid")}, "aMIDst", false},
		{"contains ignore_case", StringMatcher{Contains: str("mid"), IgnoreCase: true}, "aMIDst", true},
		{"contains ignore_case at the end", StringMatcher{Contains: str("ST"), IgnoreCase: true}, "amidst", true},
		{"contains ignore_case absent", StringMatcher{Contains: str("xyz"), IgnoreCase: true}, "amidst", false},
		{"safe_regex whole value", StringMatcher{SafeRegex: re("v[12]")}, "v1", true},
		{"safe_regex is not a search", StringMatcher{SafeRegex: re("v[12]")}, "xv1", false},
		{"safe_regex alternation full-matches", StringMatcher{SafeRegex: re("/api|/api/v1")}, "/api/v1", true},
		{"safe_regex ignores ignore_case", StringMatcher{SafeRegex: re("abc"), IgnoreCase: true}, "ABC", false},
		{"safe_regex own flag", StringMatcher{SafeRegex: re("(?i)abc")}, "ABC", true},
		{"nothing set", StringMatcher{}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Match(tc.in); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestRegexpFullMatch: a safe_regex applies as RE2's FullMatch, however
// the Regexp was made: by Parse, by NewRegexp, from JSON, or as a Go
// literal of the embedded expression (compiled on first use). The
// alternation case is the one the old FindStringIndex span check got
// wrong: the leftmost-first match of `/api|/api/v1` in "/api/v1" is
// "/api", which does not span the value.
func TestRegexpFullMatch(t *testing.T) {
	const expr = "/api|/api/v1"
	parsed, err := Parse([]byte(strings.Replace(minimal, `match: {prefix: "/"}`, `match: {safe_regex: {regex: "`+expr+`"}}`, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Regexp
	if err := fromJSON.UnmarshalJSON([]byte(`"` + expr + `"`)); err != nil {
		t.Fatal(err)
	}
	makers := map[string]*Regexp{
		"Parse":     parsed.Listeners[0].FilterChains[0].HTTP.Routes.VirtualHosts[0].Routes[0].Match.SafeRegex,
		"NewRegexp": mustRegexp(t, expr),
		"JSON":      &fromJSON,
		"literal":   {Regexp: regexp.MustCompile(expr)},
	}
	for name, re := range makers {
		if re.String() != expr {
			t.Errorf("%s: String() = %q, want the expression as written", name, re.String())
		}
		for in, want := range map[string]bool{"/api": true, "/api/v1": true, "/api/v": false, "/api/v1/x": false, "x/api": false} {
			if got := re.FullMatch(in); got != want {
				t.Errorf("%s: FullMatch(%q) = %v, want %v", name, in, got, want)
			}
		}
	}
	if (&Regexp{}).FullMatch("") {
		t.Error("a Regexp without an expression matched")
	}
}

// TestHeaderMatcher: Envoy's header matching: a value matcher needs the
// header (repeated values joined with ","), present_match true/false
// tests presence/absence, no matcher means present, and invert_match
// negates each, so an inverted value matcher matches an absent header.
func TestHeaderMatcher(t *testing.T) {
	yes, no := true, false
	exact := func(v string) StringMatcher { return StringMatcher{Exact: &v} }
	tests := []struct {
		name   string
		m      HeaderMatcher
		values []string
		want   bool
	}{
		{"exact", HeaderMatcher{StringMatcher: exact("blue")}, []string{"blue"}, true},
		{"exact other value", HeaderMatcher{StringMatcher: exact("blue")}, []string{"red"}, false},
		{"exact absent", HeaderMatcher{StringMatcher: exact("blue")}, nil, false},
		{"exact empty value", HeaderMatcher{StringMatcher: exact("")}, []string{""}, true},
		{"exact empty absent", HeaderMatcher{StringMatcher: exact("")}, nil, false},
		{"repeated values joined", HeaderMatcher{StringMatcher: exact("a,b")}, []string{"a", "b"}, true},
		{"repeated values not one by one", HeaderMatcher{StringMatcher: exact("a")}, []string{"a", "b"}, false},
		{"string_match ignore_case", HeaderMatcher{StringMatcher: StringMatcher{Exact: str("PROD"), IgnoreCase: true}}, []string{"prod"}, true},
		{"prefix", HeaderMatcher{StringMatcher: StringMatcher{Prefix: str("pre")}}, []string{"prefix"}, true},
		{"suffix", HeaderMatcher{StringMatcher: StringMatcher{Suffix: str("fix")}}, []string{"prefix"}, true},
		{"contains", HeaderMatcher{StringMatcher: StringMatcher{Contains: str("efi")}}, []string{"prefix"}, true},
		{"safe_regex", HeaderMatcher{StringMatcher: StringMatcher{SafeRegex: mustRegexp(t, `\d{3}`)}}, []string{"123"}, true},
		{"safe_regex whole value", HeaderMatcher{StringMatcher: StringMatcher{SafeRegex: mustRegexp(t, `\d{3}`)}}, []string{"1234"}, false},
		{"safe_regex alternation", HeaderMatcher{StringMatcher: StringMatcher{SafeRegex: mustRegexp(t, `v1|v1\.2`)}}, []string{"v1.2"}, true},
		{"inverted regex (Envoy's example)", HeaderMatcher{StringMatcher: StringMatcher{SafeRegex: mustRegexp(t, `\d{3}`)}, InvertMatch: true}, []string{"1234"}, true},
		{"inverted exact matching", HeaderMatcher{StringMatcher: exact("no"), InvertMatch: true}, []string{"no"}, false},
		{"inverted exact absent", HeaderMatcher{StringMatcher: exact("no"), InvertMatch: true}, nil, true},
		{"no matcher present", HeaderMatcher{}, []string{"x"}, true},
		{"no matcher absent", HeaderMatcher{}, nil, false},
		{"no matcher inverted absent", HeaderMatcher{InvertMatch: true}, nil, true},
		{"present_match true present", HeaderMatcher{Present: &yes}, []string{""}, true},
		{"present_match true absent", HeaderMatcher{Present: &yes}, nil, false},
		{"present_match false absent", HeaderMatcher{Present: &no}, nil, true},
		{"present_match false present", HeaderMatcher{Present: &no}, []string{"x"}, false},
		{"present_match true inverted absent", HeaderMatcher{Present: &yes, InvertMatch: true}, nil, true},
		{"present_match false inverted present", HeaderMatcher{Present: &no, InvertMatch: true}, []string{"x"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Match(tc.values); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.values, got, tc.want)
			}
		})
	}
}

// TestRouteMatch: the path specifiers (a prefix against the whole :path,
// path and safe_regex against the path without query or fragment,
// case_sensitive for prefix and path only) and the header matchers,
// which must all match.
func TestRouteMatch(t *testing.T) {
	headers := map[string][]string{"x-env": {"Prod"}, "content-type": {"application/grpc+proto"}}
	values := func(name string) []string { return headers[name] }
	yes, no := true, false
	tests := []struct {
		name string
		m    RouteMatch
		path string
		want bool
	}{
		{"prefix", RouteMatch{Prefix: "/api", CaseSensitive: true}, "/api/v1?x=1", true},
		{"prefix sees the query", RouteMatch{Prefix: "/api?x", CaseSensitive: true}, "/api?x=1", true},
		{"prefix other case", RouteMatch{Prefix: "/api", CaseSensitive: true}, "/API", false},
		{"prefix case insensitive", RouteMatch{Prefix: "/api", CaseSensitive: false}, "/API/v1", true},
		{"empty prefix matches all", RouteMatch{CaseSensitive: true}, "/anything", true},
		{"path without query", RouteMatch{Path: "/healthz", CaseSensitive: true}, "/healthz?verbose", true},
		{"path without fragment", RouteMatch{Path: "/healthz", CaseSensitive: true}, "/healthz#top", true},
		{"path is exact", RouteMatch{Path: "/healthz", CaseSensitive: true}, "/healthz/x", false},
		{"path case insensitive", RouteMatch{Path: "/healthz", CaseSensitive: false}, "/HealthZ", true},
		{"safe_regex without query", RouteMatch{SafeRegex: mustRegexp(t, "/v[0-9]+/items"), CaseSensitive: true}, "/v2/items?page=3", true},
		{"safe_regex full match", RouteMatch{SafeRegex: mustRegexp(t, "/v[0-9]+/items"), CaseSensitive: true}, "/v2/items/7", false},
		{"safe_regex alternation", RouteMatch{SafeRegex: mustRegexp(t, "/api|/api/v1"), CaseSensitive: true}, "/api/v1", true},
		{"safe_regex ignores case_sensitive", RouteMatch{SafeRegex: mustRegexp(t, "/api"), CaseSensitive: false}, "/API", false},
		{"headers match", RouteMatch{Prefix: "/", CaseSensitive: true, Headers: []HeaderMatcher{
			{Name: "x-env", StringMatcher: StringMatcher{Exact: str("prod"), IgnoreCase: true}},
			{Name: "x-debug", InvertMatch: true},
		}}, "/", true},
		{"one header fails", RouteMatch{Prefix: "/", CaseSensitive: true, Headers: []HeaderMatcher{
			{Name: "x-env", StringMatcher: StringMatcher{Exact: str("Prod")}},
			{Name: "x-debug"},
		}}, "/", false},
		{"path_separated_prefix itself", RouteMatch{PathSeparatedPrefix: "/api", CaseSensitive: true}, "/api?x=1", true},
		{"path_separated_prefix and a segment", RouteMatch{PathSeparatedPrefix: "/api", CaseSensitive: true}, "/api/v1", true},
		{"path_separated_prefix not a longer segment", RouteMatch{PathSeparatedPrefix: "/api", CaseSensitive: true}, "/apis", false},
		{"path_separated_prefix case insensitive", RouteMatch{PathSeparatedPrefix: "/api", CaseSensitive: false}, "/API/x", true},
		{"query parameter value", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug", StringMatcher: StringMatcher{Exact: str("on")}}}}, "/x?a=1&debug=on", true},
		{"query parameter first value only", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug", StringMatcher: StringMatcher{Exact: str("on")}}}}, "/x?debug=off&debug=on", false},
		{"query parameter percent-decoded, + kept", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "q", StringMatcher: StringMatcher{Exact: str("a b+c")}}}}, "/x?q=a%20b+c", true},
		{"query parameter missing", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug"}}}, "/x?a=1", false},
		{"query parameter present without value", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug"}}}, "/x?debug", true},
		{"query parameter present_match true", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug", Present: &yes}}}, "/x?debug=1", true},
		{"query parameter present_match false", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug", Present: &no}}}, "/x?debug=1", false},
		{"query parameter not in the fragment", RouteMatch{Prefix: "/", CaseSensitive: true, QueryParameters: []QueryParameterMatcher{
			{Name: "debug"}}}, "/x?a=1#debug=1", false},
		{"grpc", RouteMatch{Prefix: "/", CaseSensitive: true, GRPC: true}, "/pkg.Svc/Method", true},
		{"runtime_fraction 100%", RouteMatch{Prefix: "/", CaseSensitive: true, RuntimeFraction: &Percent{Numerator: 100, Denominator: 100}}, "/", true},
		{"runtime_fraction 0%", RouteMatch{Prefix: "/", CaseSensitive: true, RuntimeFraction: &Percent{Numerator: 0, Denominator: 100}}, "/", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Matches(tc.path, values); got != tc.want {
				t.Errorf("Matches(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
	// grpc: Envoy's content-type rule.
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/json": false, "": false,
	} {
		m := RouteMatch{Prefix: "/", CaseSensitive: true, GRPC: true}
		got := m.Matches("/", func(name string) []string {
			if name == "content-type" && ct != "" {
				return []string{ct}
			}
			return nil
		})
		if got != want {
			t.Errorf("grpc match with content-type %q = %v, want %v", ct, got, want)
		}
	}
}

// TestSANMatcher: subject alternative names of real certificates through
// the same StringMatcher, by type, and Envoy's DNS rule for an exact
// matcher (case-insensitive, a wildcard certificate name covers one
// label).
func TestSANMatcher(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	cert := ca.Issue(t, testpki.Options{
		Client:   true,
		Subject:  pkix.Name{CommonName: "client"},
		DNSNames: []string{"client.example.com", "*.svc.example.com", "api*.example.net", "xn--*.example.org"},
		URIs:     []string{"spiffe://cluster.local/ns/kafka/sa/alice"},
		Emails:   []string{"Alice@Example.com"},
		IPs:      []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("2001:db8::1")},
	}).Leaf
	tests := []struct {
		name string
		m    SANMatcher
		want bool
	}{
		{"DNS exact", SANMatcher{"DNS", StringMatcher{Exact: str("client.example.com")}}, true},
		{"DNS exact any case", SANMatcher{"DNS", StringMatcher{Exact: str("Client.Example.COM")}}, true},
		{"DNS exact under a wildcard", SANMatcher{"DNS", StringMatcher{Exact: str("db.svc.example.com")}}, true},
		{"DNS wildcard covers one label only", SANMatcher{"DNS", StringMatcher{Exact: str("a.db.svc.example.com")}}, false},
		{"DNS wildcard needs a label", SANMatcher{"DNS", StringMatcher{Exact: str("svc.example.com")}}, false},
		{"DNS partial wildcard label", SANMatcher{"DNS", StringMatcher{Exact: str("api1.example.net")}}, true},
		{"DNS partial wildcard label mismatch", SANMatcher{"DNS", StringMatcher{Exact: str("web.example.net")}}, false},
		{"DNS no wildcard in an A-label", SANMatcher{"DNS", StringMatcher{Exact: str("xn--bcher-kva.example.org")}}, false},
		{"DNS other name", SANMatcher{"DNS", StringMatcher{Exact: str("other.example.com")}}, false},
		{"DNS suffix (no DNS rule)", SANMatcher{"DNS", StringMatcher{Suffix: str(".example.com")}}, true},
		{"DNS regex", SANMatcher{"DNS", StringMatcher{SafeRegex: mustRegexp(t, `client\.example\.com|client`)}}, true},
		{"URI prefix", SANMatcher{"URI", StringMatcher{Prefix: str("spiffe://cluster.local/ns/kafka/")}}, true},
		{"URI prefix other namespace", SANMatcher{"URI", StringMatcher{Prefix: str("spiffe://cluster.local/ns/other/")}}, false},
		{"URI regex full match", SANMatcher{"URI", StringMatcher{SafeRegex: mustRegexp(t, `spiffe://cluster\.local/ns/kafka`)}}, false},
		{"EMAIL exact other case", SANMatcher{"EMAIL", StringMatcher{Exact: str("alice@example.com")}}, false},
		{"EMAIL exact ignore_case", SANMatcher{"EMAIL", StringMatcher{Exact: str("alice@example.com"), IgnoreCase: true}}, true},
		{"EMAIL suffix ignore_case", SANMatcher{"EMAIL", StringMatcher{Suffix: str("@EXAMPLE.COM"), IgnoreCase: true}}, true},
		{"IP exact v4", SANMatcher{"IP_ADDRESS", StringMatcher{Exact: str("10.0.0.7")}}, true},
		{"IP exact v6", SANMatcher{"IP_ADDRESS", StringMatcher{Exact: str("2001:db8::1")}}, true},
		{"IP prefix", SANMatcher{"IP_ADDRESS", StringMatcher{Prefix: str("10.0.")}}, true},
		{"type matters", SANMatcher{"URI", StringMatcher{Exact: str("client.example.com")}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Match(cert); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}
