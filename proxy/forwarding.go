package proxy

import (
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// The forwarding headers (use_remote_address, xff_num_trusted_hops,
// skip_xff_append, via, internal_address_config): what Envoy's
// ConnectionManagerUtility::mutateRequestHeaders decides about where a
// request came from, and the headers it sets and strips on the way in.

// requestOrigin is where the connection manager concluded a request came
// from. The stream keeps it (stream.origin) for the rules that depend on
// it, such as Envoy's x-request-id handling (a request ID is always made
// afresh for an edge request unless preserve_external_request_id).
type requestOrigin struct {
	// Internal: the trusted client address is in internal_address_config
	// and the request came straight from it (no x-forwarded-for before
	// this hop): Envoy's x-envoy-internal.
	Internal bool
	// Edge: an external request on a connection manager that uses the
	// remote address, so this proxy is its first hop into the trusted
	// network.
	Edge bool
	// Client is the trusted client address: with use_remote_address, the
	// x-forwarded-for entry xff_num_trusted_hops from the end, else the
	// connection's peer. The stream's downstream address (source.address,
	// %DOWNSTREAM_REMOTE_ADDRESS%) stays the connection's peer.
	Client netip.Addr
}

// IsInternalRequest reports whether the stream's request is internal, as
// Envoy decides it (and marks it with x-envoy-internal: true).
func (s *stream) IsInternalRequest() bool { return s.origin.Internal }

// IsEdgeRequest reports whether the stream's request is external and
// the connection manager uses the remote address (Envoy's edge request).
func (s *stream) IsEdgeRequest() bool { return s.origin.Edge }

// internalOnlyHeaders are the x-envoy-* request headers that steer an
// Envoy (retries, timeouts, tracing, …): a request that is not internal
// loses them, so a client cannot steer the proxies behind this one.
var internalOnlyHeaders = []string{
	"x-envoy-retriable-status-codes",
	"x-envoy-retriable-header-names",
	"x-envoy-retry-on",
	"x-envoy-retry-grpc-on",
	"x-envoy-max-retries",
	"x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response",
	"x-envoy-expected-rq-timeout-ms",
	"x-envoy-force-trace",
	"x-envoy-ip-tags",
	"x-envoy-original-url",
	"x-envoy-hedge-on-per-try-timeout",
}

// edgeOnlyHeaders are stripped from edge requests only.
var edgeOnlyHeaders = []string{
	"x-envoy-decorator-operation",
	"x-envoy-downstream-service-cluster",
	"x-envoy-downstream-service-node",
}

// forwardingConfig is a connection manager's parsed forwarding settings.
type forwardingConfig struct {
	internal []netip.Prefix
}

func newForwardingConfig(h *config.HTTPConnectionManager) (forwardingConfig, error) {
	var f forwardingConfig
	for _, s := range h.InternalAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return f, err
		}
		f.internal = append(f.internal, p)
	}
	return f, nil
}

