package wasmproxy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// inlineListener puts into a delivered listener l (a copy) what it asks
// of ADS: routes and HTTP filter configs (inlineHCM) and the TLS secrets
// of its filter chains' DownstreamTlsContexts (inlineSDS), recording the
// names in rds, ecds and sds. It reports false when the listener must
// warm: a filter config or a secret has not arrived. r.mu is held.
func (r *xdsResources) inlineListener(l *listenerv3.Listener, rds map[string][]string, ecds, sds map[string]bool) bool {
	ready := true
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if !r.inlineHCM(f, rds, ecds) {
				ready = false
			}
		}
		if !r.inlineSDS(fc.GetTransportSocket(), sds) {
			ready = false
		}
	}
	return ready
}

var downstreamTLSName = (&tlsv3.DownstreamTlsContext{}).ProtoReflect().Descriptor().FullName()

// inlineSDS replaces, in a DownstreamTlsContext transport socket, each
// tls_certificate_sds_secret_configs and validation_context_sds_secret_config
// (and combined_validation_context) whose sds_config is ADS with the
// delivered secret, as Envoy's SDS provides it: the certificate joins
// tls_certificates, the validation context becomes validation_context
// (merged over combined_validation_context's default, as Envoy merges
// them). Secret configs of another source are left for the build to
// refuse. It reports false when a secret has not arrived.
func (r *xdsResources) inlineSDS(ts *corev3.TransportSocket, sds map[string]bool) bool {
	tc := ts.GetTypedConfig()
	if tc == nil || tc.MessageName() != downstreamTLSName {
		return true
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := tc.UnmarshalTo(ctx); err != nil {
		return true // the build reports it
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		return true
	}
	ready, changed := true, false
	// A secret that has not arrived, or is not of the kind asked for (a
	// certificate where a validation context is wanted: served as is,
	// it would switch validation off), keeps the listener warming.
	secret := func(c *tlsv3.SdsSecretConfig, usable func(*tlsv3.Secret) bool) (*tlsv3.Secret, bool) {
		sds[c.GetName()] = true
		s, ok := r.secrets[c.GetName()]
		if !ok || !usable(s) {
			ready = false
			return nil, false
		}
		return s, true
	}
	isCert := func(s *tlsv3.Secret) bool { return s.GetTlsCertificate() != nil }
	isValidation := func(s *tlsv3.Secret) bool { return s.GetValidationContext() != nil }
	var kept []*tlsv3.SdsSecretConfig
	for _, c := range common.GetTlsCertificateSdsSecretConfigs() {
		if c.GetSdsConfig().GetAds() == nil {
			kept = append(kept, c)
			continue
		}
		changed = true
		if s, ok := secret(c, isCert); ok {
			common.TlsCertificates = append(common.TlsCertificates, proto.Clone(s.GetTlsCertificate()).(*tlsv3.TlsCertificate))
		}
	}
	common.TlsCertificateSdsSecretConfigs = kept
	switch vc := common.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if vc.ValidationContextSdsSecretConfig.GetSdsConfig().GetAds() != nil {
			changed = true
			if s, ok := secret(vc.ValidationContextSdsSecretConfig, isValidation); ok {
				common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: proto.Clone(s.GetValidationContext()).(*tlsv3.CertificateValidationContext)}
			}
		}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cv := vc.CombinedValidationContext
		if cv.GetValidationContextSdsSecretConfig().GetSdsConfig().GetAds() != nil {
			changed = true
			if s, ok := secret(cv.GetValidationContextSdsSecretConfig(), isValidation); ok {
				merged := proto.Clone(s.GetValidationContext()).(*tlsv3.CertificateValidationContext)
				proto.Merge(merged, cv.GetDefaultValidationContext())
				common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: merged}
			}
		}
	}
	if changed {
		if a, err := anypb.New(ctx); err == nil {
			ts.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
		}
	}
	return ready
}
