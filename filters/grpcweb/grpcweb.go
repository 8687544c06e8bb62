// Package grpcweb is envoy.filters.http.grpc_web: it lets a gRPC-Web
// client (a browser, over HTTP/1.1 or HTTP/2) call a gRPC service, with
// Envoy's semantics restated from
// source/extensions/filters/http/grpc_web/grpc_web_filter.cc:
//
// A request with a :path and content-type exactly application/grpc-web,
// application/grpc-web+proto, application/grpc-web-text or
// application/grpc-web-text+proto becomes a gRPC request: content-type
// application/grpc, content-length removed, te: trailers set, and
// grpc-accept-encoding: identity added when the client sent none. A
// -text request body is base64 and is decoded as it streams: each data
// chunk decodes the longest prefix of a multiple of 4 characters held so
// far (a shorter rest waits for the next chunk); a body that ends with a
// length not a multiple of 4, or a prefix that does not decode, is
// answered 400 "Bad gRPC-web request, invalid base64 data." (details
// grpc_base_64_decode_failed_bad_size / grpc_base_64_decode_failed).
// Other headers (x-grpc-web, x-user-agent) pass unchanged, as in Envoy.
//
// The response: content-length removed; content-type
// application/grpc-web-text+proto when the request's accept header was
// exactly application/grpc-web-text(+proto), else
// application/grpc-web+proto. For a -text response every gRPC frame of
// the body is base64-encoded on its own (frames cut across data chunks
// wait for their rest). Trailers become a trailer frame at the end of
// the body: flag byte 0x80, the 4-byte length, then "name:value\r\n" per
// trailer (base64 for -text); the HTTP trailers are emptied. A
// trailers-only answer (headers that end the stream) keeps grpc-status
// in its headers.
//
// A response that is neither gRPC (200 with a gRPC content-type, or a
// grpc-status in headers that end the stream) nor proto gRPC-Web (200
// with application/grpc-web(+proto)) is turned into a gRPC-Web error, as
// Envoy does for upstream errors and local replies (a local reply to a
// gRPC-Web request is not a gRPC one): its body, up to 16384 bytes once
// it came in more than one chunk, percent-encoded into grpc-message; its
// HTTP status mapped to grpc-status (400 INTERNAL, 401 UNAUTHENTICATED,
// 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE,
// else UNKNOWN); content-length 0 and no body; the status stays.
//
// Stats, as Envoy's gRPC context charges them for gRPC-Web: when the
// request has a cluster and its path is /<service>/<method>, each
// grpc-status seen in the response headers or trailers counts
// cluster.<cluster>.grpc-web.<service>.<method>.<status> (0 to 16, else
// "other"), .success (status 0) or .failure, and .total.
//
// The typed_config (GrpcWeb) has no fields; the filter has no per-route
// message: route.v3.FilterConfig disabled turns it off on a route.
package grpcweb

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

	grpcwebv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.grpc_web"

func init() {
	filters.Register(&filters.Native{
		Name:   Name,
		Config: "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
		Parse:  parse,
		New:    newFactory,
	})
}

const (
	ctGRPC          = "application/grpc"
	ctWeb           = "application/grpc-web"
	ctWebProto      = "application/grpc-web+proto"
	ctWebText       = "application/grpc-web-text"
	ctWebTextProto  = "application/grpc-web-text+proto"
	badBase64       = "Bad gRPC-web request, invalid base64 data."
	trailerFlag     = 0x80
	frameHeaderSize = 5
	// maxMessage bounds the body of a non-gRPC response kept for
	// grpc-message once it came in more than one chunk (Envoy's
	// MAX_BUFFERED_PLAINTEXT_LENGTH).
	maxMessage = 16384
)

// Config is the filter's configuration: GrpcWeb has no fields.
type Config struct{}

func parse(msg proto.Message, _ string) (any, error) {
	_, _ = msg.(*grpcwebv3.GrpcWeb) // links the message into the registry
	return &Config{}, nil
}

type factory struct {
	store *stats.Store
}

