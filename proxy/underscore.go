package proxy

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/filter"
)

// underscoreHeaders applies the connection manager's
// headers_with_underscores_action to a new request's header names, as
// Envoy's codecs do: DROP_HEADER removes each such header (counted in
// http1.dropped_headers_with_underscores, or http2. by protocol),
// REJECT_REQUEST reports true (counted in
// http1/http2.requests_rejected_with_underscores_in_headers) so the
// stream refuses the request before any filter sees it.
func (cm *connManager) underscoreHeaders(h *filter.HeaderMap, protoMajor int) bool {
	action := cm.cfg.HeadersWithUnderscoresAction
	if action == "" {
		return false
	}
	var found []string
	for _, p := range h.Pairs() {
		if strings.IndexByte(p.Key, '_') >= 0 && !strings.HasPrefix(p.Key, ":") {
			found = append(found, p.Key)
		}
	}
	if len(found) == 0 {
		return false
	}
	codec := "http1."
	if protoMajor == 2 {
		codec = "http2."
	}
	st := cm.srv.opts.Stats
	if action == "REJECT_REQUEST" {
		st.Counter(codec + "requests_rejected_with_underscores_in_headers").Inc()
		return true
	}
	for _, k := range found {
		if _, ok := h.Get(k); ok {
			h.Del(k)
		}
		st.Counter(codec + "dropped_headers_with_underscores").Inc()
	}
	return false
}
