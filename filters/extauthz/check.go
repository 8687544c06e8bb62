package extauthz

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/grpcstream"
)

// outcome is a check's verdict, Envoy's CheckStatus.
type outcome int

const (
	allowed outcome = iota
	denied
	failed
)

// result is what the filter does with a check's answer.
type result struct {
	outcome outcome
	// reason says why a check failed (for logs and tests).
	reason string
	// Denied: the reply to the client.
	status int
	body   []byte
	reply  []filter.Pair
	// Allowed: changes to the upstream request and the client response.
	set, add    []filter.Pair
	addIfAbsent []filter.Pair
	setIfExists []filter.Pair
	remove      []string
	respAdd     []filter.Pair
	respSet     []filter.Pair
}

func failure(format string, args ...any) *result {
	return &result{outcome: failed, reason: fmt.Sprintf(format, args...)}
}

// checkInput is the request as the check sees it.
type checkInput struct {
	headers  []filter.Pair
	body     []byte
	partial  bool
	withBody bool
	ext      map[string]string
	// From the stream's info, copied on the stream goroutine.
	protocol string
	src, dst netip.AddrPort
	start    time.Time
}

// --- HTTP service -------------------------------------------------------

// defaultRequestHeaders are sent to an HTTP service whatever
// allowed_headers says (Envoy's ClientConfig::toRequestMatchers).
var defaultRequestHeaders = map[string]bool{":method": true, ":path": true, ":authority": true, "authorization": true}

func matchAny(ms []config.StringMatcher, key string) bool {
	for i := range ms {
		if ms[i].Match(key) {
			return true
		}
	}
	return false
}

// checkHTTP asks an http_service as Envoy's raw HTTP client does: the
// allowed request headers (path under path_prefix), headers_to_add, the
// buffered body; 200 allows, 5xx is an error, any other status denies.
func checkHTTP(ctx context.Context, ups filter.Upstreams, svc *HTTPService, in *checkInput) *result {
	hdrs := make([]filter.Pair, 0, len(in.headers)+len(svc.HeadersToAdd)+2)
	for _, p := range in.headers {
		if p.Key == "content-length" || !defaultRequestHeaders[p.Key] && !matchAny(svc.AllowedHeaders, p.Key) {
			continue
		}
		if p.Key == ":path" {
			p.Value = svc.PathPrefix + p.Value
		}
		hdrs = append(hdrs, p)
	}
	hdrs = append(hdrs, filter.Pair{Key: "content-length", Value: strconv.Itoa(len(in.body))})
	if in.withBody {
		hdrs = append(hdrs, filter.Pair{Key: "x-envoy-auth-partial-body", Value: strconv.FormatBool(in.partial)})
	}
	hm := filter.NewHeaderMap(hdrs...)
	for _, h := range svc.HeadersToAdd {
		hm.Set(h.Key, h.Value)
	}
	ctx, cancel := context.WithTimeout(ctx, svc.Timeout)
	defer cancel()
	resp, err := ups.HTTPCall(ctx, svc.Cluster, hm.Pairs(), in.body, nil)
	if err != nil {
		return failure("http_service: %v", err)
	}
	rh := filter.NewHeaderMap(resp.Headers...)
	st, _ := rh.Get(":status")
	code, err := strconv.Atoi(st)
	switch {
	case err != nil:
		return failure("http_service: bad status %q", st)
	case code >= 500:
		return failure("http_service answered %d", code)
	case code == 200:
		r := &result{outcome: allowed}
		for _, p := range resp.Headers {
			if p.Key == "" || p.Key[0] == ':' {
				continue
			}
			if p.Key == headersToRemove {
				// The server names request headers to remove; the
				// header itself goes no further (Envoy's raw HTTP client).
				for _, name := range strings.Split(p.Value, ",") {
					if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
						r.remove = append(r.remove, name)
					}
				}
				continue
			}
			if matchAny(svc.Upstream, p.Key) {
				r.set = append(r.set, p)
			}
			if matchAny(svc.UpstreamAppend, p.Key) {
				r.add = append(r.add, p)
			}
			if matchAny(svc.ClientOnSuccess, p.Key) {
				r.respAdd = append(r.respAdd, p)
			}
		}
		return r
	}
	r := &result{outcome: denied, status: code, body: resp.Body}
	for _, p := range resp.Headers {
		if p.Key == "" || p.Key[0] == ':' || p.Key == headersToRemove || p.Key == "content-length" || p.Key == "transfer-encoding" || p.Key == "connection" {
			continue // the local reply frames its own body
		}
		if svc.Client == nil && p.Key != "host" || matchAny(svc.Client, p.Key) || clientDefaults[p.Key] {
			r.reply = append(r.reply, p)
		}
	}
	return r
}

// headersToRemove is the HTTP service's list of request headers to
// remove on success.
const headersToRemove = "x-envoy-auth-headers-to-remove"

// clientDefaults are passed to the client on denial whenever
// allowed_client_headers is set (Envoy adds them to the user's list).
var clientDefaults = map[string]bool{"www-authenticate": true, "location": true}

