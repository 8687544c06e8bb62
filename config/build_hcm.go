package config

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// buildHCMRequestHandling reads the connection manager fields of
// HCMRequestHandling (model_hcm.go) into h.
func buildHCMRequestHandling(pb *hcmv3.HttpConnectionManager, path string, h *HTTPConnectionManager) error {
	var err error
	if lr := pb.GetLocalReplyConfig(); lr != nil {
		if h.LocalReply, err = buildLocalReplyConfig(lr, joinPath(path, "local_reply_config")); err != nil {
			return err
		}
	}
	h.UseRemoteAddress = pb.GetUseRemoteAddress().GetValue()
	h.XFFNumTrustedHops = pb.GetXffNumTrustedHops()
	h.SkipXFFAppend = pb.GetSkipXffAppend()
	h.Via = pb.GetVia()
	h.AddUserAgent = pb.GetAddUserAgent().GetValue()
	if h.Via != "" && !validHeaderValue(h.Via) {
		return fieldError(joinPath(path, "via"), "not a valid header value")
	}
	for i, cr := range pb.GetInternalAddressConfig().GetCidrRanges() {
		p, err := cidrRange(cr, indexPath(joinPath(path, "internal_address_config.cidr_ranges"), i))
		if err != nil {
			return err
		}
		h.InternalAddresses = append(h.InternalAddresses, p)
	}
	h.NormalizePath = pb.GetNormalizePath().GetValue()
	h.MergeSlashes = pb.GetMergeSlashes()
	switch a := pb.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		// Envoy's default keeps them (no runtime override here).
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		h.PathWithEscapedSlashes = a.String()
	default:
		return fieldError(joinPath(path, "path_with_escaped_slashes_action"), "unknown value %d", a)
	}
	if t := pb.GetServerHeaderTransformation(); t != hcmv3.HttpConnectionManager_OVERWRITE {
		h.ServerHeaderTransformation = t.String()
	}
	if f := pb.GetForwardClientCertDetails(); f != hcmv3.HttpConnectionManager_SANITIZE {
		h.ForwardClientCertDetails = f.String()
	}
	if d := pb.GetSetCurrentClientCertDetails(); d != nil {
		h.ClientCertDetails = &ClientCertDetails{Subject: d.GetSubject().GetValue(), URI: d.GetUri(), Cert: d.GetCert(), Chain: d.GetChain(), DNS: d.GetDns()}
	}
	return nil
}

// cidrRange reads a CidrRange as "addr/len", the host bits cleared as
// Envoy's CidrRange does.
func cidrRange(pb *corev3.CidrRange, path string) (string, error) {
	addr, err := netip.ParseAddr(pb.GetAddressPrefix())
	if err != nil {
		return "", fieldError(joinPath(path, "address_prefix"), "not an IP address (%q)", pb.GetAddressPrefix())
	}
	bits := int(pb.GetPrefixLen().GetValue())
	if bits > addr.BitLen() {
		return "", fieldError(joinPath(path, "prefix_len"), "%d is longer than the address (%d bits)", bits, addr.BitLen())
	}
	prefix, err := addr.Unmap().Prefix(bits)
	if err != nil {
		return "", fieldError(path, "%v", err)
	}
	return prefix.String(), nil
}

// validHeaderValue: no control characters other than tab (RFC 9110
// field-value), so the value can go on the wire.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// buildLocalReplyConfig reads local_reply_config; format strings are
// parsed here so a bad operator names its field.
func buildLocalReplyConfig(pb *hcmv3.LocalReplyConfig, path string) (*LocalReplyConfig, error) {
	lr := &LocalReplyConfig{}
	var err error
	if bf := pb.GetBodyFormat(); bf != nil {
		if lr.BodyFormat, err = buildBodyFormat(bf, joinPath(path, "body_format")); err != nil {
			return nil, err
		}
	}
	for i, pm := range pb.GetMappers() {
		mp := indexPath(joinPath(path, "mappers"), i)
		m := &ResponseMapper{StatusCode: pm.GetStatusCode().GetValue()}
		if pm.GetFilter() == nil {
			return nil, fieldError(joinPath(mp, "filter"), "missing: each mapper needs a filter (as on Envoy)")
		}
		if m.Filter, err = buildAccessLogFilter(pm.GetFilter(), joinPath(mp, "filter")); err != nil {
			return nil, err
		}
		if body := pm.GetBody(); body != nil {
			var text string
			switch s := body.GetSpecifier().(type) {
			case *corev3.DataSource_InlineString:
				text = s.InlineString
			case *corev3.DataSource_InlineBytes:
				text = string(s.InlineBytes)
			case *corev3.DataSource_Filename:
				return nil, notSupported(joinPath(mp, "body.filename"), "use inline_string or inline_bytes")
			}
			m.Body = &text
		}
		if bf := pm.GetBodyFormatOverride(); bf != nil {
			if m.BodyFormatOverride, err = buildBodyFormat(bf, joinPath(mp, "body_format_override")); err != nil {
				return nil, err
			}
		}
		if m.HeadersToAdd, err = buildHeaderMutations(pm.GetHeadersToAdd(), nil, joinPath(mp, "headers_to_add"), ""); err != nil {
			return nil, err
		}
		lr.Mappers = append(lr.Mappers, m)
	}
	return lr, nil
}

// buildBodyFormat reads a SubstitutionFormatString used as a local
// reply body, with Envoy's content type rule.
func buildBodyFormat(pb *corev3.SubstitutionFormatString, path string) (*BodyFormat, error) {
	// The access log's reader knows the format kinds; its model type
	// carries them here.
	var al AccessLog
	if err := buildLogFormat(pb, path, &al); err != nil {
		return nil, err
	}
	formatPath := path
	switch pb.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		formatPath = joinPath(path, "text_format")
	case *corev3.SubstitutionFormatString_TextFormatSource:
		formatPath = joinPath(path, "text_format_source")
	case *corev3.SubstitutionFormatString_JsonFormat:
		formatPath = joinPath(path, "json_format")
	}
	if err := checkLogFormat(&al, formatPath); err != nil {
		return nil, err
	}
	bf := &BodyFormat{Text: al.Format, JSON: al.JSON, OmitEmptyValues: al.OmitEmptyValues, ContentType: pb.GetContentType()}
	if bf.ContentType == "" {
		bf.ContentType = "text/plain"
		if bf.JSON != nil {
			bf.ContentType = "application/json"
		}
	}
	return bf, nil
}
