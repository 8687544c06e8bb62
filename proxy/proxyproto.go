package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// The proxy_protocol listener filter: a connection starts with a PROXY
// protocol header (HAProxy's spec, v1 text or v2 binary) written by the
// load balancer in front, and the addresses it carries become the
// connection's remote and local addresses for everything after (the
// filter chain choice, x-forwarded-for, access logs, source.address,
// RBAC), as Envoy's filter restores them. A LOCAL (v2) or UNKNOWN (v1)
// header, or one for a family other than IPv4/IPv6, keeps the socket's
// addresses. A malformed header, a disallowed version, or (unless
// allow_requests_without_proxy_protocol) a connection that does not
// start with one, ends the connection. The header is read byte by byte
// up to what decides it, never past it, so the bytes after it reach the
// filter chain untouched.

var (
	ppV1Prefix = []byte("PROXY ")
	ppV2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// ppV1MaxLen is the longest v1 header, CRLF included (the spec's 107).
const ppV1MaxLen = 107

// proxyProtoStats are Envoy's proxy_proto.* listener counters.
type proxyProtoStats struct {
	found, disallowed, errored [3]*stats.Counter // by version (1, 2)
	notFoundAllowed            *stats.Counter
	notFoundDisallowed         *stats.Counter
}

func newProxyProtoStats(st *stats.Store, listenerPrefix string, cfg *config.ProxyProtocol) *proxyProtoStats {
	p := listenerPrefix + "proxy_proto."
	if cfg.StatPrefix != "" {
		p += cfg.StatPrefix + "."
	}
	s := &proxyProtoStats{
		notFoundAllowed:    st.Counter(p + "not_found_allowed"),
		notFoundDisallowed: st.Counter(p + "not_found_disallowed"),
	}
	for v := 1; v <= 2; v++ {
		vp := p + "versions.v" + strconv.Itoa(v) + "."
		s.found[v] = st.Counter(vp + "found")
		s.disallowed[v] = st.Counter(vp + "disallowed")
		s.errored[v] = st.Counter(vp + "error")
	}
	return s
}

// proxiedConn is a connection whose addresses came from its PROXY
// header; prefix holds bytes read while looking for a header that was
// not there (allow_requests_without_proxy_protocol), read again first.
type proxiedConn struct {
	net.Conn
	prefix        []byte
	remote, local net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
func (c *proxiedConn) LocalAddr() net.Addr  { return c.local }

func (c *proxiedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn is the connection under the header (for socket options).
func (c *proxiedConn) NetConn() net.Conn { return c.Conn }

var errNoProxyHeader = errors.New("proxy protocol: the connection does not start with a PROXY header")

// readProxyHeader reads a connection's PROXY header as cfg allows and
// returns the connection to go on with.
func readProxyHeader(raw net.Conn, cfg *config.ProxyProtocol, st *proxyProtoStats) (net.Conn, error) {
	c := &proxiedConn{Conn: raw, remote: raw.RemoteAddr(), local: raw.LocalAddr()}
	// Read while the bytes may still start either header.
	var got []byte
	var one [1]byte
	version := 0
	for version == 0 {
		if _, err := io.ReadFull(raw, one[:]); err != nil {
			return nil, fmt.Errorf("proxy protocol: %w", err)
		}
		got = append(got, one[0])
		v1 := bytes.HasPrefix(ppV1Prefix, got)
		v2 := bytes.HasPrefix(ppV2Sig, got)
		switch {
		case v1 && len(got) == len(ppV1Prefix):
			version = 1
		case v2 && len(got) == len(ppV2Sig):
			version = 2
		case !v1 && !v2:
			if !cfg.AllowWithout {
				st.notFoundDisallowed.Inc()
				return nil, errNoProxyHeader
			}
			st.notFoundAllowed.Inc()
			c.prefix = got
			return c, nil
		}
	}
	if version == 1 && cfg.DisallowV1 || version == 2 && cfg.DisallowV2 {
		st.disallowed[version].Inc()
		return nil, fmt.Errorf("proxy protocol: version %d is disallowed", version)
	}
	var err error
	if version == 1 {
		err = readProxyV1(raw, c)
	} else {
		err = readProxyV2(raw, c)
	}
	if err != nil {
		st.errored[version].Inc()
		return nil, err
	}
	st.found[version].Inc()
	return c, nil
}

// readProxyV1 reads the rest of a v1 header after "PROXY ": "TCP4|TCP6
// src dst sport dport\r\n", or "UNKNOWN…\r\n".
func readProxyV1(r io.Reader, c *proxiedConn) error {
	line := make([]byte, 0, ppV1MaxLen)
	line = append(line, ppV1Prefix...)
	var one [1]byte
	for !bytes.HasSuffix(line, []byte("\r\n")) {
		if len(line) >= ppV1MaxLen {
			return errors.New("proxy protocol v1: header longer than 107 bytes")
		}
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return fmt.Errorf("proxy protocol v1: %w", err)
		}
		line = append(line, one[0])
	}
	fields := strings.Split(string(line[len(ppV1Prefix):len(line)-2]), " ")
	if fields[0] == "UNKNOWN" {
		return nil
	}
	if len(fields) != 5 || fields[0] != "TCP4" && fields[0] != "TCP6" {
		return fmt.Errorf("proxy protocol v1: malformed header %q", line)
	}
	src, err1 := netip.ParseAddr(fields[1])
	dst, err2 := netip.ParseAddr(fields[2])
	sport, err3 := parsePort(fields[3])
	dport, err4 := parsePort(fields[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("proxy protocol v1: malformed header %q: %w", line, err)
	}
	if want4 := fields[0] == "TCP4"; src.Is4() != want4 || dst.Is4() != want4 || src.Zone() != "" || dst.Zone() != "" {
		return fmt.Errorf("proxy protocol v1: addresses do not match %s", fields[0])
	}
	c.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, sport))
	c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, dport))
	return nil
}