func newFactory(_ any, env filters.Env) (filter.Factory, error) {
	return &factory{store: env.Stats}, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks

	web, textReq, textResp bool
	// statPrefix is cluster.<c>.grpc-web.<service>.<method>. ("": no
	// stats for this request).
	statPrefix string
	// pending is the request's base64 rest shorter than 4 characters.
	pending []byte
	// frames is the response's partial gRPC frame (-text responses).
	frames []byte

	// transform: the response is not gRPC and becomes a gRPC-Web error
	// (headers held, body gathered in held).
	transform bool
	respHead  *filter.HeaderMap
	held      []byte
	sawData   bool
	// last is the response buffer of the last EncodeData, where the
	// trailer frame goes when the callbacks cannot add data.
	last *filter.Buffer
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	if _, ok := h.Get(":path"); !ok {
		return filter.HeadersContinue
	}
	ct, _ := h.Get("content-type")
	switch ct {
	case ctWeb, ctWebProto:
	case ctWebText, ctWebTextProto:
		s.textReq = true
	default:
		return filter.HeadersContinue
	}
	s.web = true
	h.Del("content-length")
	s.setupStats(h)
	h.Set("content-type", ctGRPC)
	if accept, _ := h.Get("accept"); accept == ctWebText || accept == ctWebTextProto {
		s.textResp = true
	}
	h.Set("te", "trailers")
	if _, ok := h.Get("grpc-accept-encoding"); !ok {
		h.Set("grpc-accept-encoding", "identity")
	}
	return filter.HeadersContinue
}

// setupStats names the request's stats from its cluster and
// /<service>/<method> path (Envoy's resolveDynamicServiceAndMethod: the
// query dropped, exactly two non-empty segments).
func (s *stream) setupStats(h *filter.HeaderMap) {
	info := s.cb.Info()
	if s.f.store == nil || info == nil || info.ClusterName == "" {
		return
	}
	p, _ := h.Get(":path")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	var parts []string
	for _, seg := range strings.Split(p, "/") {
		if seg != "" {
			parts = append(parts, seg)
		}
	}
	if len(parts) != 2 {
		return
	}
	s.statPrefix = "cluster." + info.ClusterName + ".grpc-web." + parts[0] + "." + parts[1] + "."
}

func (s *stream) DecodeData(data *filter.Buffer, end bool) filter.DataStatus {
	if !s.web || !s.textReq {
		return filter.DataContinue
	}
	available := len(s.pending) + len(data.Bytes)
	if end {
		if available == 0 {
			return filter.DataContinue
		}
		if available%4 != 0 {
			s.cb.SendLocalReply(400, []byte(badBase64), nil, "grpc_base_64_decode_failed_bad_size")
			data.Bytes = nil
			return filter.DataStopIterationNoBuffer
		}
	} else if available < 4 {
		s.pending = append(s.pending, data.Bytes...)
		data.Bytes = nil
		return filter.DataStopIterationNoBuffer
	}
	take := available/4*4 - len(s.pending)
	chunk := append(s.pending, data.Bytes[:take]...)
	decoded, ok := decodeBase64(chunk)
	if !ok {
		s.cb.SendLocalReply(400, []byte(badBase64), nil, "grpc_base_64_decode_failed")
		data.Bytes = nil
		return filter.DataStopIterationNoBuffer
	}
	s.pending = append(s.pending[:0:0], data.Bytes[take:]...)
	data.Bytes = decoded
	return filter.DataContinue
}

