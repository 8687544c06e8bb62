package proxy

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/http1"
)

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
		i += properCaseName(b[i:])
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return
		}
		i += j + 1
	}
}

// properCaseName upper-cases, in place, the letters of the field name
// at the start of b (up to its ':' or the line's end) that begin a word,
// and returns the name's length.
func properCaseName(b []byte) int {
	upper := true
	i := 0
	for ; i < len(b) && b[i] != ':' && b[i] != '\n'; i++ {
		c := b[i]
		isLower, isUpper, isDigit := 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9'
		if upper && isLower {
			b[i] = c - ('a' - 'A')
		}
		upper = !isLower && !isUpper && !isDigit
	}
	return i
}

// headerKeys is the state of Envoy's preserve_case stateful formatter
// for one message received over HTTP/1.1 (header_key_format's
// stateful_formatter): the field names as they were received, and the
// reason phrase of a response (forward_reason_phrase). When the message
// is written over HTTP/1.1 on the other side, a name it holds goes out
// spelled as the first field of that name was received; another (one
// the proxy or a filter added) in Proper-Case under
// formatter_type_on_envoy_headers PROPER_CASE, else in lower case.
//
// The connection manager's formatter (its http_protocol_options) keeps
// a request's names, which the pool writes to an HTTP/1.1 upstream
// whatever the cluster's own header_key_format; a cluster's keeps a
// response's, which the connection manager writes to an HTTP/1.1
// client whatever its own. As in Envoy, trailers are not formatted, and
// a message that came over HTTP/2, or a local reply, has no formatter.
type headerKeys struct {
	names      []string
	reason     string
	properCase bool
}

// newHeaderKeys remembers the names of fields (and a response's reason
// phrase) for pc.
func newHeaderKeys(fields []http1.Field, reason string, pc *config.PreserveCase) *headerKeys {
	k := &headerKeys{names: make([]string, len(fields)), properCase: pc.ProperCaseOnEnvoyHeaders}
	for i, f := range fields {
		k.names[i] = f.Name
	}
	if pc.ForwardReasonPhrase {
		k.reason = reason
	}
	return k
}

// lookup returns the first name received that equals name but for
// case.
func (k *headerKeys) lookup(name []byte) (string, bool) {
	for _, n := range k.names {
		if len(n) == len(name) && asciiEqualFold(n, name) {
			return n, true
		}
	}
	return "", false
}

func asciiEqualFold(s string, b []byte) bool {
	for i := 0; i < len(s); i++ {
		c, d := s[i], b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// format rewrites, in place, the field names of the HTTP/1.1 head b
// (its first line left as it is) as the formatter spells them. A name
// and its received spelling differ only in case, so nothing moves.
func (k *headerKeys) format(b []byte) {
	i := bytes.IndexByte(b, '\n') + 1
	for i > 0 && i < len(b) {
		j := i
		for j < len(b) && b[j] != ':' && b[j] != '\n' {
			j++
		}
		if j == len(b) || b[j] == '\n' {
			return // the blank line that ends the head
		}
		if orig, ok := k.lookup(b[i:j]); ok {
			copy(b[i:j], orig)
		} else if k.properCase {
			properCaseName(b[i:j])
		}
		nl := bytes.IndexByte(b[j:], '\n')
		if nl < 0 {
			return
		}
		i = j + nl + 1
	}
}

// appendStatus appends a response's status code and reason phrase:
// the upstream's own with forward_reason_phrase, else the standard one.
func (k *headerKeys) appendStatus(b []byte, status int) []byte {
	if k == nil || k.reason == "" {
		return appendStatus(b, status)
	}
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	return append(b, k.reason...)
}

// preserveCaseUsed is set once a connection manager with the
// preserve_case formatter served a request: until then the pool does
// not look for a request's formatter in its context.
var preserveCaseUsed atomic.Bool

type headerKeysKey struct{}

// requestKeys remembers an HTTP/1.1 request's field names, for its
// context (requestContext), when the connection manager has the
// preserve_case formatter; nil without it.
func (cm *connManager) requestKeys(head *http1.Request) *headerKeys {
	pc := cm.cfg.PreserveCase
	if pc == nil {
		return nil
	}
	preserveCaseUsed.Store(true)
	return newHeaderKeys(head.Fields, "", pc)
}

// formatRequestHead spells the field names of an upstream request head
// the pool wrote in lower case: as the request's formatter remembers
// them when it has one, else in Proper-Case for a cluster's
// proper_case_words.
func formatRequestHead(head []byte, req *http.Request, properCase bool) {
	if preserveCaseUsed.Load() {
		if k, _ := req.Context().Value(headerKeysKey{}).(*headerKeys); k != nil {
			k.format(head)
			return
		}
	}
	if properCase {
		properCaseFields(head)
	}
}

// responseKeys is the formatter a cluster's preserve_case gave a
// response its pool read (nil: none).
func responseKeys(resp *http.Response) *headerKeys {
	if b, ok := resp.Body.(*respBody); ok {
		return b.keys
	}
	return nil
}

// passResponseKeys hands the upstream response's formatter, if any, to
// the HTTP/1 response writer before the response's head is written.
func (s *stream) passResponseKeys() {
	if s.up == nil || s.up.resp == nil {
		return
	}
	if k := responseKeys(s.up.resp); k != nil {
		if w, ok := s.w.(*h1Response); ok {
			w.keys = k
		}
	}
}

// formatResponseHead spells the names of a response head written in
// lower case: as the response's formatter remembers them, else in
// Proper-Case under the connection manager's proper_case_words.
func (w *h1Response) formatResponseHead(b []byte) {
	if w.keys != nil {
		w.keys.format(b)
	} else if w.sc.cm.cfg.ProperCaseHeaderKeys {
		properCaseFields(b)
	}
}

// preserveCase is the preserve_case formatter's configuration.
type preserveCase = config.PreserveCase
