package config

import (
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	uritmatchv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	uritrewritev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/rewrite/uri_template/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The path match and rewrite extensions of RouteMatch.path_match_policy
// and RouteAction.path_rewrite_policy: Envoy's uri_template library
// (source/extensions/path/uri_template_lib), restated.
const (
	uriTemplateMatchName   protoreflect.FullName = "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
	uriTemplateRewriteName protoreflect.FullName = "envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig"
)

// Limits of a match template, as Envoy's.
const (
	uriTemplateMaxVariables  = 5
	uriTemplateMaxVarNameLen = 16
)

// uriLiteralChars are the characters a template literal may hold (RFC
// 3986 pchar without "*" and "="): unreserved, "%" (for pct-encoded),
// sub-delims but "*" and "=", ":" and "@".
const uriLiteralChars = "a-zA-Z0-9\\-._~%!$&'()+,;:@"

var (
	uriLiteralRe        = regexp.MustCompile("^[" + uriLiteralChars + "]+$")
	uriRewriteLiteralRe = regexp.MustCompile("^[" + uriLiteralChars + "/]+$")
	uriVarNameRe        = regexp.MustCompile("^[a-zA-Z][a-zA-Z0-9_]*$")
	uriPrintableRe      = regexp.MustCompile("^/[\x21-\x7e]*$")
)

// Regular expressions of the two globs: "*" is one path segment (at
// least one character, no "/"), "**" any number of them (possibly none).
const (
	uriPathGlob = "[" + uriLiteralChars + "]+"
	uriTextGlob = "[" + uriLiteralChars + "/]*"
)

// URITemplate is a path_match_policy uri_template matcher's
// path_template: "/" then segments separated by "/", each a literal,
// "*" (one segment), "**" (the rest of the path, "/" included) or a
// variable "{name}" ("*"), "{name=<literals and globs joined by />}";
// the last segment may end in a literal suffix ("/{file}.m3u8"). It
// matches the whole path without query and fragment, case-sensitively.
type URITemplate struct {
	Template string `json:"path_template"`
	re       *regexp.Regexp
}

// Match reports whether path (query string allowed) matches.
func (t *URITemplate) Match(path string) bool {
	return t.re.MatchString(pathOnly(path))
}

// ParseURITemplate parses and validates a match template as Envoy's
// uri_template library does; the error says what is wrong with it.
func ParseURITemplate(tmpl string) (*URITemplate, error) {
	if !uriPrintableRe.MatchString(tmpl) {
		return nil, fmt.Errorf("a template starts with \"/\" and holds only printable ASCII without spaces")
	}
	var re strings.Builder
	re.WriteString("^/")
	rest := tmpl[1:]
	names := map[string]bool{}
	sawTextGlob := false
	// glob checks that no glob follows a "**": what the text glob leaves
	// unmatched would be ambiguous.
	glob := func(g string) error {
		if sawTextGlob {
			return fmt.Errorf("glob %q after \"**\"", g)
		}
		sawTextGlob = g == "**"
		return nil
	}
	first := true
	for rest != "" {
		if !first {
			re.WriteByte('/')
		}
		first = false
		var seg string
		switch {
		case rest[0] == '*':
			seg = "*"
			if strings.HasPrefix(rest, "**") {
				seg = "**"
			}
			rest = rest[len(seg):]
			if err := glob(seg); err != nil {
				return nil, err
			}
			re.WriteString(globRegex(seg))
		case rest[0] == '{':
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unmatched \"{\" in %q", rest)
			}
			body := rest[1:end]
			rest = rest[end+1:]
			name, match, hasMatch := strings.Cut(body, "=")
			if !uriVarNameRe.MatchString(name) {
				return nil, fmt.Errorf("invalid variable name %q (a letter, then letters, digits or \"_\")", name)
			}
			if len(name) > uriTemplateMaxVarNameLen {
				return nil, fmt.Errorf("variable name %q is longer than %d characters", name, uriTemplateMaxVarNameLen)
			}
			if names[name] {
				return nil, fmt.Errorf("variable %q appears twice", name)
			}
			names[name] = true
			if len(names) > uriTemplateMaxVariables {
				return nil, fmt.Errorf("more than %d variables", uriTemplateMaxVariables)
			}
			re.WriteString("(?P<" + name + ">")
			if !hasMatch {
				if sawTextGlob {
					return nil, fmt.Errorf("variable %q (a \"*\") after \"**\"", name)
				}
				re.WriteString(uriPathGlob)
			} else {
				if match == "" {
					return nil, fmt.Errorf("variable %q has an empty match after \"=\"", name)
				}
				for i, part := range strings.Split(match, "/") {
					if i > 0 {
						re.WriteByte('/')
					}
					switch {
					case part == "*" || part == "**":
						if err := glob(part); err != nil {
							return nil, err
						}
						re.WriteString(globRegex(part))
					case strings.HasPrefix(part, "*"):
						return nil, fmt.Errorf("variable %q: invalid glob %q", name, part)
					case part == "":
						return nil, fmt.Errorf("variable %q: empty segment in %q", name, match)
					case !uriLiteralRe.MatchString(part):
						return nil, fmt.Errorf("variable %q: invalid literal %q", name, part)
					default:
						re.WriteString(regexp.QuoteMeta(part))
					}
				}
			}
			re.WriteByte(')')
		default:
			lit := rest
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				lit = rest[:i]
			}
			rest = rest[len(lit):]
			if !uriLiteralRe.MatchString(lit) {
				return nil, fmt.Errorf("invalid literal %q", lit)
			}
			re.WriteString(regexp.QuoteMeta(lit))
		}
		if rest == "" {
			break
		}
		if rest == "/" {
			// A trailing "/" is an empty last segment.
			re.WriteByte('/')
			break
		}
		if rest[0] == '/' {
			rest = rest[1:]
			continue
		}
		// A suffix: the rest of the template, one literal.
		if strings.Contains(rest, "/") {
			return nil, fmt.Errorf("%q: a segment must end at \"/\" or end the template with a literal suffix", rest)
		}
		if !uriLiteralRe.MatchString(rest) {
			return nil, fmt.Errorf("invalid literal suffix %q", rest)
		}
		re.WriteString(regexp.QuoteMeta(rest))
		break
	}
	re.WriteByte('$')
	compiled, err := regexp.Compile(re.String())
	if err != nil {
		return nil, err // not reached: every piece above is quoted or fixed
	}
	return &URITemplate{Template: tmpl, re: compiled}, nil
}

