package config

import (
	"crypto/x509"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// This file is the one string matcher of the model: route paths, route
// header matchers and the SAN matchers of TLS contexts all match through
// StringMatcher's comparisons and Regexp.FullMatch, with Envoy's
// semantics (source/common/common/matchers.cc, header_utility.cc).

// StringMatcher is a type.matcher.v3.StringMatcher: exactly one of
// Exact, Prefix, Suffix, Contains and SafeRegex is set. A matcher with
// none set matches nothing.
type StringMatcher struct {
	Exact     *string `json:"exact,omitempty"`
	Prefix    *string `json:"prefix,omitempty"`
	Suffix    *string `json:"suffix,omitempty"`
	Contains  *string `json:"contains,omitempty"`
	SafeRegex *Regexp `json:"safe_regex,omitempty"`
	// IgnoreCase compares Exact, Prefix, Suffix and Contains without
	// regard to ASCII letter case, as Envoy does (absl's *IgnoreCase
	// functions: ASCII only). It has no effect on SafeRegex.
	IgnoreCase bool `json:"ignore_case,omitempty"`
}

// isSet reports whether one of the matcher's patterns is set.
func (m *StringMatcher) isSet() bool {
	return m.Exact != nil || m.Prefix != nil || m.Suffix != nil || m.Contains != nil || m.SafeRegex != nil
}

// Match reports whether s matches. A SafeRegex must match the whole of
// s, as RE2's FullMatch in Envoy.
func (m *StringMatcher) Match(s string) bool {
	switch {
	case m.Exact != nil:
		return equalFold(s, *m.Exact, m.IgnoreCase)
	case m.Prefix != nil:
		return hasPrefix(s, *m.Prefix, m.IgnoreCase)
	case m.Suffix != nil:
		return hasSuffix(s, *m.Suffix, m.IgnoreCase)
	case m.Contains != nil:
		return contains(s, *m.Contains, m.IgnoreCase)
	case m.SafeRegex != nil:
		return m.SafeRegex.FullMatch(s)
	}
	return false
}

// HeaderMatcher is a route.v3.HeaderMatcher: it matches one request
// header by value (the StringMatcher, from string_match or the
// deprecated exact_match, prefix_match, suffix_match, contains_match and
// safe_regex_match), by presence (Present), or, with neither set, by
// presence alone. InvertMatch negates the result.
type HeaderMatcher struct {
	Name string `json:"name"`
	StringMatcher
	// Present: true, the header must be present; false, absent.
	Present     *bool `json:"present,omitempty"`
	InvertMatch bool  `json:"invert_match,omitempty"`
}

// Match reports whether a request whose header Name has values (none
// when absent) matches. As in Envoy, the values of a repeated header are
// matched joined with ",", and an absent header matches no value
// matcher, so that with InvertMatch it matches.
func (h *HeaderMatcher) Match(values []string) bool {
	present := len(values) > 0
	var ok bool
	switch {
	case h.StringMatcher.isSet():
		if present {
			v := values[0]
			if len(values) > 1 {
				v = strings.Join(values, ",")
			}
			ok = h.StringMatcher.Match(v)
		}
	case h.Present != nil:
		ok = present == *h.Present
	default:
		ok = present
	}
	return ok != h.InvertMatch
}

// Matches reports whether a request with this :path (query string
// included) and these headers (values returns a header's values, none
// when absent) matches: the path by Prefix (the whole :path, as Envoy),
// Path or SafeRegex (the path without query string or fragment), then
// every header matcher.
func (m *RouteMatch) Matches(path string, values func(name string) []string) bool {
	ignoreCase := !m.CaseSensitive
	switch {
	case m.Connect:
		if v := values(":method"); len(v) == 0 || v[0] != "CONNECT" {
			return false
		}
	case m.SafeRegex != nil:
		// case_sensitive has no effect on a regex, as in Envoy.
		if !m.SafeRegex.FullMatch(pathOnly(path)) {
			return false
		}
	case m.Path != "":
		if !equalFold(pathOnly(path), m.Path, ignoreCase) {
			return false
		}
	case m.PathTemplate != nil:
		// Case-sensitive whatever case_sensitive says, as Envoy's
		// uri_template matcher.
		if !m.PathTemplate.Match(path) {
			return false
		}
	case m.PathSeparatedPrefix != "":
		p := pathOnly(path)
		if !hasPrefix(p, m.PathSeparatedPrefix, ignoreCase) ||
			len(p) > len(m.PathSeparatedPrefix) && p[len(m.PathSeparatedPrefix)] != '/' {
			return false
		}
	default:
		if !hasPrefix(path, m.Prefix, ignoreCase) {
			return false
		}
	}
	if m.GRPC && !IsGRPC(values("content-type")) {
		return false
	}
	for i := range m.Headers {
		if !m.Headers[i].Match(values(m.Headers[i].Name)) {
			return false
		}
	}
	if len(m.QueryParameters) > 0 {
		query := queryString(path)
		for i := range m.QueryParameters {
			if !m.QueryParameters[i].Match(query) {
				return false
			}
		}
	}
	if m.RuntimeFraction != nil && !m.RuntimeFraction.Sample() {
		return false
	}
	return true
}

// IsGRPC reports whether a content-type names gRPC, as Envoy's
// Grpc::Common::isGrpcRequestHeaders: application/grpc, or followed by
// "+" or ";".
func IsGRPC(contentType []string) bool {
	if len(contentType) == 0 {
		return false
	}
	ct := contentType[0]
	const g = "application/grpc"
	return strings.HasPrefix(ct, g) && (len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';')
}

// queryString is the part of a :path after "?", without a fragment.
func queryString(path string) string {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return ""
	}
	q := path[i+1:]
	if j := strings.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	return q
}

