package proxy

import (
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// redirectLocation is the Location of a redirect route's reply, built
// as Envoy builds it (Http::Utility::newUri): the request's URL with the
// redirect's scheme, host, port and path put in.
//
//   - The scheme is scheme_redirect (https_redirect: "https"), else the
//     request's own (x-forwarded-proto, else :scheme).
//   - The host is host_redirect, else the request's :authority, whose
//     port is dropped when port_redirect gives another, or when the
//     scheme changes and the port was the old scheme's default
//     (http://x:80 redirected to https loses ":80").
//   - The path is path_redirect (the request's query appended unless it
//     has its own), or the request's path with the matched prefix
//     replaced by prefix_rewrite, or the request's path; strip_query
//     drops the query unless path_redirect carried one.
func redirectLocation(rd *config.Redirect, route *config.Route, h *filter.HeaderMap) string {
	reqScheme, _ := h.Get("x-forwarded-proto")
	if reqScheme == "" {
		reqScheme, _ = h.Get(":scheme")
	}
	scheme := rd.Scheme
	if scheme == "" {
		scheme = reqScheme
	}
	port := ""
	if rd.Port != 0 {
		port = ":" + strconv.FormatUint(uint64(rd.Port), 10)
	}
	host := rd.Host
	if host == "" {
		host, _ = h.Get(":authority")
		if i := hostPortStart(host); i >= 0 {
			oldPort := host[i:]
			drop := port != "" ||
				(scheme != reqScheme && ((reqScheme == "https" && oldPort == ":443") || (reqScheme == "http" && oldPort == ":80")))
			if drop {
				host = host[:i]
			}
		}
	}

	path, _ := h.Get(":path")
	pathHasQuery := false
	switch {
	case rd.Path != "":
		pathHasQuery = strings.Contains(rd.Path, "?")
		if !pathHasQuery {
			if q := strings.IndexByte(path, '?'); q >= 0 {
				path = rd.Path + path[q:]
			} else {
				path = rd.Path
			}
		} else {
			path = rd.Path
		}
	case rd.PrefixRewrite != "":
		matched := route.Match.Prefix
		if route.Match.Path != "" {
			matched = route.Match.Path
		}
		if matched != "" && len(path) >= len(matched) && (strings.HasPrefix(path, matched) || (!route.Match.CaseSensitive && strings.EqualFold(path[:len(matched)], matched))) {
			path = rd.PrefixRewrite + path[len(matched):]
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if rd.StripQuery && !pathHasQuery {
		if q := strings.IndexByte(path, '?'); q >= 0 {
			path = path[:q]
		}
	}
	return scheme + "://" + host + port + path
}
