package proxy

import "bytes"

// properCaseFields rewrites, in place, the field names of an HTTP/1.1
// head in b (or of a chunked body's last chunk and its trailers) as
// Envoy's proper-case formatter writes them (the connection manager's
// http_protocol_options.header_key_format.proper_case_words): the first
// letter and every letter that follows a character other than a letter
// or a digit upper-cased, "x-envoy-upstream-service-time" becoming
// "X-Envoy-Upstream-Service-Time". The pool runs it over an upstream
// request head for a cluster's header_key_format. The first line (the
// status or request line, or the last chunk's size) is left as it is; a name ends at its line's
// first ':' (values hold no CR or LF: appendField replaced them).
func properCaseFields(b []byte) {
	i := bytes.IndexByte(b, '\n') + 1
	for i > 0 && i < len(b) {
		upper := true
		for ; i < len(b) && b[i] != ':' && b[i] != '\n'; i++ {
			c := b[i]
			isLower, isUpper, isDigit := 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9'
			if upper && isLower {
				b[i] = c - ('a' - 'A')
			}
			upper = !isLower && !isUpper && !isDigit
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return
		}
		i += j + 1
	}
}
