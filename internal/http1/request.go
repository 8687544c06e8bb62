// Package http1 is wasmproxy's HTTP/1.1 codec: it parses request heads
// and bodies as strictly as Envoy and nginx do (RFC 9112), so that what
// the proxy accepts is exactly what it can frame again for the upstream,
// and a request that could be read two ways (request smuggling) is
// refused instead of guessed at.
//
// Every refusal is an *Error carrying the status to answer with and
// Envoy's response code details ("http1.codec_error", …). The codec
// knows nothing of connections, timeouts or filters: the proxy's server
// reads with it and decides what to do with a refusal.
package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Limits bound what one request head may hold. Zero fields take
// Envoy's defaults.
type Limits struct {
	// MaxHeaderBytes bounds the request line and header fields together
	// (Envoy's max_request_headers_kb, default 60 KiB), and separately a
	// body's trailer fields.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header fields, and separately the
	// number of trailer fields (Envoy's max_headers_count, default 100).
	MaxHeaders int
}

// DefaultMaxHeaderBytes and DefaultMaxHeaders are Envoy's defaults.
const (
	DefaultMaxHeaderBytes = 60 << 10
	DefaultMaxHeaders     = 100
)

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// Field is one header or trailer field: Name as the peer spelled it,
// Value without surrounding whitespace.
type Field struct {
	Name, Value string
}

// Request is a parsed request head and what it says about its body and
// connection.
type Request struct {
	Method string
	// Target is the request-target exactly as sent.
	Target string
	// Path is what the request asks for in origin form: Target itself,
	// the path and query of an absolute-form target ("/" when it has no
	// path), "*" for OPTIONS *, or "" for CONNECT.
	Path string
	// Authority is the host (and port) the request is for: from an
	// absolute-form target (which overrides Host, RFC 9112 §3.2.2), the
	// target of a CONNECT, or else the Host field. It is "" only for an
	// HTTP/1.0 request without Host.
	Authority string
	// Scheme is an absolute-form target's scheme in lower case, else "".
	Scheme string
	// Minor is the protocol's minor version: 0 for HTTP/1.0, 1 for
	// HTTP/1.1.
	Minor int
	// Fields are the header fields in the order received, Host,
	// Transfer-Encoding and an Expect: 100-continue included.
	Fields []Field
	// ContentLength is the body's length in bytes; -1 for a chunked
	// body; 0 when the request has no body.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool
	// KeepAlive reports whether the connection may carry another request
	// after this one, from the version and the Connection field.
	KeepAlive bool
	// ExpectContinue reports an HTTP/1.1 "Expect: 100-continue".
	ExpectContinue bool
	// Upgrade is the Upgrade field's value when the Connection field
	// nominates "upgrade" (a protocol switch request), else "".
	Upgrade string

	// gathered holds the head's target and field values (and the names
	// that are not common ones) while it is read.
	gathered
}

// gathered collects a head's pieces while it is read, so that they
// become strings with one allocation per head; ends are where each
// gathered piece ends in text. Both are reused from head to head; the
// strings made from them are not.
//
// last is the string the previous head's text became (kept by whoever
// reuses the gathered, a connection's request or response, from head to
// head): a head whose gathered text is byte for byte the previous one's
// (a keep-alive client repeating its request, an upstream repeating its
// response head) reuses that string instead of allocating another.
// Strings are immutable, so sharing one between heads is safe.
type gathered struct {
	text []byte
	ends []int
	last string
}

// all returns the gathered text as one string: the previous head's when
// the text is the same, else a new one (which becomes last).
func (g *gathered) all() string {
	if string(g.text) == g.last { // compared without a conversion
		return g.last
	}
	g.last = string(g.text)
	return g.last
}

// Error is a request the codec refuses: answer it with Status and close
// the connection.
type Error struct {
	// Status is the answer: 400, 431 (limits), 501 (an unknown transfer
	// coding), 505 (an HTTP version other than 1.x).
	Status int
	// Details are Envoy's response code details for the refusal.
	Details string
	// Reason says what was wrong, for logs (never the offending bytes
	// themselves, which may be anything).
	Reason string
}

