package config

import (
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// TestRegexRewrite: the substitution is read as RE2 reads it (\N a
// group, \\ a backslash, $ a plain character) and every match in the
// path is replaced, as RE2::GlobalReplace does.
func TestRegexRewrite(t *testing.T) {
	for _, tc := range []struct {
		pattern, sub, path, want string
	}{
		{`^/service/([^/]+)(/.*)$`, `\2/instance/\1`, "/service/foo/v1/api", "/v1/api/instance/foo"},
		{`o`, `0`, "/foo/boo", "/f00/b00"},
		{`^/(a)`, `/\\$1\0`, "/ab", `/\$1/ab`},
		{`x`, `y`, "/abc", "/abc"},
	} {
		rr, err := buildRegexRewrite(&matcherv3.RegexMatchAndSubstitute{
			Pattern: &matcherv3.RegexMatcher{Regex: tc.pattern}, Substitution: tc.sub}, "r")
		if err != nil {
			t.Fatalf("%q → %q: %v", tc.pattern, tc.sub, err)
		}
		if got := rr.Rewrite(tc.path); got != tc.want {
			t.Errorf("%q → %q on %q = %q, want %q", tc.pattern, tc.sub, tc.path, got, tc.want)
		}
	}
	for _, sub := range []string{`\2`, `\x`, `trailing\`} {
		if _, err := buildRegexRewrite(&matcherv3.RegexMatchAndSubstitute{
			Pattern: &matcherv3.RegexMatcher{Regex: `(a)`}, Substitution: sub}, "r"); err == nil {
			t.Errorf("substitution %q accepted", sub)
		}
	}
}