// parsePort reads a decimal port without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

// readProxyV2 reads the rest of a v2 header after its signature: version
// and command, family and transport, length, addresses, TLVs (skipped).
func readProxyV2(r io.Reader, c *proxiedConn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("proxy protocol v2: %w", err)
	}
	if hdr[0]>>4 != 2 {
		return fmt.Errorf("proxy protocol v2: version %d", hdr[0]>>4)
	}
	cmd := hdr[0] & 0x0f
	if cmd > 1 {
		return fmt.Errorf("proxy protocol v2: unknown command %d", cmd)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("proxy protocol v2: %w", err)
	}
	if cmd == 0 { // LOCAL: the balancer's own connection (a health check)
		return nil
	}
	var n int
	switch hdr[1] >> 4 {
	case 1: // AF_INET
		n = 4
	case 2: // AF_INET6
		n = 16
	default: // AF_UNSPEC, AF_UNIX: keep the socket's addresses
		return nil
	}
	if len(body) < 2*n+4 {
		return fmt.Errorf("proxy protocol v2: %d address bytes, want %d", len(body), 2*n+4)
	}
	src, _ := netip.AddrFromSlice(body[:n])
	dst, _ := netip.AddrFromSlice(body[n : 2*n])
	sport := binary.BigEndian.Uint16(body[2*n:])
	dport := binary.BigEndian.Uint16(body[2*n+2:])
	c.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, sport))
	c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, dport))
	return nil
}

// The writer: a PROXY protocol header the proxy sends an upstream before
// anything else on a connection (a terminated CONNECT's, under the
// route's connect_config.proxy_protocol_config), carrying the
// downstream connection's addresses as Envoy's generateProxyProtoHeader
// writes them: the client's (its remote) as the source, the address it
// reached (its local) as the destination, both as the connection knows
// them (after the proxy_protocol listener filter, those its header
// carried).

// proxyHeader is the header of version 1 or 2 for a connection from src
// to dst. An IPv4 address in IPv6 form counts as IPv4; a pair that is
// not of one family is written as IPv6 (each address in its IPv6 form).
// Invalid addresses (a connection with no IP address) give v1's UNKNOWN
// and v2's LOCAL command, as for a connection that has none to tell.
func proxyHeader(version int, src, dst netip.AddrPort) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	known := sa.IsValid() && da.IsValid()
	v4 := known && sa.Is4() && da.Is4()
	if known && !v4 {
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	if version == 1 {
		if !known {
			return []byte("PROXY UNKNOWN\r\n")
		}
		family := "TCP6"
		if v4 {
			family = "TCP4"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", family, sa, da, src.Port(), dst.Port())
	}
	b := append([]byte(nil), ppV2Sig...)
	if !known {
		return append(b, 0x20, 0x00, 0, 0) // version 2, LOCAL; UNSPEC, no addresses
	}
	fam, n := byte(0x21), 16 // AF_INET6, STREAM
	if v4 {
		fam, n = 0x11, 4 // AF_INET, STREAM
	}
	b = append(b, 0x21, fam) // version 2, PROXY
	b = binary.BigEndian.AppendUint16(b, uint16(2*n+4))
	if v4 {
		s, d := sa.As4(), da.As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		s, d := sa.As16(), da.As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