func (e *Error) Error() string {
	return "http/1.1 protocol error: " + e.Reason + " (" + e.Details + ")"
}

// Envoy's response code details for codec refusals.
const (
	DetailsCodecError          = "http1.codec_error"
	DetailsInvalidCharacters   = "http1.invalid_characters"
	DetailsHeadersTooLarge     = "http1.headers_too_large"
	DetailsTooManyHeaders      = "http1.too_many_headers"
	DetailsInvalidURL          = "http1.invalid_url"
	DetailsInvalidScheme       = "http1.invalid_scheme"
	DetailsInvalidTE           = "http1.invalid_transfer_encoding"
	DetailsTENotAllowed        = "http1.transfer_encoding_not_allowed"
	DetailsChunkedAndLength    = "http1.content_length_and_chunked_not_allowed"
	DetailsBodyDisallowed      = "http1.body_disallowed"
	DetailsMissingHost         = "missing_host_header"
	DetailsInvalidAuthority    = "http.invalid_authority"
	DetailsVersionNotSupported = "http1.codec_error"
)

func errBadRequest(details, reason string) *Error {
	return &Error{Status: 400, Details: details, Reason: reason}
}

// ErrNoRequest is returned by ReadRequest when the connection ended (or
// its read deadline passed) before the first byte of a request.
var ErrNoRequest = errors.New("http1: no request on the connection")

// maxLeadingEmptyLines is how many empty lines may precede a request
// line (RFC 9112 §2.2 asks servers to ignore at least one, which some
// clients send after a POST body).
const maxLeadingEmptyLines = 4

// ReadRequest reads one request head from br into req (whose Fields
// slice is reused). It returns ErrNoRequest, wrapped with the read
// error, when the peer sent nothing at all; an *Error for a head that
// must be refused; or the read error (io.ErrUnexpectedEOF for a head
// cut short, or a deadline) as it is.
func ReadRequest(br *bufio.Reader, lim Limits, req *Request) error {
	lim = lim.withDefaults()
	*req = Request{Fields: req.Fields[:0], gathered: gathered{text: req.text[:0], ends: req.ends[:0], last: req.last}}
	budget := lim.MaxHeaderBytes
	var line []byte
	var err error
	for empty := 0; ; empty++ {
		line, err = readLine(br, &budget, empty == 0)
		if err != nil {
			return err
		}
		if len(line) > 0 {
			break
		}
		if empty == maxLeadingEmptyLines {
			return errBadRequest(DetailsCodecError, "empty lines before the request line")
		}
	}
	if err := parseRequestLine(line, req); err != nil {
		return err
	}
	fields, err := readFields(br, &budget, lim.MaxHeaders, req.Fields, DetailsTooManyHeaders, &req.gathered)
	req.Fields = fields
	if err != nil {
		return err
	}
	req.materialize()
	return req.interpret()
}

// gather appends b to the head's text and returns its index there.
func (g *gathered) gather(b []byte) int {
	g.text = append(g.text, b...)
	g.ends = append(g.ends, len(g.text))
	return len(g.ends) - 1
}

// fill points the fields' names (those left empty) and values into
// all, the gathered text made one string, taking the gathered pieces
// in order from piece first.
func (g *gathered) fill(all string, first int, fields []Field) {
	piece, start := first, 0
	if first > 0 {
		start = g.ends[first-1]
	}
	next := func() string {
		end := g.ends[piece]
		v := all[start:end]
		piece, start = piece+1, end
		return v
	}
	for i := range fields {
		f := &fields[i]
		if f.Name == "" {
			f.Name = next()
		}
		f.Value = next()
	}
}

// materialize turns the gathered text into one string and points the
// target and the fields into it. Until then, Target and gathered names
// and values hold nothing; gathered pieces are numbered in the order the
// target, then each field's name (when not common) and value, were
// read.
func (req *Request) materialize() {
	all := req.all()
	req.Target = all[:req.ends[0]]
	req.fill(all, 1, req.Fields)
}