// Match reports whether the query string (without "?") matches: the
// parameter's first value, percent-decoded ("+" stays a plus, as in
// Envoy), against the string matcher; present_match says whether being
// there matches; with neither, being there is enough.
func (q *QueryParameterMatcher) Match(query string) bool {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.PathUnescape(name); err == nil {
			name = n
		}
		if name != q.Name {
			continue
		}
		if q.Present != nil {
			return *q.Present
		}
		if !q.StringMatcher.isSet() {
			return true
		}
		if v, err := url.PathUnescape(value); err == nil {
			value = v
		}
		return q.StringMatcher.Match(value)
	}
	return false
}

// Match reports whether a subject alternative name of the matcher's
// type in c matches (Envoy's StringSanMatcher). URIs are matched as
// written in the certificate, IP addresses in their text form. A DNS
// name against an exact matcher follows DNS rules, as in Envoy: letter
// case is ignored and a certificate name "*.example.com" (or
// "api*.example.com") covers one label.
func (m *SANMatcher) Match(c *x509.Certificate) bool {
	dnsExact := m.Type == "DNS" && m.Matcher.Exact != nil
	for _, n := range sanNames(c, m.Type) {
		if dnsExact && dnsNameMatch(*m.Matcher.Exact, n) || !dnsExact && m.Matcher.Match(n) {
			return true
		}
	}
	return false
}

// sanNames are c's subject alternative names of type kind, as text.
func sanNames(c *x509.Certificate, kind string) []string {
	var names []string
	switch kind {
	case "DNS":
		names = c.DNSNames
	case "EMAIL":
		names = c.EmailAddresses
	case "URI":
		for _, u := range c.URIs {
			names = append(names, u.String())
		}
	case "IP_ADDRESS":
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
	}
	return names
}

// dnsNameMatch reports whether the DNS name name is covered by pattern, a
// certificate's DNS SAN: equal in any letter case, or equal after the
// first label where pattern's first label holds the one wildcard of a
// pattern ("*" or "a*b", not an A-label "xn--…") that covers name's
// first label.
func dnsNameMatch(name, pattern string) bool {
	if equalFold(name, pattern, true) {
		return true
	}
	pLabel, pRest, ok := strings.Cut(pattern, ".")
	if !ok {
		return false
	}
	nLabel, nRest, ok := strings.Cut(name, ".")
	if !ok || strings.Contains(pRest, "*") || !equalFold(nRest, pRest, true) || hasPrefix(pLabel, "xn--", true) {
		return false
	}
	before, after, ok := strings.Cut(pLabel, "*")
	if !ok || strings.Contains(after, "*") {
		return false
	}
	return len(pLabel) <= len(nLabel)+1 && hasPrefix(nLabel, before, true) && hasSuffix(nLabel, after, true)
}

// pathOnly is a :path without its query string or fragment.
func pathOnly(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// equalFold reports whether a and b are equal, in ASCII letter case
// alone when ignoreCase.
func equalFold(a, b string, ignoreCase bool) bool {
	if !ignoreCase {
		return a == b
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func hasPrefix(s, prefix string, ignoreCase bool) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix, ignoreCase)
}

func hasSuffix(s, suffix string, ignoreCase bool) bool {
	return len(s) >= len(suffix) && equalFold(s[len(s)-len(suffix):], suffix, ignoreCase)
}

func contains(s, sub string, ignoreCase bool) bool {
	if !ignoreCase {
		return strings.Contains(s, sub)
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFold(s[i:i+len(sub)], sub, true) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// Regexp is a compiled RE2 regular expression, printed in JSON as
// written. The embedded Regexp is the expression as written (stats tag
// extraction searches with it). Where Envoy matches a whole value — the
// safe_regex of a route, a header matcher or a SAN matcher — FullMatch
// applies it as RE2's FullMatch does: `/api|/api/v1` matches `/api/v1`.
//
// Parse (and NewRegexp, UnmarshalJSON) compile the whole-value form
// once, at load; a Regexp built in Go from the embedded field alone
// gets it compiled on first use.
type Regexp struct {
	*regexp.Regexp
	once sync.Once
	full *regexp.Regexp
}

// NewRegexp compiles expr both ways. Config loading uses compileRegex
// instead, which also bounds the program size.
func NewRegexp(expr string) (*Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	return newRegexp(re), nil
}

// newRegexp wraps re, compiling its whole-value form now.
func newRegexp(re *regexp.Regexp) *Regexp {
	return &Regexp{Regexp: re, full: anchor(re)}
}

// anchor compiles re to match only a whole value. An expression that
// compiled alone compiles in a group.
func anchor(re *regexp.Regexp) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + re.String() + `)$`)
}

// Anchored returns the expression compiled to match only a whole value,
// `^(?:expr)$`; nil when the Regexp holds no expression.
func (r *Regexp) Anchored() *regexp.Regexp {
	r.once.Do(func() {
		if r.full == nil && r.Regexp != nil {
			r.full = anchor(r.Regexp)
		}
	})
	return r.full
}

// FullMatch reports whether the whole of s matches the expression. A
// Regexp without an expression matches nothing.
func (r *Regexp) FullMatch(s string) bool {
	full := r.Anchored()
	return full != nil && full.MatchString(s)
}

func (r *Regexp) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.String())
}

func (r *Regexp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return err
	}
	*r = Regexp{Regexp: re, full: anchor(re)}
	return nil
}