// decodeBase64 decodes padded standard base64 as Envoy's Base64::decode:
// line breaks are not skipped, and an input that decodes to nothing is a
// failure.
func decodeBase64(b []byte) ([]byte, bool) {
	if bytes.ContainsAny(b, "\r\n") {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(out, b)
	if err != nil || n == 0 {
		return nil, false
	}
	return out[:n], true
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	if !s.web {
		return filter.HeadersContinue
	}
	s.chargeStats(h)
	s.transform = !isGRPCResponse(h, end) && !isProtoWebResponse(h)
	h.Del("content-length")
	if s.textResp {
		h.Set("content-type", ctWebTextProto)
	} else {
		h.Set("content-type", ctWebProto)
	}
	if end || !s.transform {
		return filter.HeadersContinue
	}
	s.respHead = h
	return filter.HeadersStopIteration
}

// isGRPCResponse is Envoy's Grpc::Common::isGrpcResponseHeaders: headers
// that end the stream with a grpc-status (trailers-only), or a 200 with
// content-type application/grpc or application/grpc+<subtype>.
func isGRPCResponse(h *filter.HeaderMap, end bool) bool {
	if end {
		_, ok := h.Get("grpc-status")
		return ok
	}
	if st, _ := h.Get(":status"); st != "200" {
		return false
	}
	ct, _ := h.Get("content-type")
	return ct == ctGRPC || strings.HasPrefix(ct, ctGRPC+"+")
}

// isProtoWebResponse: a 200 whose content-type, parameters and trailing
// blanks cut, is application/grpc-web or application/grpc-web+proto in
// any case.
func isProtoWebResponse(h *filter.HeaderMap) bool {
	if st, _ := h.Get(":status"); st != "200" {
		return false
	}
	ct, ok := h.Get("content-type")
	if !ok {
		return false
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimRight(ct, " \t")
	return strings.EqualFold(ct, ctWebProto) || strings.EqualFold(ct, ctWeb)
}

func (s *stream) EncodeData(data *filter.Buffer, end bool) filter.DataStatus {
	if !s.web {
		return filter.DataContinue
	}
	s.last = data
	if s.transform {
		if !end {
			// Gather the body for grpc-message; past the bound the rest
			// is dropped.
			if len(s.held) < maxMessage {
				s.held = append(s.held, data.Bytes...)
			}
			s.sawData = true
			data.Bytes = nil
			return filter.DataStopIterationNoBuffer
		}
		msg := data.Bytes
		if s.sawData {
			msg = append(s.held, data.Bytes...)
			if len(msg) > maxMessage {
				msg = msg[:maxMessage]
			}
		}
		s.finishTransform(msg)
		data.Bytes = nil
		return filter.DataContinue
	}
	if !s.textResp {
		return filter.DataContinue
	}
	s.frames = append(s.frames, data.Bytes...)
	var out []byte
	for len(s.frames) >= frameHeaderSize {
		n := int(binary.BigEndian.Uint32(s.frames[1:frameHeaderSize]))
		if len(s.frames)-frameHeaderSize < n {
			break
		}
		out = base64.StdEncoding.AppendEncode(out, s.frames[:frameHeaderSize+n])
		s.frames = s.frames[frameHeaderSize+n:]
	}
	if len(s.frames) == 0 {
		s.frames = nil
	}
	data.Bytes = out
	if len(out) == 0 && !end {
		// Not one whole frame yet: the bytes wait in s.frames.
		return filter.DataStopIterationNoBuffer
	}
	return filter.DataContinue
}

// finishTransform turns the held non-gRPC response headers into a
// gRPC-Web error (Envoy's setTransformedNonProtoEncodedResponseHeaders).
func (s *stream) finishTransform(msg []byte) {
	s.transform = false
	h := s.respHead
	h.Set("grpc-message", percentEncode(msg))
	st, _ := h.Get(":status")
	code, _ := strconv.Atoi(st)
	h.Set("grpc-status", strconv.Itoa(httpToGRPC(code)))
	h.Set("content-length", "0")
	s.held = nil
}

// httpToGRPC is Envoy's Grpc::Utility::httpToGrpcStatus.
func httpToGRPC(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// percentEncode is Envoy's PercentEncoding::encode with its default
// reserved set: bytes below ' ', from '~' up, and '%' become %XX.
func percentEncode(b []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		if c < ' ' || c >= '~' || c == '%' {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

func (s *stream) EncodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	if !s.web {
		return filter.TrailersContinue
	}
	s.chargeStats(t)
	if s.transform {
		msg := s.held
		if len(msg) > maxMessage {
			msg = msg[:maxMessage]
		}
		s.finishTransform(msg)
		return filter.TrailersContinue
	}
	var payload []byte
	for _, p := range t.Pairs() {
		payload = append(payload, p.Key...)
		payload = append(payload, ':')
		payload = append(payload, p.Value...)
		payload = append(payload, '\r', '\n')
	}
	frame := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	frame[0] = trailerFlag
	binary.BigEndian.PutUint32(frame[1:], uint32(len(payload)))
	frame = append(frame, payload...)
	if s.textResp {
		frame = base64.StdEncoding.AppendEncode(nil, frame)
	}
	// The trailers now travel in the body.
	t.Replace(nil)
	if a, ok := s.cb.(filter.DataAdder); ok {
		a.AddData(filter.Response, frame)
	} else if s.last != nil {
		s.last.Bytes = append(s.last.Bytes, frame...)
	}
	return filter.TrailersContinue
}

// chargeStats counts a grpc-status of the response headers or trailers
// (Envoy's Grpc::Context::chargeStat).
func (s *stream) chargeStats(h *filter.HeaderMap) {
	if s.statPrefix == "" {
		return
	}
	st, ok := h.Get("grpc-status")
	if !ok {
		return
	}
	name := "other"
	if n, err := strconv.Atoi(st); err == nil && n >= 0 && n <= 16 && strconv.Itoa(n) == st {
		name = st
	}
	store := s.f.store
	store.Counter(s.statPrefix + name).Inc()
	if st == "0" {
		store.Counter(s.statPrefix + "success").Inc()
	} else {
		store.Counter(s.statPrefix + "failure").Inc()
	}
	store.Counter(s.statPrefix + "total").Inc()
}
