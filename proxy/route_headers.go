package proxy

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// headerLevels are the header mutations that apply to a request routed
// by route in vh, in Envoy's order: the picked weighted cluster's first
// (WeightedClusterEntry), then the route's levels by
// RouteEntryImplBase::getHeaderParsers — the most specific first (route,
// virtual host, route configuration), so that a less specific level's
// overwrite wins, or the reverse under
// most_specific_header_mutations_wins. req picks the request or the
// response mutations.
func (t *routeTable) headerLevels(vh *config.VirtualHost, route *config.Route, wc *config.WeightedCluster, req bool) [4]*config.HeaderMutations {
	var levels [4]*config.HeaderMutations
	pick := func(reqM, respM *config.HeaderMutations) *config.HeaderMutations {
		if req {
			return reqM
		}
		return respM
	}
	if wc != nil {
		levels[0] = pick(wc.RequestHeaders, wc.ResponseHeaders)
	}
	if route != nil {
		levels[1] = pick(route.RequestHeaders, route.ResponseHeaders)
	}
	if vh != nil {
		levels[2] = pick(vh.RequestHeaders, vh.ResponseHeaders)
	}
	if t.rc != nil {
		levels[3] = pick(t.rc.RequestHeaders, t.rc.ResponseHeaders)
		if t.rc.MostSpecificHeaderMutationsWins {
			levels[1], levels[3] = levels[3], levels[1]
		}
	}
	return levels
}

// noMutations reports that none of the levels changes anything.
func noMutations(levels [4]*config.HeaderMutations) bool {
	for _, m := range levels {
		if !m.Empty() {
			return false
		}
	}
	return true
}

// applyHeaderMutations edits h as Envoy's HeaderParser::evaluateHeaders
// does with one level: removals first, then every value is rendered
// (an empty one is skipped unless keep_empty_value), then the overwrites
// are set and last the additions appended, so that an option's
// ADD_IF_ABSENT or OVERWRITE_IF_EXISTS sees the headers as they were
// before this level added any.
func applyHeaderMutations(h *filter.HeaderMap, m *config.HeaderMutations, e *accesslog.Entry) {
	if m.Empty() {
		return
	}
	for _, k := range m.Remove {
		h.Del(k)
	}
	var overwrite, add []filter.Pair
	for i := range m.Add {
		o := &m.Add[i]
		v := o.Render(e)
		if v == "" && !o.KeepEmptyValue {
			continue
		}
		switch o.Action {
		case config.AddIfAbsent:
			if _, ok := h.Get(o.Key); !ok {
				add = append(add, filter.Pair{Key: o.Key, Value: v})
			}
		case config.OverwriteIfExists:
			if _, ok := h.Get(o.Key); ok {
				overwrite = append(overwrite, filter.Pair{Key: o.Key, Value: v})
			}
		case config.OverwriteIfExistsOrAdd:
			overwrite = append(overwrite, filter.Pair{Key: o.Key, Value: v})
		default: // AppendIfExistsOrAdd
			add = append(add, filter.Pair{Key: o.Key, Value: v})
		}
	}
	for _, p := range overwrite {
		h.Set(p.Key, p.Value)
	}
	for _, p := range add {
		h.Add(p.Key, p.Value)
	}
}

// applyRequestHeaders is the router's finalizeRequestHeaders: the
// route's, virtual host's and route configuration's request mutations,
// on the headers about to go upstream.
func (s *stream) applyRequestHeaders(h *filter.HeaderMap, vh *config.VirtualHost, route *config.Route, wc *config.WeightedCluster) {
	levels := s.routeGen.table.headerLevels(vh, route, wc, true)
	if noMutations(levels) {
		return
	}
	e := &accesslog.Entry{Info: &s.info, RequestHeaders: h.Get}
	for _, m := range levels {
		applyHeaderMutations(h, m, e)
	}
}

// applyResponseHeaders is the router's finalizeResponseHeaders: the
// response mutations of the route that served the request, on the
// upstream's response or a reply the router made for that route.
func (s *stream) applyResponseHeaders(h *filter.HeaderMap, vh *config.VirtualHost, route *config.Route, wc *config.WeightedCluster) {
	levels := s.routeGen.table.headerLevels(vh, route, wc, false)
	if noMutations(levels) {
		return
	}
	e := &accesslog.Entry{Info: &s.info, ResponseHeaders: h.Get}
	if rh := s.fc.ReqHeaders; rh != nil {
		e.RequestHeaders = rh.Get
	}
	for _, m := range levels {
		applyHeaderMutations(h, m, e)
	}
}

// routeReply is a reply the router makes for the matched route (a
// direct response, a redirect, an upstream failure): it carries the
// route's response header mutations, as Envoy's router adds them to its
// local replies.
func (s *stream) routeReply(status int, body []byte, headers []filter.Pair, details string) {
	vh, route, wc := s.routeVH, s.route, s.routeWC
	if s.up != nil {
		vh, route, wc = s.up.vh, s.up.route, s.up.wc
	}
	if !noMutations(s.routeGen.table.headerLevels(vh, route, wc, false)) {
		h := filter.NewHeaderMap(headers...)
		s.applyResponseHeaders(h, vh, route, wc)
		headers = h.Pairs()
	}
	s.sendLocalReply(status, body, headers, details)
}

// rewriteRequest applies the route's host and path rewrites to the
// request headers going upstream, after the header mutations, as
// Envoy's finalizeRequestHeaders does: host_rewrite_literal,
// host_rewrite_header (when the request has that header) or
// auto_host_rewrite (when the picked endpoint has a hostname: a DNS
// cluster's, or endpoint.hostname), then prefix_rewrite, regex_rewrite
// or path_rewrite_policy on the path without its query, keeping the original path in
// x-envoy-original-path.
func rewriteRequest(h *filter.HeaderMap, route *config.Route, ep *endpoint) {
	switch {
	case route.HostRewriteLiteral != "":
		h.Set(":authority", route.HostRewriteLiteral)
	case route.HostRewriteHeader != "":
		if v, ok := h.Get(route.HostRewriteHeader); ok && v != "" {
			h.Set(":authority", v)
		}
	case route.AutoHostRewrite && ep.hostname != "":
		h.Set(":authority", ep.hostname)
	}
	if route.PrefixRewrite == "" && route.RegexRewrite == nil && route.PathTemplateRewrite == nil {
		return
	}
	path, _ := h.Get(":path")
	newPath := path
	if route.PathTemplateRewrite != nil {
		// A path the template no longer matches (a filter changed it
		// without clearing the route) is sent as it is, as Envoy does.
		newPath, _ = route.PathTemplateRewrite.Rewrite(route.Match.PathTemplate, path)
	} else if route.RegexRewrite != nil {
		p, query, hasQuery := strings.Cut(path, "?")
		newPath = route.RegexRewrite.Rewrite(p)
		if hasQuery {
			newPath += "?" + query
		}
	} else if route.Match.Prefix != "" && strings.HasPrefix(path, route.Match.Prefix) {
		newPath = route.PrefixRewrite + path[len(route.Match.Prefix):]
	} else {
		return
	}
	h.Set("x-envoy-original-path", path)
	h.Set(":path", newPath)
}