func globRegex(g string) string {
	if g == "**" {
		return uriTextGlob
	}
	return uriPathGlob
}

// URITemplateRewrite is a path_rewrite_policy uri_template rewriter's
// path_template_rewrite: literals and "{name}" variables of the route's
// match template, which the rewritten path takes from the request path.
type URITemplateRewrite struct {
	Template string `json:"path_template_rewrite"`
	// parts alternate literal text and variable names; vars[i] says
	// which parts are variables.
	parts []string
	vars  []bool
}

// Rewrite rewrites path (its query and fragment kept as they are) by
// the variables m captures from it. ok is false when m does not match
// the path (a filter changed it after the route was chosen): Envoy
// then leaves the path as it is.
func (r *URITemplateRewrite) Rewrite(m *URITemplate, path string) (string, bool) {
	p := pathOnly(path)
	sub := m.re.FindStringSubmatch(p)
	if sub == nil {
		return path, false
	}
	var b strings.Builder
	for i, part := range r.parts {
		if r.vars[i] {
			b.WriteString(sub[m.re.SubexpIndex(part)])
		} else {
			b.WriteString(part)
		}
	}
	b.WriteString(path[len(p):])
	return b.String(), true
}

// parseURITemplateRewrite parses a rewrite template as Envoy's library
// does and checks its variables against the match template m.
func parseURITemplateRewrite(tmpl string, m *URITemplate) (*URITemplateRewrite, error) {
	if tmpl == "" || tmpl[0] != '/' {
		return nil, fmt.Errorf("a rewrite template starts with \"/\"")
	}
	if strings.Contains(tmpl, "//") {
		return nil, fmt.Errorf("\"//\" in a rewrite template")
	}
	r := &URITemplateRewrite{Template: tmpl}
	rest := tmpl
	for rest != "" {
		lit, after, hasVar := strings.Cut(rest, "{")
		if lit != "" {
			if !uriRewriteLiteralRe.MatchString(lit) {
				return nil, fmt.Errorf("invalid literal %q", lit)
			}
			r.parts, r.vars = append(r.parts, lit), append(r.vars, false)
		}
		if !hasVar {
			break
		}
		name, after2, ok := strings.Cut(after, "}")
		if !ok {
			return nil, fmt.Errorf("unmatched \"{\" in %q", "{"+after)
		}
		if !uriVarNameRe.MatchString(name) {
			return nil, fmt.Errorf("invalid variable name %q", name)
		}
		if m.re.SubexpIndex(name) < 0 {
			return nil, fmt.Errorf("variable %q is not one of path_match_policy's path_template %q", name, m.Template)
		}
		r.parts, r.vars = append(r.parts, name), append(r.vars, true)
		rest = after2
	}
	return r, nil
}

