package filter

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
)

// NetworkStatus is a network filter's answer to a connection or data
// callback (Envoy's Network::FilterStatus).
type NetworkStatus int

const (
	// NetworkContinue passes the data (or the new connection) on to the
	// next filter.
	NetworkContinue NetworkStatus = 0
	// NetworkStopIteration holds the data at this filter. Downstream data
	// stays in the connection's read buffer: the next read appends to it
	// and iteration restarts from the first filter with everything held,
	// as Envoy does, until a filter calls ContinueReading. Upstream data
	// is likewise held and grows with every upstream read.
	NetworkStopIteration NetworkStatus = 1
)

// PeerType says who closed a connection (proxy_peer_type_t).
type PeerType int

const (
	PeerUnknown PeerType = 0
	// PeerLocal: the proxy closed it.
	PeerLocal PeerType = 1
	// PeerRemote: the peer closed or reset it.
	PeerRemote PeerType = 2
)

// NetworkFilter sees one proxied TCP connection: it is both Envoy's read
// filter (downstream data, in chain order) and its write filter
// (upstream data, in reverse chain order). Every method is called from
// the connection's own goroutine, one at a time, in this order:
// OnNewConnection once; then OnDownstreamData and OnUpstreamData as data
// arrives; OnUpstreamClose when the upstream connection has ended (if
// there was one); OnDownstreamClose once; then OnDestroy, after which no
// call follows. A filter that iteration never reached still gets the
// close calls and OnDestroy.
type NetworkFilter interface {
	// OnNewConnection runs when the connection is accepted (after its TLS
	// handshake). A stop status holds the filters after this one, and the
	// upstream connection, until this filter calls ContinueReading.
	OnNewConnection() NetworkStatus
	// OnDownstreamData gets everything read from the client and not yet
	// passed on: after a stop the proxy keeps the data and calls again
	// with more. The filter may read and replace data.Bytes, and use the
	// slice's spare capacity (beyond its length) to edit in place; it
	// must not keep the slice after the call. endStream is true once the
	// client has half-closed (sent FIN or close_notify).
	OnDownstreamData(data *Buffer, endStream bool) NetworkStatus
	// OnUpstreamData is OnDownstreamData for bytes from the upstream on
	// their way to the client.
	OnUpstreamData(data *Buffer, endStream bool) NetworkStatus
	// OnUpstreamClose reports that the upstream connection has closed.
	OnUpstreamClose(peer PeerType)
	// OnDownstreamClose reports that the client connection has closed.
	OnDownstreamClose(peer PeerType)
	// OnDestroy releases the filter.
	OnDestroy()
}

// NetworkCallbacks are the proxy's side of a network filter. Methods are
// safe to call from any goroutine; actions take effect on the
// connection's goroutine after the filter call in progress returns.
type NetworkCallbacks interface {
	// ContinueReading resumes iteration paused by this filter (from
	// OnNewConnection or OnDownstreamData) with the next filter and the
	// data held so far.
	ContinueReading()
	// Close ends the connection: data already passed on is flushed, then
	// both the client and the upstream connection are closed. details
	// says why, for logs.
	Close(details string)
	// Info describes the connection for properties and logs. Only safe on
	// the connection's goroutine.
	Info() *StreamInfo
}

// NetworkFactory makes the filter instance for each new connection. It
// is built once per configured network filter and shared by every
// connection.
type NetworkFactory interface {
	NewNetworkFilter(cb NetworkCallbacks) NetworkFilter
}

// TLSInfo describes one side's TLS session, for the connection.* and
// upstream.* properties. It is filled once the handshake has completed
// and not changed afterwards.
type TLSInfo struct {
	// Version is the protocol version as Envoy names it: "TLSv1.2",
	// "TLSv1.3".
	Version string
	// ServerName is the SNI: requested by the client (downstream) or sent
	// by the proxy (upstream); "" when none.
	ServerName string
	// NegotiatedProtocol is the ALPN result; "" when none.
	NegotiatedProtocol string
	// PeerCertificates are the certificates the peer presented, leaf
	// first; empty when it presented none.
	PeerCertificates []*x509.Certificate
	// LocalCertificate is the certificate this side presented; nil when
	// none.
	LocalCertificate *x509.Certificate
}

// PeerCertificate is the peer's leaf certificate, or nil.
func (t *TLSInfo) PeerCertificate() *x509.Certificate {
	if t == nil || len(t.PeerCertificates) == 0 {
		return nil
	}
	return t.PeerCertificates[0]
}

// PeerCertificateSHA256 is the hex SHA-256 digest of the peer's leaf
// certificate (DER), as Envoy reports sha256_peer_certificate_digest;
// "" when there is none.
func (t *TLSInfo) PeerCertificateSHA256() string {
	c := t.PeerCertificate()
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// CertificateSubject is a certificate's subject in RFC 2253 form, most
// specific attribute first ("CN=alice,O=Acme,C=US"), which is how Envoy
// prints subject_peer_certificate; "" for nil.
func CertificateSubject(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Subject.String()
}

// FirstURISAN is the certificate's first URI subject alternative name
// (a SPIFFE id under Istio), or "".
func FirstURISAN(c *x509.Certificate) string {
	if c == nil || len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

// FirstDNSSAN is the certificate's first DNS subject alternative name,
// or "".
func FirstDNSSAN(c *x509.Certificate) string {
	if c == nil || len(c.DNSNames) == 0 {
		return ""
	}
	return c.DNSNames[0]
}

// URLEncodedPEM is a certificate's PEM block with the characters that
// may not stand in a header value or a query percent-encoded (newline,
// space, '+', '/', '='), as Envoy's urlEncodedPemEncodedPeerCertificate
// gives it (the Lua API, the XFCC header's Cert).
func URLEncodedPEM(c *x509.Certificate) string {
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	return pemEscaper.Replace(string(b))
}

var pemEscaper = strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D")
