// Package testnet is loopback networking for tests: ports handed out to
// tests that start the real binary and must write its ports into a
// config before it binds them, and small servers.
package testnet

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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
//
// The port is taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range) where that leaves room: a port the
// kernel picked for a listen on port 0 is an ephemeral one, and in the
// moment between this check and the test's binary binding it, any
// outgoing connection of a test running beside it (go test runs
// packages in parallel) can take it as its source port, failing the
// bind with "address already in use" (seen in CI). Below the range only
// another test's listener could, and those are spread over thousands of
// ports.
func FreePort(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	lo, hi := belowEphemeral()
	for range 100 {
		var port int
		if hi > lo {
			port = lo + rand.IntN(hi-lo)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue // in use: try another
			}
			ln.Close()
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		}
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("testnet: no fresh free port after 100 tries")
	return 0
}

// belowEphemeral returns the ports [lo, hi) FreePort picks from: up to
// 8,000 just below the ephemeral range's start, above bench/'s fixed
// ports (28000-28999) (with Linux's default range, 29000-32767); lo ==
// hi when the range cannot be read or starts too low, and FreePort asks
// the kernel instead.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start < 29000+1000 {
		return 0, 0
	}
	return max(29000, start-8000), start
}
