package wasmproxy

import (
	"fmt"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/xds"
)

// inlineListener puts into a delivered listener l (a copy) what it asks
// of ADS: routes and HTTP filter configs (inlineHCM) and the TLS secrets
// of its filter chains' DownstreamTlsContexts (inlineSDS), recording the
// names in rds, ecds and sds. It reports false when the listener must
// warm: a filter config or a secret has not arrived (within its initial
// fetch timeout). A chain whose secrets did not arrive in time closes
// every connection (secretsNotReady). r.mu is held.
func (r *xdsResources) inlineListener(l *listenerv3.Listener, in *inlined, now time.Time) bool {
	ready := true
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for i, fc := range chains {
		at := fmt.Sprintf("filter_chains[%d]", i)
		if i == len(l.GetFilterChains()) {
			at = "default_filter_chain"
		}
		for j, f := range fc.GetFilters() {
			if !r.inlineHCM(f, in, now, fmt.Sprintf("%s.filters[%d]", at, j)) {
				ready = false
			}
		}
		var tlsContext *anypb.Any
		if tc := fc.GetTransportSocket().GetTypedConfig(); tc != nil {
			tlsContext = proto.Clone(tc).(*anypb.Any)
		}
		switch r.inlineSDS(fc.GetTransportSocket(), in, now, at+".transport_socket") {
		case sdsWarming:
			ready = false
		case sdsNotReady:
			secretsNotReady(l, fc, tlsContext)
		}
	}
	return ready
}

// sdsState is how far a TLS context's SDS secrets are.
type sdsState int

const (
	// sdsReady: every secret arrived (or none is asked for).
	sdsReady sdsState = iota
	// sdsWarming: one has not arrived, and its initial fetch timeout
	// has not passed: what holds the context warms.
	sdsWarming
	// sdsNotReady: one did not arrive within its initial fetch timeout:
	// what holds the context serves, failing its connections (Envoy's
	// NotReadySslSocket): a listener closes them, a cluster's fail.
	sdsNotReady
)

// secretsNotReady makes filter chain fc of listener l, whose TLS
// context (tlsContext, as delivered) lacks a secret past its initial
// fetch timeout, close every connection at once, as Envoy's
// NotReadySslSocket resets them: its transport socket goes, and the
// first network filter is the one counting
// listener.<address>.server_ssl_socket_factory.downstream_context_secrets_not_ready,
// its typed_config a TypedExtensionConfig naming that stat prefix and
// holding the TLS context that is not ready.
func secretsNotReady(l *listenerv3.Listener, fc *listenerv3.FilterChain, tlsContext *anypb.Any) {
	sa := l.GetAddress().GetSocketAddress()
	prefix := proxy.ListenerStatPrefix(&config.Listener{StatPrefix: l.GetStatPrefix(),
		Address: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))})
	if tlsContext == nil {
		tlsContext = mustAny(&tlsv3.DownstreamTlsContext{})
	}
	marker := mustAny(&corev3.TypedExtensionConfig{Name: prefix, TypedConfig: tlsContext})
	fc.TransportSocket = nil
	fc.Filters = append([]*listenerv3.Filter{{Name: secretsNotReadyName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: marker}}}, fc.Filters...)
}

// secretsNotReadyName is the network filter secretsNotReady puts first
// in a chain. Registered here, by the one part of the proxy that puts it
// in a chain.
const secretsNotReadyName = "wasmproxy.sds.secrets_not_ready"

func init() {
	filters.RegisterNetwork(&filters.NativeNetwork{
		Name:     secretsNotReadyName,
		Internal: true,
		Config:   (&corev3.TypedExtensionConfig{}).ProtoReflect().Descriptor().FullName(),
		Parse: func(msg proto.Message, _ string) (any, error) {
			ec, _ := msg.(*corev3.TypedExtensionConfig)
			return ec.GetName(), nil
		},
		New: func(cfg any, env filters.Env) (filter.NetworkFactory, error) {
			f := &notReadyTLS{}
			if prefix, _ := cfg.(string); env.Stats != nil && prefix != "" {
				f.count = env.Stats.Counter(prefix + "server_ssl_socket_factory.downstream_context_secrets_not_ready")
			}
			return f, nil
		},
	})
}

// notReadyTLS closes each connection as it is accepted, counting it.
type notReadyTLS struct{ count *stats.Counter }

func (f *notReadyTLS) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &notReadyConn{f: f, cb: cb}
}

type notReadyConn struct {
	f  *notReadyTLS
	cb filter.NetworkCallbacks
}

func (c *notReadyConn) OnNewConnection() filter.NetworkStatus {
	if c.f.count != nil {
		c.f.count.Inc()
	}
	c.cb.Close("downstream_context_secrets_not_ready")
	return filter.NetworkStopIteration
}
func (c *notReadyConn) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkStopIteration
}
func (c *notReadyConn) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkStopIteration
}
func (c *notReadyConn) OnUpstreamClose(filter.PeerType)   {}
func (c *notReadyConn) OnDownstreamClose(filter.PeerType) {}
func (c *notReadyConn) OnDestroy()                        {}

var (
	downstreamTLSName = (&tlsv3.DownstreamTlsContext{}).ProtoReflect().Descriptor().FullName()
	upstreamTLSName   = (&tlsv3.UpstreamTlsContext{}).ProtoReflect().Descriptor().FullName()
)

