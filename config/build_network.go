package config

import (
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	proxyprotocolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	filterreg "github.com/wasmproxy/wasmproxy/filters"
)

// Envoy's defaults for TCP proxies and TLS contexts.
const (
	defaultTCPIdleTimeout = time.Hour
	defaultMinTLS         = "TLSv1_2"
	defaultMaxTLS         = "TLSv1_3"
)

// Full names of the network and TLS messages the allow-list accepts.
const (
	tcpProxyName      protoreflect.FullName = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	networkWasmName   protoreflect.FullName = "envoy.extensions.filters.network.wasm.v3.Wasm"
	tlsInspectorName  protoreflect.FullName = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	httpInspectorName protoreflect.FullName = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
	proxyProtocolName protoreflect.FullName = "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"
	originalDstName   protoreflect.FullName = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
	downstreamTLSName protoreflect.FullName = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	upstreamTLSName   protoreflect.FullName = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	rawBufferName     protoreflect.FullName = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// Names that select a network filter, listener filter or transport
// socket when it has no typed_config, current and legacy spellings.
var (
	tcpProxyFilterNames = map[string]bool{
		"envoy.filters.network.tcp_proxy": true,
		"envoy.tcp_proxy":                 true,
	}
	networkWasmFilterNames = map[string]bool{
		"envoy.filters.network.wasm": true,
	}
	httpInspectorNames = map[string]bool{
		"envoy.filters.listener.http_inspector": true,
	}
	proxyProtocolNames = map[string]bool{
		"envoy.filters.listener.proxy_protocol": true,
		"envoy.listener.proxy_protocol":         true,
	}
	originalDstNames = map[string]bool{
		"envoy.filters.listener.original_dst": true,
		"envoy.listener.original_dst":         true,
	}
	tlsInspectorNames = map[string]bool{
		"envoy.filters.listener.tls_inspector": true,
		"envoy.listener.tls_inspector":         true,
	}
	tlsSocketNames = map[string]bool{
		"envoy.transport_sockets.tls": true,
		"tls":                         true,
	}
	rawBufferSocketNames = map[string]bool{
		"envoy.transport_sockets.raw_buffer": true,
		"raw_buffer":                         true,
	}
	tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]string{
		tlsv3.TlsParameters_TLSv1_0: "TLSv1_0",
		tlsv3.TlsParameters_TLSv1_1: "TLSv1_1",
		tlsv3.TlsParameters_TLSv1_2: "TLSv1_2",
		tlsv3.TlsParameters_TLSv1_3: "TLSv1_3",
	}
	sanTypes = map[tlsv3.SubjectAltNameMatcher_SanType]string{
		tlsv3.SubjectAltNameMatcher_DNS:        "DNS",
		tlsv3.SubjectAltNameMatcher_URI:        "URI",
		tlsv3.SubjectAltNameMatcher_EMAIL:      "EMAIL",
		tlsv3.SubjectAltNameMatcher_IP_ADDRESS: "IP_ADDRESS",
	}
)

