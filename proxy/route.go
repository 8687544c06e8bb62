package proxy

import (
	"sort"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// routeTable answers "which route serves this request", Envoy's way
// (RouteMatcher::findVirtualHost): the virtual host is chosen by the
// whole :authority, port included, lower-cased — an exact domain, then
// the longest suffix wildcard ("*.example.com", "*-bar.example.com"),
// then the longest prefix wildcard ("foo.*", "foo-*"), then "*"; a
// wildcard's "*" stands for at least one character. The port is left
// out only under the route configuration's ignore_port_in_host_matching
// (or when the connection manager stripped it from the header itself).
// Then the first route of the virtual host whose match accepts the
// request.
type routeTable struct {
	exact      map[string]*config.VirtualHost
	suffixes   []wildcard // "*.x" sorted longest first
	prefixes   []wildcard // "x.*" sorted longest first
	any        *config.VirtualHost
	ignorePort bool
	// rc holds the route configuration's own header mutations.
	rc *config.RouteConfig
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
	t.ignorePort = rc.IgnorePortInHostMatching
	t.rc = rc
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			// Duplicates are refused when the config is built.
			d = strings.ToLower(d)
			switch {
			case d == "*":
				t.any = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(w []wildcard) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].part) > len(w[j].part) })
	}
	longestFirst(t.suffixes)
	longestFirst(t.prefixes)
	return t
}

// virtualHost picks the virtual host for the request's :authority; nil
// when none matches, or when the request has no authority and the table
// holds more than a catch-all.
func (t *routeTable) virtualHost(h *filter.HeaderMap) *config.VirtualHost {
	if len(t.exact) == 0 && len(t.suffixes) == 0 && len(t.prefixes) == 0 {
		return t.any
	}
	host, ok := h.GetLower(":authority")
	if !ok {
		return nil
	}
	if t.ignorePort {
		if i := hostPortStart(host); i >= 0 {
			host = host[:i]
		}
	}
	host = strings.ToLower(host) // no copy when already lower case
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			return w.vh
		}
	}
	return t.any
}

// hostPortStart is the index of the ':' before the port in a Host
// value, or -1 when it has none ("[::1]" has none; "[::1]:80" has one).
func hostPortStart(host string) int {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.LastIndexByte(host, ']') > i {
		return -1
	}
	return i
}

// stripHostPort is the connection manager's strip_any_host_port and
// strip_matching_host_port: the port leaves the :authority header before
// the filters and the router see it — any numeric port, or only the
// listener's own (listenerPort). Envoy leaves a non-numeric port alone.
func stripHostPort(h *filter.HeaderMap, matchOnly bool, listenerPort uint16) {
	host, ok := h.GetLower(":authority")
	if !ok {
		return
	}
	i := hostPortStart(host)
	if i < 0 {
		return
	}
	port, err := strconv.ParseUint(host[i+1:], 10, 32)
	if err != nil || (matchOnly && port != uint64(listenerPort)) {
		return
	}
	h.SetLower(":authority", host[:i])
}

// match returns the route for the request headers, or nil. Each route's
// match is config.RouteMatch.Matches: the model's one matcher.
func (t *routeTable) match(h *filter.HeaderMap) (*config.VirtualHost, *config.Route) {
	vh := t.virtualHost(h)
	if vh == nil {
		return nil, nil
	}
	path, _ := h.GetLower(":path")
	for _, r := range vh.Routes {
		if r.Match.Matches(path, h.Values) {
			return vh, r
		}
	}
	return vh, nil
}
