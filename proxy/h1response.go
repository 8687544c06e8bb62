package proxy

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// h1DownstreamRequest is the stream's view of an HTTP/1 request head:
// no http.Request in between. Host and Transfer-Encoding are not in the
// header map (h1RequestHeaderMap) but in the framing, as net/http had
// them.
func h1DownstreamRequest(head *http1.Request) downstreamRequest {
	r := downstreamRequest{Method: head.Method, Proto: "HTTP/1.1", ProtoMajor: 1, ContentLength: head.ContentLength}
	if head.Minor == 0 {
		r.Proto = "HTTP/1.0"
	}
	if head.Chunked {
		// Filled as the body ends (the map, never the field, changes then:
		// the stream may look at the field while the body is read).
		r.Trailer = http.Header{}
	}
	return r
}

// h1Body is an HTTP/1 request body as the connection manager reads it.
type h1Body struct {
	sc *serverConn
	w  *h1Response
	r  *http1.BodyReader
	// trailer receives a chunked body's trailer fields (the stream's
	// downstreamRequest.Trailer).
	trailer http.Header
	cancel  context.CancelFunc
	// expectContinue: "100 Continue" is owed at the first read.
	expectContinue bool
	// done is set once the whole body was read (any goroutine may ask).
	done atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.expectContinue {
		b.expectContinue = false
		b.sendContinue()
	}
	n, err := b.r.Read(p)
	if err == io.EOF && !b.done.Load() {
		b.setTrailers()
		b.done.Store(true)
		b.sc.startBackgroundRead(b.cancel)
	}
	return n, err
}

// interrupt ends a Read blocked on the connection (a stream timeout
// expired); the connection then closes with the stream's answer.
func (b *h1Body) interrupt() {
	if !b.done.Load() {
		b.sc.setReadDeadline(aLongTimeAgo)
	}
}

// Close leaves the body as it is: what is left unread makes the server
// close the connection after the response.
func (b *h1Body) Close() error { return nil }

// sendContinue tells a client waiting on "Expect: 100-continue" to send
// its body, unless the final response already went out.
func (b *h1Body) sendContinue() {
	sc := b.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if b.w.headSent {
		return
	}
	_, _ = sc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	_ = sc.bw.Flush()
}

// setTrailers hands a chunked body's trailer fields to the request (its
// Trailer map, made with the request), but those that would frame or
// route a message.
func (b *h1Body) setTrailers() {
	fields := b.r.Trailers()
	if len(fields) == 0 {
		return
	}
	t := b.trailer
	for _, f := range fields {
		k := canonicalKey(f.Name)
		if forbiddenTrailer(k) {
			continue
		}
		t[k] = append(t[k], f.Value)
	}
}

// forbiddenTrailer: fields that must not come as trailers (RFC 9110
// §6.5.1: framing, routing, connection control).
func forbiddenTrailer(canonical string) bool {
	switch canonical {
	case "Content-Length", "Transfer-Encoding", "Host", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade", "Content-Type", "Content-Encoding", "Content-Range", "Authorization", "Expect", "Proxy-Connection":
		return true
	}
	return false
}

// h1Response is the http.ResponseWriter of one HTTP/1 exchange. The head
// is held until the first body write, a Flush or the end, so that a
// response without a body can say "content-length: 0" and one without
// a length can be chunked (HTTP/1.1) or close-delimited (HTTP/1.0).
type h1Response struct {
	sc     *serverConn
	method string
	head   *http1.Request
	body   *h1Body // nil without a request body
	header http.Header

	status      int
	wroteHeader bool
	headSent    bool // guarded by sc.wmu
	chunked     bool
	bodyless    bool  // HEAD, 204, 304: no body on the wire
	length      int64 // content-length sent; -1 none
	written     int64
	trailerKeys []string
	closeAfter  bool
	aborted     bool
	finished    bool
	// fields: the head is sc.respFields plus server (setResponseFields),
	// not header.
	fields bool
	server string
	// upgrade is the request's Upgrade value when upgrade_configs
	// enables it: a 101 from the upstream is then relayed (upgrade.go).
	upgrade string
	// keys is the upstream response's preserve_case formatter, nil
	// without one (headerkey.go).
	keys *headerKeys
}

