package proxy

import (
	"net/http"
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// Path normalization (normalize_path, merge_slashes,
// path_with_escaped_slashes_action), as Envoy's
// ConnectionManagerUtility::maybeNormalizePath: it rewrites :path before
// the filters and the route see it, and the upstream gets the result. A
// path that is not normalized is sent upstream exactly as the client
// wrote it (see originFormURL).

// pathAction is what normalization decided for a request.
type pathAction int

const (
	pathContinue pathAction = iota
	// pathReject: answered 400 (escaped slashes under REJECT_REQUEST).
	pathReject
	// pathRedirect: answered 307 to the normalized path (escaped
	// slashes under UNESCAPE_AND_REDIRECT).
	pathRedirect
	// pathOverloaded: not a path decision but the overload manager's
	// stop_accepting_requests, which Envoy also answers before the
	// filter chain exists (overload.go).
	pathOverloaded
	// pathUnderscore: headers_with_underscores_action REJECT_REQUEST
	// refused a header name with an underscore (underscore.go).
	pathUnderscore
	// pathUpgradeFailed: neither the route's nor the connection
	// manager's upgrade_configs enable the request's upgrade
	// (checkUpgrade, upgrade.go), answered 403 before any filter.
	pathUpgradeFailed
)

// normalizePath applies cfg's path settings to h's :path in Envoy's
// order: escaped slashes, then RFC 3986 normalization, then merged
// slashes. Paths that do not start with "/" ("*", a CONNECT's) are left
// alone.
func normalizePath(cfg *config.HTTPConnectionManager, h *filter.HeaderMap) pathAction {
	if cfg.PathWithEscapedSlashes == "" && !cfg.NormalizePath && !cfg.MergeSlashes {
		return pathContinue
	}
	full, ok := h.Get(":path")
	if !ok || !strings.HasPrefix(full, "/") {
		return pathContinue
	}
	path, query, hasQuery := strings.Cut(full, "?")
	action := pathContinue
	if cfg.PathWithEscapedSlashes != "" {
		if unescaped, found := unescapeSlashes(path); found {
			switch cfg.PathWithEscapedSlashes {
			case "REJECT_REQUEST":
				return pathReject
			case "UNESCAPE_AND_REDIRECT":
				action = pathRedirect
			}
			path = unescaped
		}
	}
	if cfg.NormalizePath {
		path = canonicalPath(path)
	}
	if cfg.MergeSlashes {
		path = mergeSlashes(path)
	}
	if hasQuery {
		path += "?" + query
	}
	if path != full {
		h.Set(":path", path)
	}
	return action
}

// unescapeSlashes decodes %2F and %5C (either case) in a path; found
// reports whether there were any.
func unescapeSlashes(path string) (string, bool) {
	if !strings.Contains(path, "%") {
		return path, false
	}
	var b strings.Builder
	found := false
	for i := 0; i < len(path); i++ {
		if path[i] == '%' && i+2 < len(path) {
			switch strings.ToLower(path[i+1 : i+3]) {
			case "2f":
				b.WriteByte('/')
				i += 2
				found = true
				continue
			case "5c":
				b.WriteByte('\\')
				i += 2
				found = true
				continue
			}
		}
		b.WriteByte(path[i])
	}
	return b.String(), found
}

// canonicalPath normalizes a path (starting with "/", no query) the way
// Envoy's URL canonicalizer (Chromium's) does: backslashes become
// slashes, percent-encoded unreserved characters (letters, digits,
// "-._~") are decoded, other escapes are kept as written, bytes a path
// may not carry raw (controls, space, '"', '<', '>', '`', '{', '}',
// non-ASCII) are percent-encoded, and "." and ".." segments are
// resolved, never above the root.
func canonicalPath(path string) string {
	var b strings.Builder
	b.Grow(len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '\\':
			b.WriteByte('/')
		case c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]):
			if d := unhex(path[i+1])<<4 | unhex(path[i+2]); unreserved(d) {
				b.WriteByte(d)
			} else {
				b.WriteString(path[i : i+3])
			}
			i += 2
		case c <= ' ' || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}' || c >= 0x7f:
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return removeDotSegments(b.String())
}

// removeDotSegments resolves "." and ".." segments (RFC 3986 §5.2.4):
// a trailing dot segment leaves a trailing slash, and ".." at the root
// stays at the root.
func removeDotSegments(path string) string {
	if !strings.Contains(path, ".") {
		return path
	}
	segs := strings.Split(path[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

// mergeSlashes folds each run of slashes into one, keeping a leading
// and a trailing slash (Envoy's PathTransformer::mergeSlashes).
func mergeSlashes(path string) string {
	if !strings.Contains(path, "//") {
		return path
	}
	var parts []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	out := strings.Join(parts, "/")
	if strings.HasPrefix(path, "/") {
		out = "/" + out
	}
	if strings.HasSuffix(path, "/") {
		out += "/" // so "//" stays "//", as on Envoy
	}
	return out
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// replyPathAction answers a request whose path normalization decided
// not to let it through: 400, or a 307 to the normalized path (a gRPC
// request gets 400 there too, as on Envoy, since gRPC clients do not
// follow redirects). No filter has seen the request. It reports whether
// it answered.
func (s *stream) replyPathAction() bool {
	switch s.pathAction {
	case pathOverloaded:
		s.replyOverloaded() // overload.go
		return true
	case pathUnderscore:
		// Envoy's codecs refuse it: HTTP/1 with a 400, HTTP/2 by
		// resetting the stream.
		if strings.HasPrefix(s.info.Protocol, "HTTP/2") {
			s.reset("http2.unexpected_underscore")
		} else {
			// A codec error: the connection closes after the 400
			// whatever stream_error_on_invalid_http_message says
			// (h1close.go).
			s.cm.stats.cxProtocolError.Inc()
			s.closeConnection()
			s.sendLocalReply(http.StatusBadRequest, nil, nil, "http1.unexpected_underscore")
		}
		return true
	case pathReject:
	case pathUpgradeFailed:
		// upgrade_configs do not enable the request's upgrade (upgrade.go).
		s.sendLocalReply(http.StatusForbidden, nil, nil, "upgrade_failed")
		return true
	case pathRedirect:
		if ct, _ := s.fc.ReqHeaders.Get("content-type"); !strings.HasPrefix(ct, "application/grpc") {
			s.cm.stats.rqRedirectedNormalizedPath.Inc()
			path, _ := s.fc.ReqHeaders.Get(":path")
			s.sendLocalReply(http.StatusTemporaryRedirect, nil, []filter.Pair{{Key: "location", Value: path}}, "path_normalization_failed")
			return true
		}
	default:
		return false
	}
	s.cm.stats.rqFailedPathNormalization.Inc()
	s.sendLocalReply(http.StatusBadRequest, nil, nil, "path_normalization_failed")
	return true
}
