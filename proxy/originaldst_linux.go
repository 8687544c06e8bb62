package proxy

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// soOriginalDst is Linux's SO_ORIGINAL_DST (netfilter): the destination
// a connection had before iptables REDIRECT/DNAT sent it here.
const soOriginalDst = 80

// originalDstConn is a connection whose local address is its original
// destination (the original_dst listener filter).
type originalDstConn struct {
	net.Conn
	local net.Addr
}

func (c *originalDstConn) LocalAddr() net.Addr { return c.local }

// NetConn is the socket connection.
func (c *originalDstConn) NetConn() net.Conn { return c.Conn }

// withOriginalDst is the original_dst listener filter: as Envoy's, the
// connection's local address becomes the destination netfilter recorded
// before redirecting it (IPv4); a connection that was not redirected, or
// an IPv6 one, keeps its own.
func withOriginalDst(c net.Conn) net.Conn {
	inner := c
	if lc, ok := c.(*limitedConn); ok {
		inner = lc.Conn // counted by the global connections monitor
	}
	tc, ok := inner.(*net.TCPConn)
	if !ok {
		return c
	}
	la, ok := tc.LocalAddr().(*net.TCPAddr)
	if !ok || la.IP.To4() == nil {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	var sa syscall.RawSockaddrInet4
	var gerr error
	err = raw.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(sa))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_IP, soOriginalDst, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			gerr = e
		}
	})
	if err != nil || gerr != nil || sa.Family != syscall.AF_INET {
		return c
	}
	port := uint16(sa.Port>>8 | sa.Port<<8) // network byte order
	dst := netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	if dst == la.AddrPort() {
		return c
	}
	return &originalDstConn{Conn: c, local: net.TCPAddrFromAddrPort(dst)}
}
