package proxy

import (
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
)

// connOpts are the transport socket options of one upstream request, as
// Envoy's router derives them from upstream_http_protocol_options: the
// SNI to send (auto_sni) and the name the certificate must carry
// (auto_san_validation). Connections are pooled per options, as Envoy
// hashes them into its connection pool key.
type connOpts struct {
	sni, san string
}

// poolKey is the idle-stack key of connections to addr with o.
func (o connOpts) poolKey(addr string) string {
	if o == (connOpts{}) {
		return addr
	}
	return addr + "\x00" + o.sni + "\x00" + o.san
}

// requestConnOpts derives a request's connOpts: from the request's host
// (its :authority after the route's rewrites), or the value of
// override_auto_sni_header when the request has it (all its values,
// comma-joined, as Envoy reads it), with any port removed. An IP address
// is no SNI (Envoy sends none) but is still what the certificate must
// carry under auto_san_validation.
func requestConnOpts(u *config.UpstreamHTTP, req *http.Request, head *upstreamHead) connOpts {
	value := req.Host
	if name := u.OverrideAutoSNIHeader; name != "" {
		if v := requestHeaderValues(req, head, name); v != "" {
			value = v
		}
	}
	host, isIP := authorityHost(value)
	var o connOpts
	if host == "" {
		return o
	}
	if u.AutoSNI && !isIP {
		o.sni = host
	}
	if u.AutoSANValidation {
		o.san = host
	}
	return o
}

// requestHeaderValues is every value of the lower-case field name of the
// upstream request, comma-joined.
func requestHeaderValues(req *http.Request, head *upstreamHead, name string) string {
	if name == ":authority" || name == "host" {
		return req.Host
	}
	var vs []string
	if req.Header == nil && head != nil {
		for _, p := range head.pairs {
			if strings.EqualFold(p.Key, name) {
				vs = append(vs, p.Value)
			}
		}
	} else {
		vs = req.Header.Values(name)
	}
	return strings.Join(vs, ",")
}

// authorityHost is the host of an authority without its port, as
// Envoy's parseAuthority reads it, and whether it is an IP address.
func authorityHost(authority string) (host string, isIP bool) {
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return authority, false
		}
		inner := authority[1:end]
		if _, err := netip.ParseAddr(inner); err == nil {
			return inner, true
		}
		return authority[:end+1], false
	}
	host = authority
	if h, port, err := net.SplitHostPort(authority); err == nil && port != "" && allDigits(port) {
		host = h
	}
	_, err := netip.ParseAddr(host)
	return host, err == nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// sanListMatch reports whether a subject alternative name of c is one of
// names, as Envoy's SAN override list is checked: a DNS name equal to the
// name (without regard to case) or a wildcard "*.x" standing for one
// label of it, an IP address or a URI equal to it.
func sanListMatch(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		for _, d := range c.DNSNames {
			if dnsNameMatch(n, d) {
				return true
			}
		}
		for _, ip := range c.IPAddresses {
			if ip.String() == n {
				return true
			}
		}
		for _, u := range c.URIs {
			if u.String() == n {
				return true
			}
		}
	}
	return false
}

// dnsNameMatch: pattern is a certificate's DNS SAN, perhaps "*.x".
func dnsNameMatch(name, pattern string) bool {
	name, pattern = strings.ToLower(name), strings.ToLower(pattern)
	if name == pattern {
		return true
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		dot := strings.IndexByte(name, '.')
		return dot > 0 && name[dot+1:] == rest
	}
	return false
}