func (f *forwardingConfig) isInternal(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range f.internal {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// mutateRequestHeaders sets and strips the forwarding headers of a new
// request from peer (the connection's remote address; conn: its TLS
// session, nil for plaintext), in Envoy's order, x-forwarded-client-cert
// last, and returns its origin.
func (cm *connManager) mutateRequestHeaders(h *filter.HeaderMap, peer netip.Addr, conn *filter.TLSInfo) requestOrigin {
	tls := conn != nil
	cfg := cm.cfg
	peer = peer.Unmap()
	// One pass finds whether there is anything to strip, so a request
	// without x-envoy-* headers (nearly all) costs no deletions.
	envoyHeaders, xfcc, te, upgrade := false, false, false, false
	for _, p := range h.Pairs() {
		envoyHeaders = envoyHeaders || strings.HasPrefix(p.Key, "x-envoy-")
		xfcc = xfcc || p.Key == "x-forwarded-client-cert"
		te = te || p.Key == "te"
		upgrade = upgrade || p.Key == "upgrade"
	}
	if envoyHeaders {
		h.Del("x-envoy-internal") // only this proxy says so
	}
	if te && !upgrade {
		sanitizeTE(h)
	}
	var client netip.Addr
	trustable := false
	if cfg.UseRemoteAddress {
		xff, hasXFF := joinedHeader(h, "x-forwarded-for")
		trustable = !hasXFF
		if cfg.XFFNumTrustedHops > 0 && hasXFF {
			client, _ = lastXFFAddress(xff, int(cfg.XFFNumTrustedHops)-1)
		}
		if !client.IsValid() {
			client = peer
		}
		if !cfg.SkipXFFAppend && peer.IsValid() {
			hop := peer
			if hop.IsLoopback() {
				// Envoy appends its own address for a loopback peer.
				hop = localAddress()
			}
			if hasXFF {
				h.SetLower("x-forwarded-for", xff+","+hop.String())
			} else {
				h.SetLower("x-forwarded-for", hop.String())
			}
		}
		if _, ok := h.GetLower("x-forwarded-proto"); cfg.XFFNumTrustedHops == 0 || !ok {
			// The peer is not a trusted proxy: its scheme claim is not
			// believed.
			h.SetLower("x-forwarded-proto", requestScheme(tls))
		}
	} else if xff, ok := joinedHeader(h, "x-forwarded-for"); ok {
		// Envoy's default original-IP detection (its XFF extension): the
		// client is xff_num_trusted_hops entries from the end, and only
		// a lone entry with no trusted hops may make the request
		// internal.
		if a, ok := lastXFFAddress(xff, int(cfg.XFFNumTrustedHops)); ok {
			client = a
			trustable = cfg.XFFNumTrustedHops == 0 && !strings.Contains(xff, ",")
		}
	}
	if _, ok := h.GetLower("x-forwarded-proto"); !ok {
		h.SetLower("x-forwarded-proto", requestScheme(tls))
	}
	o := requestOrigin{Client: client}
	o.Internal = trustable && client.IsValid() && cm.forwarding.isInternal(client)
	if !o.Client.IsValid() {
		o.Client = peer
	}
	o.Edge = !o.Internal && cfg.UseRemoteAddress
	if o.Internal {
		h.SetLower("x-envoy-internal", "true")
	} else if envoyHeaders {
		if o.Edge {
			for _, k := range edgeOnlyHeaders {
				h.Del(k)
			}
		}
		for _, k := range internalOnlyHeaders {
			h.Del(k)
		}
	}
	if cfg.AddUserAgent {
		// After the edge clean-up above, as Envoy's: this proxy's own
		// identity, for the next hop.
		srv := cm.srv
		h.SetLower("x-envoy-downstream-service-cluster", srv.serviceCluster)
		if ua, _ := h.GetLower("user-agent"); ua == "" {
			h.SetLower("user-agent", srv.serviceCluster)
		}
		if srv.serviceNode != "" {
			h.SetLower("x-envoy-downstream-service-node", srv.serviceNode)
		}
	}
	if cfg.Via != "" {
		appendVia(h, cfg.Via)
	}
	if o.Edge && o.Client.IsValid() {
		h.SetLower("x-envoy-external-address", o.Client.String())
	}
	if xfcc || cfg.ForwardClientCertDetails == "APPEND_FORWARD" || cfg.ForwardClientCertDetails == "SANITIZE_SET" {
		cm.mutateClientCertHeader(h, conn)
	}
	return o
}

// joinedHeader is a header's values joined with "," (how Envoy's codec
// folds a repeated x-forwarded-for); ok is false when it is absent.
func joinedHeader(h *filter.HeaderMap, key string) (string, bool) {
	// key is lower case (each caller's a constant): the pairs are
	// looked at without Values' key scan, and one value (or none) is
	// returned without a slice.
	v, n := "", 0
	for _, p := range h.Pairs() {
		if p.Key == key {
			v, n = p.Value, n+1
			if n == 1 {
				continue
			}
			return strings.Join(h.Values(key), ","), true
		}
	}
	return v, n == 1
}

// lastXFFAddress is the address skip entries from the end of an
// x-forwarded-for list; ok is false when the list is shorter or the
// entry is not an IP address (Envoy's getLastAddressFromXFF).
func lastXFFAddress(xff string, skip int) (netip.Addr, bool) {
	for i := 0; i < skip; i++ {
		c := strings.LastIndexByte(xff, ',')
		if c < 0 {
			return netip.Addr{}, false
		}
		xff = xff[:c]
	}
	if c := strings.LastIndexByte(xff, ','); c >= 0 {
		xff = xff[c+1:]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(xff))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// appendVia adds value to a request's or response's via header, after
// what is there (", "-separated, as Envoy's appendVia).
func appendVia(h *filter.HeaderMap, value string) {
	if vs := h.Values("via"); len(vs) > 0 {
		h.SetLower("via", strings.Join(vs, ", ")+", "+value)
		return
	}
	h.SetLower("via", value)
}

// localAddress is this host's address as Envoy's local info has it: the
// first non-loopback IPv4 address of an interface, else IPv6, else the
// IPv4 loopback. It stands for this proxy in x-forwarded-for when the
// peer is on the same host.
var localAddress = sync.OnceValue(func() netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	var v6 netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		if ip.Is4() {
			return ip
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	if v6.IsValid() {
		return v6
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
})

// mutateClientCertHeader applies forward_client_cert_details to
// x-forwarded-client-cert (Envoy's mutateXfccRequestHeader): conn is the
// downstream TLS session, nil for plaintext.
func (cm *connManager) mutateClientCertHeader(h *filter.HeaderMap, conn *filter.TLSInfo) {
	mode := cm.cfg.ForwardClientCertDetails
	if mode == "ALWAYS_FORWARD_ONLY" {
		return
	}
	if mode == "" || mode == "SANITIZE" || conn.PeerCertificate() == nil {
		h.Del("x-forwarded-client-cert")
		return
	}
	if mode == "FORWARD_ONLY" {
		return
	}
	details := clientCertDetails(conn, cm.cfg.ClientCertDetails)
	if mode == "APPEND_FORWARD" {
		if v, ok := joinedHeader(h, "x-forwarded-client-cert"); ok {
			details = v + "," + details
		}
	}
	h.SetLower("x-forwarded-client-cert", details) // SANITIZE_SET, or the appended list
}

// clientCertDetails is one x-forwarded-client-cert element for an mTLS
// connection: By (each URI SAN of this proxy's certificate), Hash (of
// the client's), then what set_current_client_cert_details asks for in
// Envoy's order: Cert, Chain, Subject, URI, DNS.
func clientCertDetails(conn *filter.TLSInfo, want *config.ClientCertDetails) string {
	var parts []string
	if local := conn.LocalCertificate; local != nil {
		for _, u := range local.URIs {
			parts = append(parts, "By="+u.String())
		}
	}
	peer := conn.PeerCertificate()
	parts = append(parts, "Hash="+conn.PeerCertificateSHA256())
	if want != nil {
		if want.Cert {
			parts = append(parts, `Cert="`+filter.URLEncodedPEM(peer)+`"`)
		}
		if want.Chain {
			var chain strings.Builder
			for _, c := range conn.PeerCertificates {
				chain.WriteString(filter.URLEncodedPEM(c))
			}
			parts = append(parts, `Chain="`+chain.String()+`"`)
		}
		if want.Subject {
			// The key is there even when the subject is empty.
			parts = append(parts, `Subject="`+filter.CertificateSubject(peer)+`"`)
		}
		if want.URI {
			if len(peer.URIs) == 0 {
				parts = append(parts, "URI=")
			}
			for _, u := range peer.URIs {
				parts = append(parts, "URI="+u.String())
			}
		}
		if want.DNS {
			for _, d := range peer.DNSNames {
				parts = append(parts, "DNS="+d)
			}
		}
	}
	return strings.Join(parts, ";")
}

// responseServer is the server header value the response writers put on
// h, under server_header_transformation: "" keeps whatever server field
// h has (or none).
func (cm *connManager) responseServer(h *filter.HeaderMap) string {
	switch cm.cfg.ServerHeaderTransformation {
	case "PASS_THROUGH":
		return ""
	case "APPEND_IF_ABSENT":
		if _, ok := h.GetLower("server"); ok {
			return ""
		}
	}
	return cm.serverName
}

// codecReplyServer is the server value of a reply made before any stream
// (a codec refusal), whose headers (a local_reply_config mapper's) are
// given: responseServer's rule without a header map.
func (cm *connManager) codecReplyServer(headers []filter.Pair) string {
	switch cm.cfg.ServerHeaderTransformation {
	case "PASS_THROUGH":
		return ""
	case "APPEND_IF_ABSENT":
		for _, p := range headers {
			if p.Key == "server" {
				return ""
			}
		}
	}
	return cm.serverName
}

// sanitizeTE leaves a request's te field as Envoy's sanitizeTEHeader
// does: "trailers" when one of its comma-separated values is exactly
// that (gRPC clients send it and gRPC servers may insist on it), else
// no te at all. te is the one hop-by-hop field that goes upstream.
func sanitizeTE(h *filter.HeaderMap) {
	v, _ := joinedHeader(h, "te")
	for part := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(part) == "trailers" {
			h.SetLower("te", "trailers")
			return
		}
	}
	h.Del("te")
}