// readLine reads one CRLF-terminated line, without its CRLF, charging
// its length to *budget. first marks the line that would start a
// request: a clean end of the connection there is ErrNoRequest. A line
// ending in a bare LF is refused; a bare CR elsewhere is refused by the
// callers' character checks.
func readLine(br *bufio.Reader, budget *int, first bool) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A line longer than the reader's buffer: gather it.
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			if len(buf) > *budget {
				return nil, headersTooLarge()
			}
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if len(line) > *budget {
		return nil, headersTooLarge()
	}
	*budget -= len(line)
	if err != nil {
		if len(line) == 0 && first && (err == io.EOF || isTimeout(err)) {
			return nil, errors.Join(ErrNoRequest, err)
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errBadRequest(DetailsInvalidCharacters, "line ends in a bare LF")
	}
	return line[:len(line)-2], nil
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func headersTooLarge() *Error {
	return &Error{Status: 431, Details: DetailsHeadersTooLarge, Reason: "request headers too large"}
}

// parseRequestLine parses "method SP request-target SP HTTP-version",
// with exactly one space between the parts.
func parseRequestLine(line []byte, req *Request) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequest(DetailsCodecError, "malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequest(DetailsCodecError, "malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !isToken(method) {
		return errBadRequest(DetailsCodecError, "invalid method")
	}
	for _, c := range target {
		if !targetChar[c] {
			return errBadRequest(DetailsInvalidURL, "invalid character in the request target")
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		req.Minor = 1
	case "HTTP/1.0":
		req.Minor = 0
	default:
		if len(version) == 8 && bytes.HasPrefix(version, []byte("HTTP/")) && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return &Error{Status: 505, Details: DetailsVersionNotSupported, Reason: "HTTP version not supported"}
		}
		return errBadRequest(DetailsCodecError, "malformed HTTP version")
	}
	req.Method = internMethod(method)
	req.gather(target) // the Target, once the head is read
	return nil
}

// internMethod returns the common methods without an allocation.
func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	}
	return string(m)
}

// commonName returns the spelling of a common field name as sent, or ""
// (the name is then gathered with the values).
func commonName(n []byte) string {
	switch string(n) {
	case "Host":
		return "Host"
	case "host":
		return "host"
	case "User-Agent":
		return "User-Agent"
	case "user-agent":
		return "user-agent"
	case "Accept":
		return "Accept"
	case "accept":
		return "accept"
	case "Content-Type":
		return "Content-Type"
	case "content-type":
		return "content-type"
	case "Content-Length":
		return "Content-Length"
	case "content-length":
		return "content-length"
	case "Connection":
		return "Connection"
	case "connection":
		return "connection"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "accept-encoding":
		return "accept-encoding"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	case "transfer-encoding":
		return "transfer-encoding"
	}
	return ""
}

