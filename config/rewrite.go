package config

import (
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// RegexRewrite is RouteAction.regex_rewrite: every match of Pattern in
// the request's path (its query left alone) is replaced by Substitution,
// written as RE2 writes it (\1 for a group, \\ for a backslash).
type RegexRewrite struct {
	Pattern      *Regexp `json:"pattern"`
	Substitution string  `json:"substitution"`
	// template is Substitution in Go's Expand syntax.
	template string
}

// Rewrite applies the rewrite to path, as RE2::GlobalReplace does.
func (r *RegexRewrite) Rewrite(path string) string {
	return r.Pattern.ReplaceAllString(path, r.template)
}

// buildRegexRewrite compiles a RegexMatchAndSubstitute. The substitution
// is checked as RE2::CheckRewriteString checks it: a backslash is
// followed by a digit naming one of the pattern's groups, or by another
// backslash.
func buildRegexRewrite(pb *matcherv3.RegexMatchAndSubstitute, path string) (*RegexRewrite, error) {
	re, err := compileRegex(pb.GetPattern(), joinPath(path, "pattern"))
	if err != nil {
		return nil, err
	}
	sub := pb.GetSubstitution()
	var t strings.Builder
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		switch {
		case c == '$':
			t.WriteString("$$")
		case c != '\\':
			t.WriteByte(c)
		case i+1 < len(sub) && sub[i+1] == '\\':
			t.WriteByte('\\')
			i++
		case i+1 < len(sub) && sub[i+1] >= '0' && sub[i+1] <= '9':
			n := int(sub[i+1] - '0')
			if n > re.NumSubexp() {
				return nil, fieldError(joinPath(path, "substitution"), "\\%d names a group the pattern does not have (it has %d)", n, re.NumSubexp())
			}
			t.WriteString("${" + string(sub[i+1]) + "}")
			i++
		default:
			return nil, fieldError(joinPath(path, "substitution"), "a backslash must be followed by a digit or a backslash: %q", sub)
		}
	}
	return &RegexRewrite{Pattern: re, Substitution: sub, template: t.String()}, nil
}
