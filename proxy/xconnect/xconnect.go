// Package xconnect turns on RFC 8441 extended CONNECT (WebSocket over
// HTTP/2) in golang.org/x/net/http2, for a program that imports it for
// its effect:
//
//	import _ "github.com/wasmproxy/wasmproxy/proxy/xconnect"
//
// x/net/http2 (v0.62.0) keeps extended CONNECT off unless the process's
// GODEBUG environment variable holds "http2xconnect=1", which it reads
// once, with os.Getenv, in its package init: off, its server neither
// advertises SETTINGS_ENABLE_CONNECT_PROTOCOL nor accepts a :protocol
// pseudo-header (its client sends extended CONNECT either way, when the
// peer offers it). A //go:debug directive cannot set it: the go command
// accepts only settings the runtime knows, and x/net does not consult
// the runtime's settings anyway. This package sets the variable before
// x/net/http2's init runs: a package is initialized once its imports
// are, the first by import path among those ready (the Go spec's order
// since Go 1.21), and this one imports only the standard library pieces
// x/net/http2 imports too, with a path that sorts before "golang.org/".
//
// The setting is the process's: every x/net/http2 server in it (and
// net/http's own bundled HTTP/2, which reads the same variable) then
// offers extended CONNECT, and child processes inherit the variable. The
// proxy takes the offer back on connections of a connection manager
// without http2_protocol_options.allow_connect, as Envoy offers it only
// there; a program's other HTTP/2 servers keep it. A GODEBUG that
// already names http2xconnect (=0 included) is left as it is.
package xconnect

import (
	"os"
	"strings"
)

func init() {
	v := os.Getenv("GODEBUG")
	if strings.Contains(v, "http2xconnect=") {
		return
	}
	if v != "" {
		v += ","
	}
	_ = os.Setenv("GODEBUG", v+"http2xconnect=1")
}