// readFields reads header (or trailer) fields up to the empty line that
// ends them, appending to fields. With a head (a request or response
// head, not trailers), names and values are gathered into its text and
// left empty for fill to set.
func readFields(br *bufio.Reader, budget *int, maxFields int, fields []Field, tooMany string, head *gathered) ([]Field, error) {
	for {
		line, err := readLine(br, budget, false)
		if err != nil {
			return fields, err
		}
		if len(line) == 0 {
			return fields, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold (RFC 9112 §5.2): a server must refuse it or
			// unfold it; unfolding is how two parsers come to disagree.
			return fields, errBadRequest(DetailsCodecError, "obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fields, errBadRequest(DetailsCodecError, "header line without a field name")
		}
		name := line[:colon]
		if !isToken(name) {
			// Whitespace before the colon is refused too (RFC 9112 §5.1).
			return fields, errBadRequest(DetailsInvalidCharacters, "invalid character in a header name")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if !valueChar[c] {
				return fields, errBadRequest(DetailsInvalidCharacters, "invalid character in a header value")
			}
		}
		if len(fields) == maxFields {
			return fields, &Error{Status: 431, Details: tooMany, Reason: "too many header fields"}
		}
		if head == nil {
			fields = append(fields, Field{Name: string(name), Value: string(value)})
			continue
		}
		n := commonName(name)
		if n == "" {
			head.gather(name)
		}
		head.gather(value)
		fields = append(fields, Field{Name: n})
	}
}

// The fields interpret looks at (fieldOf).
const (
	fieldOther = iota
	fieldHost
	fieldTransferEncoding
	fieldContentLength
	fieldConnection
	fieldExpect
	fieldUpgrade
)

// fieldOf tells which of the fields the codec interprets name is, in
// any case: one length compare for most names, and an ASCII
// case-insensitive compare for the few of a matching length, where six
// strings.EqualFold a field cost up to six scans. Names are tokens
// (readFields refuses others), so ASCII folding is all there is.
func fieldOf(name string) int {
	switch len(name) {
	case 4:
		if equalFoldLower(name, "host") {
			return fieldHost
		}
	case 6:
		if equalFoldLower(name, "expect") {
			return fieldExpect
		}
	case 7:
		if equalFoldLower(name, "upgrade") {
			return fieldUpgrade
		}
	case 10:
		if equalFoldLower(name, "connection") {
			return fieldConnection
		}
	case 14:
		if equalFoldLower(name, "content-length") {
			return fieldContentLength
		}
	case 17:
		if equalFoldLower(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
	}
	return fieldOther
}

// equalFoldLower reports whether s is lower (all lower case) with its
// ASCII letters in any case.
func equalFoldLower(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// interpret checks the head as a whole and works out the framing.
func (req *Request) interpret() error {
	var host, te, cl, connection, expect, upgrade []string
	for _, f := range req.Fields {
		switch fieldOf(f.Name) {
		case fieldHost:
			host = append(host, f.Value)
		case fieldTransferEncoding:
			te = append(te, f.Value)
		case fieldContentLength:
			cl = append(cl, f.Value)
		case fieldConnection:
			connection = append(connection, f.Value)
		case fieldExpect:
			expect = append(expect, f.Value)
		case fieldUpgrade:
			upgrade = append(upgrade, f.Value)
		}
	}
	if err := req.interpretTarget(); err != nil {
		return err
	}
	switch {
	case len(host) > 1:
		return errBadRequest(DetailsCodecError, "more than one Host field")
	case len(host) == 1 && !validAuthority(host[0]):
		return errBadRequest(DetailsInvalidAuthority, "invalid Host field")
	case len(host) == 0 && req.Minor == 1:
		// RFC 9112 §3.2: an HTTP/1.1 request without Host is refused,
		// whatever its target says.
		return errBadRequest(DetailsMissingHost, "HTTP/1.1 request without a Host field")
	}
	if req.Authority == "" && len(host) == 1 {
		req.Authority = host[0]
	}

	// Framing (RFC 9112 §6).
	if len(te) > 0 {
		if req.Minor == 0 {
			// §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
			// framing, whatever else it says.
			return errBadRequest(DetailsTENotAllowed, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(cl) > 0 {
			return errBadRequest(DetailsChunkedAndLength, "both Content-Length and Transfer-Encoding")
		}
		// chunked is the only coding a proxy can frame again; it must be
		// the one and only (a second "chunked", or another coding before
		// it, is refused too, as Envoy does).
		if len(te) > 1 || !strings.EqualFold(te[0], "chunked") {
			return &Error{Status: 501, Details: DetailsInvalidTE, Reason: "unsupported Transfer-Encoding"}
		}
		if req.Method == "CONNECT" {
			return errBadRequest(DetailsBodyDisallowed, "CONNECT with a body")
		}
		req.Chunked = true
		req.ContentLength = -1
	} else if len(cl) > 0 {
		if len(cl) > 1 {
			return errBadRequest(DetailsCodecError, "more than one Content-Length field")
		}
		n, ok := parseContentLength(cl[0])
		if !ok {
			return errBadRequest(DetailsCodecError, "invalid Content-Length")
		}
		if n > 0 && req.Method == "CONNECT" {
			return errBadRequest(DetailsBodyDisallowed, "CONNECT with a body")
		}
		req.ContentLength = n
	}

	req.KeepAlive = req.Minor == 1
	for _, v := range connection {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = strings.TrimSpace(tok); {
			case strings.EqualFold(tok, "close"):
				req.KeepAlive = false
			case strings.EqualFold(tok, "keep-alive") && req.Minor == 0:
				req.KeepAlive = true
			case strings.EqualFold(tok, "upgrade") && len(upgrade) == 1:
				req.Upgrade = upgrade[0]
			}
		}
	}
	if req.Minor == 0 {
		// A close-delimited body is impossible in a request; without a
		// length an HTTP/1.0 request has none.
		req.KeepAlive = req.KeepAlive && !req.Chunked
	}
	if req.Minor == 1 && len(expect) == 1 && strings.EqualFold(expect[0], "100-continue") {
		req.ExpectContinue = true
	}
	return nil
}

// interpretTarget sorts the request-target into its four forms (RFC
// 9112 §3.2) and sets Path, Authority and Scheme.
func (req *Request) interpretTarget() error {
	t := req.Target
	switch {
	case req.Method == "CONNECT":
		// authority-form only.
		if !validAuthority(t) || !strings.Contains(t, ":") {
			return errBadRequest(DetailsInvalidURL, "CONNECT target is not host:port")
		}
		req.Authority = t
		return nil
	case t == "*":
		if req.Method != "OPTIONS" {
			return errBadRequest(DetailsInvalidURL, "asterisk-form target with a method other than OPTIONS")
		}
		req.Path = t
	case t[0] == '/':
		req.Path = t
	default:
		// absolute-form, as a client sends to a proxy.
		scheme, rest, ok := strings.Cut(t, "://")
		if !ok || scheme == "" || !isScheme(scheme) {
			return errBadRequest(DetailsInvalidURL, "request target is neither a path nor an absolute URL")
		}
		scheme = strings.ToLower(scheme)
		if scheme != "http" && scheme != "https" {
			return errBadRequest(DetailsInvalidScheme, "absolute URL with a scheme other than http or https")
		}
		end := strings.IndexAny(rest, "/?")
		authority, path := rest, "/"
		if end >= 0 {
			authority, path = rest[:end], rest[end:]
			if path[0] == '?' {
				path = "/" + path
			}
		}
		if authority == "" || strings.Contains(authority, "@") || !validAuthority(authority) {
			// No userinfo in http(s) URIs (RFC 9110 §4.2.4).
			return errBadRequest(DetailsInvalidURL, "invalid authority in an absolute URL")
		}
		req.Scheme, req.Authority, req.Path = scheme, authority, path
	}
	if strings.IndexByte(req.Path, '#') >= 0 {
		// A fragment is never sent (RFC 9110 §4.2.5); Envoy refuses it.
		return errBadRequest(DetailsInvalidURL, "fragment in the request target")
	}
	return nil
}

// parseContentLength accepts 1*DIGIT that fits an int64, nothing else:
// no sign, no spaces, no comma-separated list.
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// validAuthority accepts host [":" port]: a reg-name (unreserved,
// percent-encoded and sub-delims characters), an IPv4 address or a
// bracketed IP literal, and a decimal port.
func validAuthority(a string) bool {
	if a == "" {
		return false
	}
	host, port := a, ""
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		for _, c := range []byte(a[1:end]) {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		host, port = "", a[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
	} else if i := strings.LastIndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
		if port == "" {
			return false
		}
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
	}
	if len(port) > 5 {
		return false
	}
	for i := 0; i < len(host); i++ {
		if !regNameChar[host[i]] {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Character classes, as lookup tables.
var (
	// tokenChar: RFC 9110 §5.6.2 tchar.
	tokenChar [256]bool
	// valueChar: field-content bytes (RFC 9110 §5.5): visible ASCII,
	// space, tab and obs-text; no control byte (NUL, CR, LF, DEL…).
	valueChar [256]bool
	// targetChar: what a request-target may hold: visible ASCII and
	// obs-text (as nginx and Envoy accept), no space or control byte.
	targetChar [256]bool
	// regNameChar: RFC 3986 reg-name and IPv4 characters.
	regNameChar [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || isDigit(b)
		tokenChar[c] = alnum || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		valueChar[c] = b == '\t' || b >= 0x20 && b != 0x7f
		targetChar[c] = b > 0x20 && b != 0x7f
		regNameChar[c] = alnum || strings.IndexByte("-._~%!$&'()*+,;=", b) >= 0
	}
}