// --- gRPC service -------------------------------------------------------

const checkPath = "/envoy.service.auth.v3.Authorization/Check"

// checkGRPC calls envoy.service.auth.v3.Authorization/Check on the
// cluster: one request message, one response message and grpc-status.
func checkGRPC(ctx context.Context, ups filter.Upstreams, svc *GRPCService, in *checkInput, packAsBytes bool) *result {
	req, err := proto.Marshal(checkRequest(in, packAsBytes))
	if err != nil {
		return failure("grpc_service: %v", err)
	}
	authority := svc.Authority
	if authority == "" {
		authority = svc.Cluster // Envoy's default :authority for envoy_grpc
	}
	hdrs := grpcstream.Headers(authority, checkPath)
	if svc.Timeout > 0 {
		hdrs = append(hdrs, filter.Pair{Key: "grpc-timeout", Value: strconv.FormatInt(svc.Timeout.Milliseconds(), 10) + "m"})
	}
	for _, m := range svc.Metadata {
		hdrs = append(hdrs, filter.Pair{Key: m.Key, Value: m.Value})
	}
	if svc.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, svc.Timeout)
		defer cancel()
	}
	msg, err := grpcstream.Unary(ctx, ups, svc.Cluster, hdrs, req)
	if err != nil {
		return failure("grpc_service: %v", err)
	}
	var resp authv3.CheckResponse
	if err := proto.Unmarshal(msg, &resp); err != nil {
		return failure("grpc_service: bad CheckResponse: %v", err)
	}
	return grpcResult(&resp)
}

// grpcResult reads a CheckResponse as Envoy's gRPC client does.
func grpcResult(resp *authv3.CheckResponse) *result {
	if resp.GetStatus().GetCode() == 0 {
		r := &result{outcome: allowed}
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			sortOption(h, &r.set, &r.add, &r.addIfAbsent, &r.setIfExists)
		}
		r.remove = ok.GetHeadersToRemove()
		var ignore []filter.Pair
		for _, h := range ok.GetResponseHeadersToAdd() {
			sortOption(h, &r.respSet, &r.respAdd, &ignore, &ignore)
		}
		return r
	}
	d := resp.GetDeniedResponse()
	r := &result{outcome: denied, status: 403, body: []byte(d.GetBody())}
	if c := d.GetStatus().GetCode(); c >= 100 && c <= 599 {
		// Envoy replaces a status it does not know with 403.
		r.status = int(c)
	}
	for _, h := range d.GetHeaders() {
		r.reply = append(r.reply, filter.Pair{Key: strings.ToLower(h.GetHeader().GetKey()), Value: h.GetHeader().GetValue()})
	}
	return r
}

// sortOption files a HeaderValueOption by what it does: the deprecated
// append (false or unset in these messages: set) wins over append_action.
func sortOption(h *corev3.HeaderValueOption, set, add, addIfAbsent, setIfExists *[]filter.Pair) {
	p := filter.Pair{Key: strings.ToLower(h.GetHeader().GetKey()), Value: h.GetHeader().GetValue()}
	if h.GetAppend() != nil || h.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
		if h.GetAppend().GetValue() {
			*add = append(*add, p)
		} else {
			*set = append(*set, p)
		}
		return
	}
	switch h.GetAppendAction() {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		*addIfAbsent = append(*addIfAbsent, p)
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		*setIfExists = append(*setIfExists, p)
	default:
		*set = append(*set, p)
	}
}

// checkRequest builds the AttributeContext Envoy sends.
func checkRequest(in *checkInput, packAsBytes bool) *authv3.CheckRequest {
	hm := filter.NewHeaderMap(in.headers...)
	get := func(k string) string { v, _ := hm.Get(k); return v }
	headers := map[string]string{}
	for _, p := range in.headers {
		if v, ok := headers[p.Key]; ok {
			headers[p.Key] = v + "," + p.Value
		} else {
			headers[p.Key] = p.Value
		}
	}
	size := int64(-1)
	if cl, err := strconv.ParseInt(get("content-length"), 10, 64); err == nil {
		size = cl
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id: get("x-request-id"), Method: get(":method"), Headers: headers, Path: get(":path"),
		Host: get(":authority"), Scheme: get(":scheme"), Size: size,
	}
	if in.withBody {
		if packAsBytes {
			httpReq.RawBody = in.body
		} else {
			httpReq.Body = string(in.body)
		}
		headers["x-envoy-auth-partial-body"] = strconv.FormatBool(in.partial)
	}
	attrs := &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: httpReq},
		ContextExtensions: in.ext,
	}
	httpReq.Protocol = in.protocol
	attrs.Source, attrs.Destination = peer(in.src), peer(in.dst)
	if !in.start.IsZero() {
		attrs.Request.Time = timestamppb.New(in.start)
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func peer(a netip.AddrPort) *authv3.AttributeContext_Peer {
	if !a.IsValid() {
		return nil
	}
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: a.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())}},
	}}}
}