// buildListenerFilters reads listener_filters into l. The TLS inspector
// is accepted: wasmproxy always looks at the first bytes of a connection
// on a listener whose chains need TLS, SNI or ALPN, with or without it
// (Envoy adds it itself there). The HTTP inspector sets l.HTTPInspector:
// plaintext connections get their HTTP version as application protocol
// for filter_chain_match.application_protocols. The PROXY protocol
// reader and the original destination are read into l
// (proxy/proxyproto.go).
func buildListenerFilters(filters []*listenerv3.ListenerFilter, path string, l *Listener) error {
	for i, lf := range filters {
		lfPath := indexPath(path, i)
		if lf.GetFilterDisabled() != nil {
			return notSupported(joinPath(lfPath, "filter_disabled"), "")
		}
		payload, payloadPath, err := unpackAny(lf.GetTypedConfig(), joinPath(lfPath, "typed_config"))
		if err != nil {
			return err
		}
		if payload == nil {
			// Found by name, as Envoy finds a factory without typed_config.
			switch name := lf.GetName(); {
			case tlsInspectorNames[name]:
				continue
			case httpInspectorNames[name]:
				payload = &httpinspectorv3.HttpInspector{}
			case proxyProtocolNames[name]:
				payload = &proxyprotocolv3.ProxyProtocol{}
			case originalDstNames[name]:
				payload = &originaldstv3.OriginalDst{}
			default:
				return notSupported(lfPath, fmt.Sprintf("listener filter %q", name))
			}
		}
		switch c := payload.(type) {
		case *tlsinspectorv3.TlsInspector:
		case *httpinspectorv3.HttpInspector:
			l.HTTPInspector = true
		case *proxyprotocolv3.ProxyProtocol:
			if l.ProxyProtocol != nil {
				return fieldError(lfPath, "the proxy_protocol listener filter is configured twice")
			}
			pp := &ProxyProtocol{AllowWithout: c.GetAllowRequestsWithoutProxyProtocol(), StatPrefix: c.GetStatPrefix()}
			for _, v := range c.GetDisallowedVersions() {
				switch v {
				case corev3.ProxyProtocolConfig_V1:
					pp.DisallowV1 = true
				case corev3.ProxyProtocolConfig_V2:
					pp.DisallowV2 = true
				}
			}
			if pp.DisallowV1 && pp.DisallowV2 {
				// Envoy's words.
				return fieldError(joinPath(payloadPath, "disallowed_versions"), "Proxy Protocol filter is misconfigured: all versions are disallowed.")
			}
			l.ProxyProtocol = pp
		case *originaldstv3.OriginalDst:
			l.OriginalDst = true
		default:
			return notSupported(joinPath(lfPath, "typed_config"), string(messageName(payload)))
		}
	}
	return nil
}

