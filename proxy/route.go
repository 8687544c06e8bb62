package proxy

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// routeTable answers "which route serves this request", Envoy's way:
// the virtual host is chosen by :authority (exact domain, then the
// longest suffix wildcard "*.example.com", then the longest prefix
// wildcard "foo.*", then "*"), then the first route whose match accepts
// the request.
type routeTable struct {
	exact    map[string]*config.VirtualHost
	suffixes []wildcard // "*.x" sorted longest first
	prefixes []wildcard // "x.*" sorted longest first
	any      *config.VirtualHost
}

type wildcard struct {
	part string
	vh   *config.VirtualHost
}

func newRouteTable(rc *config.RouteConfig) *routeTable {
	t := &routeTable{exact: map[string]*config.VirtualHost{}}
	if rc == nil {
		return t
	}
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if t.any == nil {
					t.any = vh
				}
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			default:
				if _, dup := t.exact[d]; !dup {
					t.exact[d] = vh
				}
			}
		}
	}
	longestFirst := func(w []wildcard) {
		for i := 1; i < len(w); i++ {
			for j := i; j > 0 && len(w[j].part) > len(w[j-1].part); j-- {
				w[j], w[j-1] = w[j-1], w[j]
			}
		}
	}
	longestFirst(t.suffixes)
	longestFirst(t.prefixes)
	return t
}

func (t *routeTable) virtualHost(authority string) *config.VirtualHost {
	host := strings.ToLower(authority)
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	// Envoy retries without the port when the authority carries one.
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		if vh, ok := t.exact[host[:i]]; ok {
			return vh
		}
		host = host[:i]
	}
	for _, w := range t.suffixes {
		if strings.HasSuffix(host, w.part) && len(host) > len(w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if strings.HasPrefix(host, w.part) && len(host) > len(w.part) {
			return w.vh
		}
	}
	return t.any
}

// match returns the route for the request headers, or nil.
func (t *routeTable) match(h *filter.HeaderMap) (*config.VirtualHost, *config.Route) {
	authority, _ := h.Get(":authority")
	vh := t.virtualHost(authority)
	if vh == nil {
		return nil, nil
	}
	path, _ := h.Get(":path")
	// Matching ignores the query string, as Envoy's path matchers do.
	pathOnly := path
	if i := strings.IndexAny(pathOnly, "?#"); i >= 0 {
		pathOnly = pathOnly[:i]
	}
	for _, r := range vh.Routes {
		if routeMatches(&r.Match, path, pathOnly, h) {
			return vh, r
		}
	}
	return vh, nil
}

func routeMatches(m *config.RouteMatch, path, pathOnly string, h *filter.HeaderMap) bool {
	switch {
	case m.SafeRegex != nil && m.SafeRegex.Regexp != nil:
		// Envoy matches the regex against the whole path without query.
		loc := m.SafeRegex.FindStringIndex(pathOnly)
		if loc == nil || loc[0] != 0 || loc[1] != len(pathOnly) {
			return false
		}
	case m.Path != "":
		if m.CaseSensitive {
			if pathOnly != m.Path {
				return false
			}
		} else if !strings.EqualFold(pathOnly, m.Path) {
			return false
		}
	default:
		if m.CaseSensitive {
			if !strings.HasPrefix(path, m.Prefix) {
				return false
			}
		} else if len(path) < len(m.Prefix) || !strings.EqualFold(path[:len(m.Prefix)], m.Prefix) {
			return false
		}
	}
	for i := range m.Headers {
		if !headerMatches(&m.Headers[i], h) {
			return false
		}
	}
	return true
}

func headerMatches(hm *config.HeaderMatcher, h *filter.HeaderMap) bool {
	values := h.Values(hm.Name)
	present := len(values) > 0
	// Envoy matches the comma-joined value of repeated headers.
	v := strings.Join(values, ",")
	var ok bool
	switch {
	case hm.Exact != nil:
		ok = present && v == *hm.Exact
	case hm.Prefix != nil:
		ok = present && strings.HasPrefix(v, *hm.Prefix)
	case hm.Suffix != nil:
		ok = present && strings.HasSuffix(v, *hm.Suffix)
	case hm.Contains != nil:
		ok = present && strings.Contains(v, *hm.Contains)
	case hm.SafeRegex != nil && hm.SafeRegex.Regexp != nil:
		loc := hm.SafeRegex.FindStringIndex(v)
		ok = present && loc != nil && loc[0] == 0 && loc[1] == len(v)
	case hm.Present != nil:
		ok = present == *hm.Present
	default:
		ok = present
	}
	if hm.InvertMatch {
		return !ok
	}
	return ok
}
