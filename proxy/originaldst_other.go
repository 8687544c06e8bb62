//go:build !linux

package proxy

import "net"

// withOriginalDst: SO_ORIGINAL_DST is Linux's (netfilter); elsewhere a
// connection keeps its own local address.
func withOriginalDst(c net.Conn) net.Conn { return c }
