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

// match returns the route for the request headers, or nil. Each route's
// match is config.RouteMatch.Matches: the model's one matcher.
func (t *routeTable) match(h *filter.HeaderMap) (*config.VirtualHost, *config.Route) {
	authority, _ := h.Get(":authority")
	vh := t.virtualHost(authority)
	if vh == nil {
		return nil, nil
	}
	path, _ := h.Get(":path")
	for _, r := range vh.Routes {
		if r.Match.Matches(path, h.Values) {
			return vh, r
		}
	}
	return vh, nil
}