// buildPathMatchPolicy reads RouteMatch.path_match_policy: the
// uri_template matcher is the one Envoy has.
func buildPathMatchPolicy(pb *corev3.TypedExtensionConfig, path string) (*URITemplate, error) {
	payload, payloadPath, err := unpackAny(pb.GetTypedConfig(), joinPath(path, "typed_config"))
	if err != nil {
		return nil, err
	}
	cfg, ok := payload.(*uritmatchv3.UriTemplateMatchConfig)
	if !ok {
		if payload == nil {
			return nil, fieldError(joinPath(path, "typed_config"), "missing: path_match_policy needs its typed_config (%s)", uriTemplateMatchName)
		}
		return nil, notSupported(joinPath(path, "typed_config"), string(messageName(payload)))
	}
	t, err := ParseURITemplate(cfg.GetPathTemplate())
	if err != nil {
		return nil, fieldError(joinPath(payloadPath, "path_template"), "%q is invalid: %v", cfg.GetPathTemplate(), err)
	}
	return t, nil
}

// buildPathRewritePolicy reads RouteAction.path_rewrite_policy, which
// Envoy allows only beside a uri_template path_match_policy (m).
func buildPathRewritePolicy(pb *corev3.TypedExtensionConfig, path string, m *URITemplate) (*URITemplateRewrite, error) {
	payload, payloadPath, err := unpackAny(pb.GetTypedConfig(), joinPath(path, "typed_config"))
	if err != nil {
		return nil, err
	}
	cfg, ok := payload.(*uritrewritev3.UriTemplateRewriteConfig)
	if !ok {
		if payload == nil {
			return nil, fieldError(joinPath(path, "typed_config"), "missing: path_rewrite_policy needs its typed_config (%s)", uriTemplateRewriteName)
		}
		return nil, notSupported(joinPath(path, "typed_config"), string(messageName(payload)))
	}
	if m == nil {
		return nil, fieldError(path, "the uri_template rewriter needs the route's match.path_match_policy (the uri_template matcher) for its variables")
	}
	r, err := parseURITemplateRewrite(cfg.GetPathTemplateRewrite(), m)
	if err != nil {
		return nil, fieldError(joinPath(payloadPath, "path_template_rewrite"), "%q is invalid: %v", cfg.GetPathTemplateRewrite(), err)
	}
	return r, nil
}
