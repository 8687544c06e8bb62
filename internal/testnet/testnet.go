// Package testnet is loopback networking for tests: ports handed out to
// tests that start the real binary and must write its ports into a
// config before it binds them, and small servers.
package testnet

import (
	"net"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	given = map[int]bool{} // every port FreePort returned in this process
)

// FreePort returns a loopback TCP port that was free a moment ago and
// that it has not returned before in this process: the kernel may hand
// a just-closed port out again, and a test that asks for several
// (listener, admin, upstream) must get distinct ones.
func FreePort(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("testnet: no fresh free port after 100 tries")
	return 0
}