// inlineSDS replaces, in a DownstreamTlsContext (listener) or
// UpstreamTlsContext (cluster) transport socket, each
// tls_certificate_sds_secret_configs and validation_context_sds_secret_config
// (and combined_validation_context) whose sds_config is ADS with the
// delivered secret, as Envoy's SDS provides it: the certificate joins
// tls_certificates, the validation context becomes validation_context
// (merged over combined_validation_context's default, as Envoy merges
// them). Secret configs of another source are left for the build to
// refuse. It records the names in sds and reports whether a secret has
// not arrived, and then whether its initial fetch timeout passed.
func (r *xdsResources) inlineSDS(ts *corev3.TransportSocket, in *inlined, now time.Time, at string) sdsState {
	tc := ts.GetTypedConfig()
	if tc == nil {
		return sdsReady
	}
	var ctx interface {
		proto.Message
		GetCommonTlsContext() *tlsv3.CommonTlsContext
	}
	switch tc.MessageName() {
	case downstreamTLSName:
		ctx = &tlsv3.DownstreamTlsContext{}
	case upstreamTLSName:
		ctx = &tlsv3.UpstreamTlsContext{}
	default:
		return sdsReady
	}
	if err := tc.UnmarshalTo(ctx); err != nil {
		return sdsReady // the build reports it
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		return sdsReady
	}
	state, changed := r.inlineCommonTLS(common, in, now, at+".typed_config.common_tls_context")
	if changed {
		if a, err := anypb.New(ctx); err == nil {
			ts.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
		}
	}
	return state
}

// inlineCommonTLS is inlineSDS on the common part of a TLS context at
// path at.
func (r *xdsResources) inlineCommonTLS(common *tlsv3.CommonTlsContext, in *inlined, now time.Time, at string) (state sdsState, changed bool) {
	// secret subscribes the secret c names, if its sds_config is a
	// source the proxy reads (false: c is left for the build to
	// refuse). A secret that has not arrived, or is not of the kind
	// asked for (a certificate where a validation context is wanted:
	// served as is, it would switch validation off), keeps the listener
	// warming until its initial fetch timeout, then not ready (s nil).
	secret := func(c *tlsv3.SdsSecretConfig, cat string, usable func(*tlsv3.Secret) bool) (s *tlsv3.Secret, read bool) {
		if !in.source(c.GetSdsConfig(), xds.SecretType, c.GetName(), cat+".sds_config") {
			return nil, false
		}
		changed = true
		s, ok := r.secrets[c.GetName()]
		if !ok || !usable(s) {
			key := "sds/" + c.GetName()
			in.fetching[key] = fetchTimeout(c.GetSdsConfig())
			switch {
			case r.waits(key, now):
				state = sdsWarming
			case state == sdsReady:
				state = sdsNotReady
			}
			return nil, true
		}
		return s, true
	}
	isCert := func(s *tlsv3.Secret) bool { return s.GetTlsCertificate() != nil }
	isValidation := func(s *tlsv3.Secret) bool { return s.GetValidationContext() != nil }
	var kept []*tlsv3.SdsSecretConfig
	for i, c := range common.GetTlsCertificateSdsSecretConfigs() {
		s, read := secret(c, fmt.Sprintf("%s.tls_certificate_sds_secret_configs[%d]", at, i), isCert)
		if !read {
			kept = append(kept, c)
			continue
		}
		if s != nil {
			common.TlsCertificates = append(common.TlsCertificates, proto.Clone(s.GetTlsCertificate()).(*tlsv3.TlsCertificate))
		}
	}
	common.TlsCertificateSdsSecretConfigs = kept
	switch vc := common.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if s, _ := secret(vc.ValidationContextSdsSecretConfig, at+".validation_context_sds_secret_config", isValidation); s != nil {
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: proto.Clone(s.GetValidationContext()).(*tlsv3.CertificateValidationContext)}
		}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cv := vc.CombinedValidationContext
		if s, _ := secret(cv.GetValidationContextSdsSecretConfig(), at+".combined_validation_context.validation_context_sds_secret_config", isValidation); s != nil {
			merged := proto.Clone(s.GetValidationContext()).(*tlsv3.CertificateValidationContext)
			proto.Merge(merged, cv.GetDefaultValidationContext())
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: merged}
		}
	}
	return state, changed
}

var tcpProxyName = (&tcpproxyv3.TcpProxy{}).ProtoReflect().Descriptor().FullName()

// routesToAny reports whether listener l (with its routes inlined)
// sends traffic to one of clusters: a route's cluster or weighted
// clusters, or a tcp_proxy's. A listener naming a cluster that is not
// built would be a config error here, so it warms with the cluster.
func routesToAny(l *listenerv3.Listener, clusters map[string]bool) bool {
	if len(clusters) == 0 {
		return false
	}
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil {
				continue
			}
			switch tc.MessageName() {
			case hcmName:
				hcm := &hcmv3.HttpConnectionManager{}
				if tc.UnmarshalTo(hcm) != nil {
					continue
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, rt := range vh.GetRoutes() {
						if clusters[rt.GetRoute().GetCluster()] {
							return true
						}
						for _, wc := range rt.GetRoute().GetWeightedClusters().GetClusters() {
							if clusters[wc.GetName()] {
								return true
							}
						}
					}
				}
			case tcpProxyName:
				tp := &tcpproxyv3.TcpProxy{}
				if tc.UnmarshalTo(tp) != nil {
					continue
				}
				if clusters[tp.GetCluster()] {
					return true
				}
				for _, wc := range tp.GetWeightedClusters().GetClusters() {
					if clusters[wc.GetName()] {
						return true
					}
				}
			}
		}
	}
	return false
}
