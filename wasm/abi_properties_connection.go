package wasm

import (
	"crypto/x509"
	"net"
	"net/netip"
	"strconv"

	"github.com/wasmproxy/wasmproxy/filter"
)

// connProperty resolves a stream-dependent property for a TCP connection
// context: the names that do not need an HTTP request (source.*,
// destination.*, connection.*, upstream.*, xds.*, filter state, values
// stored with proxy_set_property). Readable only from one of the
// connection's own callbacks.
func (inst *instance) connProperty(c *networkFilter, top []byte, rest [][]byte) ([]byte, status) {
	if !c.inCallback {
		return nil, statusNotFound
	}
	info := c.cb.Info()
	if info == nil {
		return nil, statusNotFound
	}
	if alias, ok := legacyAliases[string(top)]; ok {
		return inst.streamXDS(info, alias, rest)
	}
	switch string(top) {
	case "filter_state":
		return inst.filterStateProperty(info, rest)
	case "connection_id":
		return inst.leafInt(rest, info.ConnectionID)
	case "source":
		return inst.addressProperty(info.DownstreamAddr, rest)
	case "destination":
		return inst.addressProperty(info.LocalAddr, rest)
	case "connection":
		if v, st := inst.connectionProperty(info, rest); st != statusNotFound {
			return v, st
		}
	case "upstream":
		if v, st := inst.upstreamProperty(info, rest); st != statusNotFound {
			return v, st
		}
	}
	if len(rest) == 0 {
		if v, ok := info.FilterState.Get("wasm." + string(top)); ok {
			inst.scratch = append(inst.scratch[:0], v...)
			return inst.scratch, statusOK
		}
	}
	return nil, statusNotFound
}

// addressProperty is source.* / destination.*: "ip:port" and the port.
func (inst *instance) addressProperty(addr netip.AddrPort, rest [][]byte) ([]byte, status) {
	if len(rest) != 1 || !addr.IsValid() {
		return nil, statusNotFound
	}
	switch string(rest[0]) {
	case "address":
		return inst.value(addr.String()), statusOK
	case "port":
		return inst.intValue(uint64(addr.Port())), statusOK
	}
	return nil, statusNotFound
}

// connectionProperty is connection.<name> with Envoy's encodings: id an
// 8-byte uint; mtls a 1-byte bool (TLS and a peer certificate);
// requested_server_name the SNI ("" without one, TLS or not); the TLS
// facts only on a TLS connection (reference §2.3).
func (inst *instance) connectionProperty(info *filter.StreamInfo, rest [][]byte) ([]byte, status) {
	if len(rest) != 1 {
		return nil, statusNotFound
	}
	t := info.DownstreamTLS
	switch name := string(rest[0]); name {
	case "id":
		return inst.intValue(info.ConnectionID), statusOK
	case "mtls":
		return inst.boolValue(t.PeerCertificate() != nil), statusOK
	case "requested_server_name":
		if t == nil {
			return inst.value(""), statusOK
		}
		return inst.value(t.ServerName), statusOK
	default:
		return inst.tlsProperty(t, name)
	}
}

// upstreamProperty is upstream.<name>: the upstream host's address and
// port, the proxy's local address, and the upstream TLS facts.
func (inst *instance) upstreamProperty(info *filter.StreamInfo, rest [][]byte) ([]byte, status) {
	if len(rest) != 1 {
		return nil, statusNotFound
	}
	switch name := string(rest[0]); name {
	case "address":
		if info.UpstreamAddr == "" {
			return nil, statusNotFound
		}
		return inst.value(info.UpstreamAddr), statusOK
	case "port":
		_, port, err := net.SplitHostPort(info.UpstreamAddr)
		if err != nil {
			return nil, statusNotFound
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, statusNotFound
		}
		return inst.intValue(n), statusOK
	case "local_address":
		if !info.UpstreamLocalAddr.IsValid() {
			return nil, statusNotFound
		}
		return inst.value(info.UpstreamLocalAddr.String()), statusOK
	default:
		return inst.tlsProperty(info.UpstreamTLS, name)
	}
}

// tlsProperty resolves the TLS names shared by connection.* and
// upstream.*, as Envoy does: absent without TLS; subjects are strings
// (empty when no certificate); the first URI or DNS SAN, and the peer
// certificate's SHA-256 digest, are absent when there is none.
func (inst *instance) tlsProperty(t *filter.TLSInfo, name string) ([]byte, status) {
	if t == nil {
		return nil, statusNotFound
	}
	nonEmpty := func(s string) ([]byte, status) {
		if s == "" {
			return nil, statusNotFound
		}
		return inst.value(s), statusOK
	}
	var local, peer *x509.Certificate = t.LocalCertificate, t.PeerCertificate()
	switch name {
	case "tls_version":
		return inst.value(t.Version), statusOK
	case "subject_local_certificate":
		return inst.value(filter.CertificateSubject(local)), statusOK
	case "subject_peer_certificate":
		return inst.value(filter.CertificateSubject(peer)), statusOK
	case "uri_san_local_certificate":
		return nonEmpty(filter.FirstURISAN(local))
	case "uri_san_peer_certificate":
		return nonEmpty(filter.FirstURISAN(peer))
	case "dns_san_local_certificate":
		return nonEmpty(filter.FirstDNSSAN(local))
	case "dns_san_peer_certificate":
		return nonEmpty(filter.FirstDNSSAN(peer))
	case "sha256_peer_certificate_digest":
		return nonEmpty(t.PeerCertificateSHA256())
	}
	return nil, statusNotFound
}

// boolValue is Envoy's encoding of a bool property: one byte, 0 or 1.
func (inst *instance) boolValue(b bool) []byte {
	v := byte(0)
	if b {
		v = 1
	}
	inst.scratch = append(inst.scratch[:0], v)
	return inst.scratch
}
