package testnet

import (
	"net"
	"testing"
)

// Serve runs a loopback TCP server for the test: each accepted
// connection is handed to handle on a goroutine of its own (handle
// closes it). The listener closes when the test ends. It returns the
// server's address.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}