func (w *h1Response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// setResponseFields is the stream's way to hand over the response's
// fields without an http.Header: pairs are the header map's pairs
// (lower-case names, pseudo-headers and hop-by-hop fields already
// removed or skipped here), copied into the connection's reusable
// slice, and written in their order. server replaces any Server field;
// "" writes the pairs' own (server_header_transformation).
// Trailer declarations and trailers still go through Header().
func (w *h1Response) setResponseFields(pairs []filter.Pair, server string) {
	sc := w.sc
	sc.respFields = sc.respFields[:0]
	for _, p := range pairs {
		if p.Key == "" || p.Key[0] == ':' || isHopByHop(p.Key) || p.Key == "server" && server != "" {
			continue
		}
		sc.respFields = append(sc.respFields, p)
	}
	w.fields = true
	w.server = server
}

func (w *h1Response) WriteHeader(status int) {
	if w.wroteHeader || status < 200 && (status != http.StatusSwitchingProtocols || w.upgrade == "") {
		// Informational responses are not relayed (the only one the
		// proxy makes, 100 Continue, the body reader sends).
		return
	}
	w.wroteHeader = true
	w.status = status
}

// lockAndStart takes the connection's write lock (the caller releases
// it) and sends the head if it is still held back.
func (w *h1Response) lockAndStart() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.sc.wmu.Lock()
	if !w.headSent {
		w.writeHead(false)
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	sc := w.sc
	w.lockAndStart()
	defer sc.wmu.Unlock()
	if w.bodyless || len(p) == 0 {
		return len(p), nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		w.closeAfter = true
		return 0, http.ErrContentLength
	}
	var err error
	if w.chunked {
		var size [20]byte
		_, _ = sc.bw.Write(strconv.AppendInt(size[:0], int64(len(p)), 16))
		_, _ = sc.bw.WriteString("\r\n")
		_, _ = sc.bw.Write(p)
		_, err = sc.bw.WriteString("\r\n")
	} else {
		_, err = sc.bw.Write(p)
	}
	if err != nil {
		w.closeAfter = true
		return 0, err
	}
	w.written += int64(len(p))
	return len(p), nil
}

func (w *h1Response) Flush() {
	sc := w.sc
	w.lockAndStart()
	defer sc.wmu.Unlock()
	if err := sc.bw.Flush(); err != nil {
		w.closeAfter = true
	}
}

// finish completes the response once the connection manager returned.
func (w *h1Response) finish() { w.end(false) }

// end completes the response. With hold, bytes still in the
// connection's writer stay there when the connection stays open (it
// reports true then), for the wait for the next request to send
// (awaitRequest); a response cut short is sent at once.
func (w *h1Response) end(hold bool) (held bool) {
	if w.finished {
		return false
	}
	w.finished = true
	sc := w.sc
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if !w.wroteHeader {
		if sc.watch.clientGone() {
			w.closeAfter = true // the client went away; nothing to say
			return false
		}
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.writeHead(true)
	}
	if w.chunked {
		b := sc.bw.AvailableBuffer()
		b = append(b, "0\r\n"...)
		b = w.appendTrailers(b)
		b = append(b, "\r\n"...)
		if sc.cm.cfg.ProperCaseHeaderKeys {
			properCaseFields(b) // headerkey.go
		}
		_, _ = sc.bw.Write(b)
	}
	if w.length >= 0 && w.written < w.length && !w.bodyless {
		w.closeAfter = true // cut short: the client must not wait for more
	}
	if hold && !w.closeAfter && sc.bw.Buffered() > 0 {
		return true
	}
	if err := sc.bw.Flush(); err != nil {
		w.closeAfter = true
	}
	return false
}

// writeHead sends the status line and header fields, choosing the
// framing. final: the handler is done and wrote no body. Called with
// sc.wmu held.
func (w *h1Response) writeHead(final bool) {
	if w.fields {
		w.writeHeadFields(final)
		return
	}
	w.headSent = true
	sc := w.sc
	h := w.Header()
	status := w.status
	w.length = -1
	w.bodyless = w.method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	delete(h, "Transfer-Encoding")
	delete(h, "Connection")
	if status == http.StatusNoContent {
		delete(h, "Content-Length")
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(h, "Content-Length")
	}
	if tr := h["Trailer"]; len(tr) > 0 {
		for _, v := range tr {
			for k := range strings.SplitSeq(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailerKeys = append(w.trailerKeys, canonicalKey(k))
				}
			}
		}
	}
	switch {
	case w.bodyless, w.length >= 0:
	case final:
		h["Content-Length"] = []string{"0"}
		w.length = 0
	case w.head.Minor == 1:
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if !w.chunked {
		delete(h, "Trailer") // trailers go only after a chunked body
	}
	if !w.head.KeepAlive || sc.closeForResponse() || w.body != nil && !w.body.done.Load() {
		// An unread request body cannot be skipped safely: the
		// connection ends with this response.
		w.closeAfter = true
	}
	if w.closeAfter {
		h["Connection"] = []string{"close"}
	} else if w.head.Minor == 0 {
		h["Connection"] = []string{"keep-alive"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}

	b := sc.bw.AvailableBuffer()
	if w.head.Minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = w.keys.appendStatus(b, status)
	b = append(b, "\r\n"...)
	b = appendHeader(b, h)
	b = append(b, "\r\n"...)
	if w.keys != nil || sc.cm.cfg.ProperCaseHeaderKeys {
		w.formatResponseHead(b) // headerkey.go
	}
	_, _ = sc.bw.Write(b)
}

// writeHeadFields is writeHead for a response whose fields came as a
// header map (setResponseFields): the same framing rules, the fields in
// their order, nothing allocated on the common path.
func (w *h1Response) writeHeadFields(final bool) {
	w.headSent = true
	sc := w.sc
	status := w.status
	w.length = -1
	w.bodyless = w.method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified || status == http.StatusSwitchingProtocols || w.tunnel(status)
	nCL, hasDate := 0, false
	var cl string
	for _, p := range sc.respFields {
		switch p.Key {
		case "content-length":
			nCL++
			cl = p.Value
		case "date":
			hasDate = true
		case "trailer":
			w.addTrailerKeys(p.Value)
		}
	}
	for _, v := range w.header["Trailer"] {
		w.addTrailerKeys(v)
	}
	keepCL := false
	if nCL == 1 && status != http.StatusNoContent && !w.tunnel(status) {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
			keepCL = true
		}
	}
	switch {
	case w.bodyless, w.length >= 0:
	case final:
		w.length = 0
	case w.head.Minor == 1:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if !w.head.KeepAlive || sc.closeForResponse() || w.body != nil && !w.body.done.Load() {
		// An unread request body cannot be skipped safely: the
		// connection ends with this response.
		w.closeAfter = true
	}

	b := sc.bw.AvailableBuffer()
	if w.head.Minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = w.keys.appendStatus(b, status) // headerkey.go
	b = append(b, "\r\n"...)
	for _, p := range sc.respFields {
		switch p.Key {
		case "content-length":
			if !keepCL {
				continue
			}
		case "trailer":
			if !w.chunked {
				continue // trailers go only after a chunked body
			}
		}
		if httpguts.ValidHeaderFieldName(p.Key) {
			b = appendField(b, p.Key, p.Value)
		}
	}
	if w.chunked {
		for _, v := range w.header["Trailer"] {
			b = appendField(b, "trailer", v)
		}
		b = append(b, "transfer-encoding: chunked\r\n"...)
	} else if final && !w.bodyless && !keepCL {
		b = append(b, "content-length: 0\r\n"...)
	}
	switch {
	case w.tunnel(status):
		// A CONNECT's 2xx: the tunnel follows, no framing (upgrade.go).
	case status == http.StatusSwitchingProtocols:
		// The protocol switch the client asked for (the upstream's own
		// hop-by-hop fields were not kept); the connection is spliced
		// to the upstream's next (upgrade.go).
		b = append(b, "connection: upgrade\r\nupgrade: "...)
		b = append(b, w.upgrade...)
		b = append(b, "\r\n"...)
	case w.closeAfter:
		b = append(b, "connection: close\r\n"...)
	case w.head.Minor == 0:
		b = append(b, "connection: keep-alive\r\n"...)
	}
	if !hasDate {
		b = appendField(b, "date", httpDate())
	}
	if w.server != "" {
		b = appendField(b, "server", w.server)
	}
	b = append(b, "\r\n"...)
	if w.keys != nil || sc.cm.cfg.ProperCaseHeaderKeys {
		w.formatResponseHead(b) // headerkey.go
	}
	_, _ = sc.bw.Write(b)
}

// addTrailerKeys records the trailer names a Trailer field declares.
func (w *h1Response) addTrailerKeys(v string) {
	for k := range strings.SplitSeq(v, ",") {
		if k = strings.TrimSpace(k); k != "" {
			w.trailerKeys = append(w.trailerKeys, canonicalKey(k))
		}
	}
}

// appendTrailers writes the declared trailers (set in the header map
// after the head went out) and those named with http.TrailerPrefix.
func (w *h1Response) appendTrailers(b []byte) []byte {
	t := http.Header{}
	for _, k := range w.trailerKeys {
		if vs, ok := w.header[k]; ok && !forbiddenTrailer(k) {
			t[k] = vs
		}
	}
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && !forbiddenTrailer(canonicalKey(name)) {
			t[canonicalKey(name)] = append(t[canonicalKey(name)], vs...)
		}
	}
	return appendHeader(b, t)
}

// appendHeader writes header fields in sorted order. Names that are not
// tokens are dropped and CR, LF and NUL in values become spaces, so a
// filter cannot split the response (as net/http does).
func appendHeader(b []byte, h http.Header) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		if !strings.HasPrefix(k, http.TrailerPrefix) && httpguts.ValidHeaderFieldName(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = appendField(b, k, v)
		}
	}
	return b
}

// appendField writes one "name: value" line, the name in lower case as
// Envoy's HTTP/1 codec writes every field; CR, LF and NUL in the value
// become spaces, so that a filter cannot split the response.
func appendField(b []byte, k, v string) []byte {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	b = append(b, ": "...)
	start := len(b)
	b = append(b, strings.TrimSpace(v)...)
	for i := start; i < len(b); i++ {
		if c := b[i]; c == '\r' || c == '\n' || c == 0 {
			b[i] = ' '
		}
	}
	return append(b, "\r\n"...)
}

// appendStatus writes "code reason".
func appendStatus(b []byte, status int) []byte {
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	return append(b, http.StatusText(status)...)
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// httpDate is the current time in the Date header's format, rendered
// once a second.
func httpDate() string {
	now := time.Now()
	if d := cachedDate.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &dateCache{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateCache struct {
	unix int64
	text string
}

var cachedDate atomic.Pointer[dateCache]