// buildFilterChains builds every chain of a listener and checks, as
// Envoy does, that no two chains have the same match.
func buildFilterChains(chains []*listenerv3.FilterChain, path string) ([]*FilterChain, error) {
	if len(chains) == 0 {
		return nil, fieldError(path, "missing: a listener needs a filter chain with an http_connection_manager or a tcp_proxy")
	}
	var out []*FilterChain
	owner := map[string]int{}
	for i, pc := range chains {
		chainPath := indexPath(path, i)
		c, err := buildFilterChain(pc, chainPath)
		if err != nil {
			return nil, err
		}
		names := c.Match.ServerNames
		if len(names) == 0 {
			names = []string{""}
		}
		protos := c.Match.ApplicationProtocols
		if len(protos) == 0 {
			protos = []string{""}
		}
		for _, name := range names {
			for _, proto := range protos {
				key := strings.ToLower(name) + "\x00" + c.Match.TransportProtocol + "\x00" + proto
				if first, dup := owner[key]; dup {
					return nil, fieldError(joinPath(chainPath, "filter_chain_match"), "same match as %s (multiple filter chains with the same matching rules)", indexPath(path, first))
				}
				owner[key] = i
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func buildFilterChain(pb *listenerv3.FilterChain, path string) (*FilterChain, error) {
	c := &FilterChain{Name: pb.GetName()}
	if m := pb.GetFilterChainMatch(); m != nil {
		matchPath := joinPath(path, "filter_chain_match")
		for j, name := range m.GetServerNames() {
			if name == "" || (strings.Contains(name, "*") && (!strings.HasPrefix(name, "*.") || strings.Count(name, "*") > 1)) {
				return nil, fieldError(indexPath(joinPath(matchPath, "server_names"), j), "%q is not a server name or a \"*.suffix\" wildcard", name)
			}
			c.Match.ServerNames = append(c.Match.ServerNames, strings.ToLower(name))
		}
		for j, p := range m.GetApplicationProtocols() {
			if p == "" {
				return nil, fieldError(indexPath(joinPath(matchPath, "application_protocols"), j), "empty application protocol")
			}
			c.Match.ApplicationProtocols = append(c.Match.ApplicationProtocols, p)
		}
		switch tp := m.GetTransportProtocol(); tp {
		case "", "tls", "raw_buffer":
			c.Match.TransportProtocol = tp
		default:
			return nil, notSupported(joinPath(matchPath, "transport_protocol"), fmt.Sprintf("%q (tls or raw_buffer)", tp))
		}
	}
	if ts := pb.GetTransportSocket(); ts != nil {
		tsPath := joinPath(path, "transport_socket")
		payload, payloadPath, err := transportSocketConfig(ts, tsPath)
		if err != nil {
			return nil, err
		}
		switch p := payload.(type) {
		case nil: // raw_buffer: plaintext
		case *tlsv3.DownstreamTlsContext:
			if c.TLS, err = buildDownstreamTLS(p, payloadPath); err != nil {
				return nil, err
			}
		default:
			return nil, fieldError(joinPath(tsPath, "typed_config"), "a listener filter chain takes a DownstreamTlsContext, not %s", messageName(p))
		}
	}
	if c.TLS != nil && c.Match.TransportProtocol == "raw_buffer" {
		// Envoy loads this, but the chain could never complete a handshake.
		return nil, fieldError(joinPath(path, "filter_chain_match.transport_protocol"), "raw_buffer (plaintext) on a chain whose transport socket is TLS")
	}

	filtersPath := joinPath(path, "filters")
	filters := pb.GetFilters()
	if len(filters) == 0 {
		return nil, fieldError(filtersPath, "missing: the filter chain needs an http_connection_manager or a tcp_proxy")
	}
	for i, f := range filters {
		filterPath := indexPath(filtersPath, i)
		if c.HTTP != nil || c.TCPProxy != nil {
			return nil, fieldError(indexPath(filtersPath, i-1), "%s is a terminal filter: it must be the last network filter", filters[i-1].GetName())
		}
		payload, payloadPath, err := unpackAny(f.GetTypedConfig(), joinPath(filterPath, "typed_config"))
		if err != nil {
			return nil, err
		}
		name := f.GetName()
		switch p := payload.(type) {
		case *hcmv3.HttpConnectionManager:
			if c.HTTP, err = buildHCM(p, payloadPath); err != nil {
				return nil, err
			}
			c.terminalAt = payloadPath
		case *tcpproxyv3.TcpProxy:
			if c.TCPProxy, err = buildTCPProxy(p, payloadPath); err != nil {
				return nil, err
			}
			c.terminalAt = payloadPath
		case *netwasmv3.Wasm:
			w, err := buildWasmPlugin(p.GetConfig(), joinPath(payloadPath, "config"))
			if err != nil {
				return nil, err
			}
			c.NetworkFilters = append(c.NetworkFilters, &NetworkFilter{Name: name, Wasm: w})
		case nil:
			switch {
			case hcmFilterNames[name]:
				return nil, fieldError(joinPath(filterPath, "typed_config"), "missing: %s needs its HttpConnectionManager config", name)
			case tcpProxyFilterNames[name]:
				return nil, fieldError(joinPath(filterPath, "typed_config"), "missing: %s needs its TcpProxy config", name)
			case networkWasmFilterNames[name]:
				return nil, fieldError(joinPath(filterPath, "typed_config"), "missing: %s needs its Wasm config", name)
			case filterreg.LookupNetworkName(name) != nil:
				native := filterreg.LookupNetworkName(name)
				cfg, err := native.Parse(nil, joinPath(filterPath, "typed_config"))
				if err != nil {
					return nil, asConfigError(err, joinPath(filterPath, "typed_config"))
				}
				c.NetworkFilters = append(c.NetworkFilters, &NetworkFilter{Name: name, Native: &NativeFilter{Type: string(native.Config), Config: cfg}})
				continue
			}
			return nil, notSupported(filterPath, fmt.Sprintf("network filter %q", name))
		default:
			native := filterreg.LookupNetwork(messageName(p))
			if native == nil || (native.Internal && name != native.Name) {
				return nil, notSupported(joinPath(filterPath, "typed_config"), string(messageName(p)))
			}
			cfg, err := native.Parse(p, payloadPath)
			if err != nil {
				return nil, asConfigError(err, payloadPath)
			}
			c.NetworkFilters = append(c.NetworkFilters, &NetworkFilter{Name: name, Native: &NativeFilter{Type: string(native.Config), Config: cfg}})
		}
	}
	if c.HTTP == nil && c.TCPProxy == nil {
		return nil, fieldError(filtersPath, "the last network filter must be an http_connection_manager or a tcp_proxy")
	}
	return c, nil
}

func buildTCPProxy(pb *tcpproxyv3.TcpProxy, path string) (*TCPProxy, error) {
	t := &TCPProxy{
		StatPrefix:         pb.GetStatPrefix(),
		Cluster:            pb.GetCluster(),
		IdleTimeout:        Duration(defaultTCPIdleTimeout),
		MaxConnectAttempts: uint32Or(pb.GetMaxConnectAttempts(), 1),
	}
	if t.Cluster == "" {
		return nil, fieldError(path, "missing cluster")
	}
	if d := pb.GetIdleTimeout(); d != nil {
		var err error
		if t.IdleTimeout, err = nonNegative(d, joinPath(path, "idle_timeout")); err != nil {
			return nil, err
		}
	}
	var err error
	if t.AccessLogs, err = buildAccessLogs(pb.GetAccessLog(), joinPath(path, "access_log")); err != nil {
		return nil, err
	}
	return t, nil
}

// transportSocketConfig returns the TLS context of a transport socket,
// or nil for raw_buffer (plaintext). A socket with a typed_config is
// chosen by it; without, by name.
func transportSocketConfig(ts *corev3.TransportSocket, path string) (proto.Message, string, error) {
	payload, payloadPath, err := unpackAny(ts.GetTypedConfig(), joinPath(path, "typed_config"))
	if err != nil {
		return nil, "", err
	}
	switch payload.(type) {
	case *rawbufferv3.RawBuffer:
		return nil, payloadPath, nil
	case nil:
		switch name := ts.GetName(); {
		case rawBufferSocketNames[name]:
			return nil, payloadPath, nil
		case tlsSocketNames[name]:
			return nil, "", fieldError(joinPath(path, "typed_config"), "missing: %s needs its TLS context", name)
		default:
			return nil, "", notSupported(path, fmt.Sprintf("transport socket %q", name))
		}
	}
	return payload, payloadPath, nil
}

func buildDownstreamTLS(pb *tlsv3.DownstreamTlsContext, path string) (*DownstreamTLS, error) {
	common, err := buildCommonTLS(pb.GetCommonTlsContext(), joinPath(path, "common_tls_context"))
	if err != nil {
		return nil, err
	}
	if len(common.Certificates) == 0 {
		return nil, fieldError(joinPath(path, "common_tls_context.tls_certificates"), "missing: a DownstreamTlsContext needs a certificate and its private key")
	}
	return &DownstreamTLS{CommonTLS: common, RequireClientCertificate: pb.GetRequireClientCertificate().GetValue()}, nil
}

func buildUpstreamTLS(ts *corev3.TransportSocket, path string) (*UpstreamTLS, error) {
	payload, payloadPath, err := transportSocketConfig(ts, path)
	if err != nil || payload == nil {
		return nil, err
	}
	pb, ok := payload.(*tlsv3.UpstreamTlsContext)
	if !ok {
		return nil, fieldError(joinPath(path, "typed_config"), "a cluster takes an UpstreamTlsContext, not %s", messageName(payload))
	}
	common, err := buildCommonTLS(pb.GetCommonTlsContext(), joinPath(payloadPath, "common_tls_context"))
	if err != nil {
		return nil, err
	}
	return &UpstreamTLS{CommonTLS: common, SNI: pb.GetSni(), SecretsNotReady: ts.GetName() == SecretsNotReadySocket}, nil
}

func buildCommonTLS(pb *tlsv3.CommonTlsContext, path string) (CommonTLS, error) {
	c := CommonTLS{MinVersion: defaultMinTLS, MaxVersion: defaultMaxTLS, ALPN: pb.GetAlpnProtocols()}
	if p := pb.GetTlsParams(); p != nil {
		paramsPath := joinPath(path, "tls_params")
		if v := p.GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
			c.MinVersion = tlsVersions[v]
		}
		if v := p.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
			c.MaxVersion = tlsVersions[v]
		}
		if c.MinVersion > c.MaxVersion {
			return c, fieldError(paramsPath, "tls_minimum_protocol_version %s is above tls_maximum_protocol_version %s", c.MinVersion, c.MaxVersion)
		}
	}
	for i, cert := range pb.GetTlsCertificates() {
		certPath := indexPath(joinPath(path, "tls_certificates"), i)
		chain, err := dataSource(cert.GetCertificateChain(), joinPath(certPath, "certificate_chain"))
		if err != nil {
			return c, err
		}
		key, err := dataSource(cert.GetPrivateKey(), joinPath(certPath, "private_key"))
		if err != nil {
			return c, err
		}
		c.Certificates = append(c.Certificates, TLSCertificate{CertificateChain: chain, PrivateKey: key})
	}
	if vc := pb.GetValidationContext(); vc != nil {
		vcPath := joinPath(path, "validation_context")
		if vc.GetTrustedCa() != nil {
			ca, err := dataSource(vc.GetTrustedCa(), joinPath(vcPath, "trusted_ca"))
			if err != nil {
				return c, err
			}
			c.TrustedCA = &ca
		}
		for i, m := range vc.GetMatchTypedSubjectAltNames() {
			mPath := indexPath(joinPath(vcPath, "match_typed_subject_alt_names"), i)
			sanType, ok := sanTypes[m.GetSanType()]
			if !ok {
				return c, notSupported(joinPath(mPath, "san_type"), m.GetSanType().String())
			}
			sm, err := buildStringMatcher(m.GetMatcher(), joinPath(mPath, "matcher"))
			if err != nil {
				return c, err
			}
			c.MatchSANs = append(c.MatchSANs, SANMatcher{Type: sanType, Matcher: sm})
		}
	}
	return c, nil
}

// dataSource reads a DataSource that must be set: a file name (kept as
// written; the proxy reads it when it starts) or inline bytes/string.
func dataSource(pb *corev3.DataSource, path string) (DataSource, error) {
	switch s := pb.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		return DataSource{Filename: s.Filename}, nil
	case *corev3.DataSource_InlineBytes:
		return DataSource{Inline: s.InlineBytes}, nil
	case *corev3.DataSource_InlineString:
		return DataSource{Inline: []byte(s.InlineString)}, nil
	}
	return DataSource{}, fieldError(path, "missing filename, inline_bytes or inline_string")
}

// buildStringMatcher reads a StringMatcher (SAN and header matchers).
func buildStringMatcher(pb *matcherv3.StringMatcher, path string) (StringMatcher, error) {
	m := StringMatcher{IgnoreCase: pb.GetIgnoreCase()}
	var err error
	switch p := pb.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.Exact = &p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.Prefix = &p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.Suffix = &p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.Contains = &p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		m.SafeRegex, err = compileRegex(p.SafeRegex, joinPath(path, "safe_regex"))
	default:
		return m, fieldError(path, "missing exact, prefix, suffix, contains or safe_regex")
	}
	return m, err
}
