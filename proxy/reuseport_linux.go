//go:build linux

package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortControl sets SO_REUSEPORT on a listening socket before it is
// bound, as Envoy does for a listener with enable_reuse_port (its
// default on Linux): another process (a second wasmproxy, an Envoy hot
// restart peer) binding the same address with the option set shares the
// port, and the kernel spreads new connections across the sockets.
func reusePortControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// reusePortSupported: Linux honours SO_REUSEPORT for TCP listeners.
const reusePortSupported = true
