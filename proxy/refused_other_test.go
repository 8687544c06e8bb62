//go:build !unix

package proxy

import "testing"

// refusedAddr returns a loopback address where nothing listens (see the
// unix version; here the port is only free when returned).
func refusedAddr(t *testing.T) string { return freeAddr(t) }
