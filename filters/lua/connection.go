package lua

import (
	"crypto/x509"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
)

// The downstream connection as Envoy's Lua API shows it:
// handle:connection():ssl() and handle:streamInfo():downstreamSslConnection()
// give the same TLS object, nil on a plaintext connection; the stream
// info also gives the addresses and the SNI.

const (
	connType = "envoy.Connection"
	sslType  = "envoy.SslConnection"
)

// registerConnectionTypes adds the connection's and its TLS session's
// metatables; the stream info's extra methods join infoType's.
func registerConnectionTypes(L *glua.LState, reg func(string, map[string]glua.LGFunction)) {
	reg(connType, map[string]glua.LGFunction{"ssl": connSSL})
	tlsInfo := func(f func(L *glua.LState, t *filter.TLSInfo) int) glua.LGFunction {
		return func(L *glua.LState) int {
			ud := L.CheckUserData(1)
			t, ok := ud.Value.(*filter.TLSInfo)
			if !ok || ud.Metatable != L.GetTypeMetatable(sslType) {
				L.ArgError(1, sslType+" expected (call methods with ':')")
			}
			return f(L, t)
		}
	}
	str := func(f func(t *filter.TLSInfo) string) glua.LGFunction {
		return tlsInfo(func(L *glua.LState, t *filter.TLSInfo) int {
			L.Push(glua.LString(f(t)))
			return 1
		})
	}
	list := func(f func(t *filter.TLSInfo) []string) glua.LGFunction {
		return tlsInfo(func(L *glua.LState, t *filter.TLSInfo) int {
			tb := L.NewTable()
			for _, s := range f(t) {
				tb.Append(glua.LString(s))
			}
			L.Push(tb)
			return 1
		})
	}
	peer := func(t *filter.TLSInfo) *x509.Certificate { return t.PeerCertificate() }
	// A time is seconds since the epoch, or 0 without a certificate
	// (Envoy's absl::optional left empty reads as 0 in Lua).
	seconds := func(f func(c *x509.Certificate) int64) glua.LGFunction {
		return tlsInfo(func(L *glua.LState, t *filter.TLSInfo) int {
			var n int64
			if c := peer(t); c != nil {
				n = f(c)
			}
			L.Push(glua.LNumber(n))
			return 1
		})
	}
	reg(sslType, map[string]glua.LGFunction{
		"peerCertificatePresented": tlsInfo(func(L *glua.LState, t *filter.TLSInfo) int {
			L.Push(glua.LBool(peer(t) != nil))
			return 1
		}),
		"sha256PeerCertificateDigest": str((*filter.TLSInfo).PeerCertificateSHA256),
		"serialNumberPeerCertificate": str(func(t *filter.TLSInfo) string { return serialNumber(peer(t)) }),
		"issuerPeerCertificate": str(func(t *filter.TLSInfo) string {
			if c := peer(t); c != nil {
				return c.Issuer.String()
			}
			return ""
		}),
		"subjectPeerCertificate":  str(func(t *filter.TLSInfo) string { return filter.CertificateSubject(peer(t)) }),
		"subjectLocalCertificate": str(func(t *filter.TLSInfo) string { return filter.CertificateSubject(t.LocalCertificate) }),
		"uriSanPeerCertificate":   list(func(t *filter.TLSInfo) []string { return uriSANs(peer(t)) }),
		"uriSanLocalCertificate":  list(func(t *filter.TLSInfo) []string { return uriSANs(t.LocalCertificate) }),
		"dnsSansPeerCertificate":  list(func(t *filter.TLSInfo) []string { return dnsSANs(peer(t)) }),
		"dnsSansLocalCertificate": list(func(t *filter.TLSInfo) []string { return dnsSANs(t.LocalCertificate) }),
		"validFromPeerCertificate": seconds(func(c *x509.Certificate) int64 {
			return c.NotBefore.Unix()
		}),
		"expirationPeerCertificate": seconds(func(c *x509.Certificate) int64 {
			return c.NotAfter.Unix()
		}),
		"urlEncodedPemEncodedPeerCertificate": str(func(t *filter.TLSInfo) string {
			if c := peer(t); c != nil {
				return filter.URLEncodedPEM(c)
			}
			return ""
		}),
		"urlEncodedPemEncodedPeerCertificateChain": str(func(t *filter.TLSInfo) string {
			out := ""
			for _, c := range t.PeerCertificates {
				out += filter.URLEncodedPEM(c)
			}
			return out
		}),
		"tlsVersion": str(func(t *filter.TLSInfo) string { return t.Version }),
	})
}

// serialNumber is the certificate's serial number in lower-case hex, a
// whole number of bytes, as Envoy (BoringSSL's BN_bn2hex, lowered)
// prints it; "" without a certificate.
func serialNumber(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	s := c.SerialNumber.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

func uriSANs(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	out := make([]string, 0, len(c.URIs))
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

func dnsSANs(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	return c.DNSNames
}

// downstreamTLS is the stream's downstream TLS session, or nil.
func downstreamTLS(co *coroutine) *filter.TLSInfo {
	if info := co.s.cb.Info(); info != nil {
		return info.DownstreamTLS
	}
	return nil
}

// pushSSL pushes the TLS object of t, or nil on a plaintext connection.
func pushSSL(L *glua.LState, t *filter.TLSInfo) int {
	if t == nil {
		L.Push(glua.LNil)
	} else {
		L.Push(object(L, sslType, t))
	}
	return 1
}

func handleConnection(L *glua.LState) int {
	co := check(L, handleType)
	L.Push(object(L, connType, co))
	return 1
}

func connSSL(L *glua.LState) int { return pushSSL(L, downstreamTLS(check(L, connType))) }

func infoDownstreamSSL(L *glua.LState) int { return pushSSL(L, downstreamTLS(check(L, infoType))) }

// infoAddress pushes one of the stream's addresses as "ip:port", or nil
// when the proxy does not know it.
func infoAddress(pick func(info *filter.StreamInfo) string) glua.LGFunction {
	return func(L *glua.LState) int {
		co := check(L, infoType)
		if info := co.s.cb.Info(); info != nil {
			if a := pick(info); a != "" {
				L.Push(glua.LString(a))
				return 1
			}
		}
		L.Push(glua.LNil)
		return 1
	}
}

var (
	infoLocalAddress = infoAddress(func(info *filter.StreamInfo) string {
		if !info.LocalAddr.IsValid() {
			return ""
		}
		return info.LocalAddr.String()
	})
	// The direct remote address is the connection's peer. Envoy's
	// downstreamRemoteAddress may differ (x-forwarded-for with
	// xff_num_trusted_hops); the proxy keeps only the peer's, so both
	// report it.
	infoRemoteAddress = infoAddress(func(info *filter.StreamInfo) string {
		if !info.DownstreamAddr.IsValid() {
			return ""
		}
		return info.DownstreamAddr.String()
	})
)

// infoRequestedServerName is the SNI the client asked for, "" without.
func infoRequestedServerName(L *glua.LState) int {
	co := check(L, infoType)
	name := ""
	if t := downstreamTLS(co); t != nil {
		name = t.ServerName
	}
	L.Push(glua.LString(name))
	return 1
}
