//go:build unix

package proxy

import (
	"fmt"
	"syscall"
	"testing"
)

// refusedAddr returns a loopback address where a connect is refused for
// the whole test: a socket is bound there, without listening and without
// SO_REUSEADDR, so no other listener of this machine (another test's, a
// proxy's with SO_REUSEPORT) can take the port while the test runs, as
// it could take the port freeAddr returns.
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
