package http1

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Response is a parsed response head (the client side of the codec,
// used for upstream exchanges) and what it says about its body.
type Response struct {
	// Status is the three-digit status code.
	Status int
	// Minor is the protocol's minor version (0 or 1).
	Minor int
	// Fields are the header fields in the order received, framing
	// fields included.
	Fields []Field
	// ContentLength is the body's length: -1 when it is chunked or
	// runs to the end of the connection, 0 when there is none.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool
	// CloseDelimited: the body runs to the end of the connection
	// (neither a length nor chunked), so the connection is not reused.
	CloseDelimited bool
	// KeepAlive reports whether the connection may carry another
	// exchange once this response's body is read.
	KeepAlive bool
	// KeepReason, set by the caller, asks for Reason: the status line's
	// reason phrase as received ("" when it has none). Without it
	// Reason stays "" (one allocation fewer per response).
	KeepReason bool
	Reason     string

	// gathered holds the fields' values and uncommon names while the
	// head is read: one string per response.
	gathered
}

// DetailsUpstreamProtocolError is the refusal of a malformed response.
const DetailsUpstreamProtocolError = "upstream_protocol_error"

func errBadResponse(reason string) *Error {
	return &Error{Status: 503, Details: DetailsUpstreamProtocolError, Reason: reason}
}

// ReadResponse reads one final response head from br into resp,
// skipping interim (1xx) responses other than 101. head marks the
// response to a HEAD request, which has no body whatever its framing
// fields say; 204, 304 and 1xx have none either (RFC 9112 §6.3). A
// malformed head is an *Error (bare LF, obs-fold, invalid characters,
// conflicting or invalid Content-Length, an unknown transfer coding,
// Content-Length with chunked); a connection ending first is
// io.ErrUnexpectedEOF, or io.EOF when no byte of a response came.
// lim bounds the head as it bounds request heads. resp.Fields is
// reused.
func ReadResponse(br *bufio.Reader, lim Limits, head bool, resp *Response) error {
	lim = lim.withDefaults()
	for first := true; ; first = false {
		budget := lim.MaxHeaderBytes
		line, err := readLine(br, &budget, first)
		if err != nil {
			if first && len(line) == 0 && err != nil && isNoRequest(err) {
				return io.EOF
			}
			return asResponseError(err)
		}
		if err := parseStatusLine(line, resp); err != nil {
			return err
		}
		resp.text, resp.ends = resp.text[:0], resp.ends[:0]
		resp.Fields, err = readFields(br, &budget, lim.MaxHeaders, resp.Fields[:0], DetailsTooManyHeaders, &resp.gathered)
		if err != nil {
			return asResponseError(err)
		}
		if resp.Status >= 100 && resp.Status < 200 && resp.Status != 101 {
			continue // 100-continue, 102, 103: the final response follows
		}
		resp.fill(resp.all(), 0, resp.Fields)
		return resp.interpret(head)
	}
}

func isNoRequest(err error) bool {
	for e := err; e != nil; {
		if e == ErrNoRequest {
			return true
		}
		j, ok := e.(interface{ Unwrap() []error })
		if !ok {
			return false
		}
		for _, x := range j.Unwrap() {
			if x == ErrNoRequest {
				return true
			}
		}
		return false
	}
	return false
}

// asResponseError turns the shared line and field readers' request
// refusals into response refusals: same reason, the upstream's details.
func asResponseError(err error) error {
	if e, ok := err.(*Error); ok {
		return errBadResponse(e.Reason)
	}
	return err
}

// parseStatusLine parses "HTTP-version SP status-code SP [reason]".
func parseStatusLine(line []byte, resp *Response) error {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return errBadResponse("malformed status line")
	}
	switch line[7] {
	case '0':
		resp.Minor = 0
	case '1':
		resp.Minor = 1
	default:
		return errBadResponse("unsupported HTTP version")
	}
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return errBadResponse("malformed status code")
	}
	resp.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	resp.Reason = ""
	if len(line) > 13 {
		for _, c := range line[13:] {
			if !valueChar[c] {
				return errBadResponse("invalid character in the reason phrase")
			}
		}
		if resp.KeepReason {
			resp.Reason = string(line[13:])
		}
	}
	return nil
}

// interpret works out the body's framing and the connection's fate.
func (resp *Response) interpret(head bool) error {
	var cl int64 = -1
	var te, clSeen bool
	closeConn, keepAlive := false, false
	resp.Chunked = false
	for _, f := range resp.Fields {
		switch fieldOf(f.Name) {
		case fieldContentLength:
			n, ok := parseContentLength(f.Value)
			if !ok || clSeen && n != cl {
				return errBadResponse("invalid content-length")
			}
			cl, clSeen = n, true
		case fieldTransferEncoding:
			if te || !strings.EqualFold(f.Value, "chunked") {
				// Only a single "chunked" is framed unambiguously.
				return errBadResponse("unsupported transfer-encoding")
			}
			te = true
		case fieldConnection:
			for _, o := range strings.Split(f.Value, ",") {
				o = strings.TrimSpace(o)
				closeConn = closeConn || strings.EqualFold(o, "close")
				keepAlive = keepAlive || strings.EqualFold(o, "keep-alive")
			}
		}
	}
	if te && clSeen {
		return errBadResponse("content-length and chunked")
	}
	resp.KeepAlive = !closeConn && (resp.Minor == 1 || keepAlive)
	resp.CloseDelimited = false
	switch {
	case head || resp.Status == 204 || resp.Status == 304 || resp.Status < 200:
		resp.ContentLength = 0
	case te:
		resp.Chunked, resp.ContentLength = true, -1
	case clSeen:
		resp.ContentLength = cl
	default:
		resp.ContentLength = -1
		resp.CloseDelimited = true
		resp.KeepAlive = false
	}
	return nil
}

// ResetForResponse makes b read the body of resp from br, the reader
// its head came from, with the same strict chunked framing as request
// bodies. A close-delimited body is not for b: read br to its end. The
// reader is reused across responses on a connection (no allocation).
func (b *BodyReader) ResetForResponse(br *bufio.Reader, resp *Response, lim Limits) {
	*b = BodyReader{br: br, lim: lim.withDefaults(), chunked: resp.Chunked, trailers: b.trailers[:0]}
	switch {
	case resp.Chunked:
	case resp.ContentLength > 0:
		b.remaining = resp.ContentLength
	default:
		b.done = true
	}
}
