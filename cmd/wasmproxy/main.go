// Command wasmproxy is an HTTP proxy extended by Proxy-Wasm plugins and
// configured with Envoy's v3 bootstrap format.
//
//	wasmproxy -c envoy.yaml                 # like envoy -c envoy.yaml
//	wasmproxy run -c envoy.yaml             # the same
//	wasmproxy plugin build DIR -o out.wasm  # build a Go plugin
package main

import (
	"fmt"
	"os"

	"github.com/wasmproxy/wasmproxy/config/redact"
	// WebSocket over HTTP/2 (RFC 8441) for connection managers with
	// http2_protocol_options.allow_connect: x/net/http2 offers extended
	// CONNECT only under GODEBUG=http2xconnect=1, which this sets.
	_ "github.com/wasmproxy/wasmproxy/proxy/xconnect"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..."; commit is used when Go did
// not stamp the VCS revision (-buildvcs=false, or no checkout).
var (
	version = "dev"
	commit  = ""
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		// The last line a failed start prints: never a password in a
		// URL or a private key, whatever error got here.
		fmt.Fprintf(os.Stderr, "wasmproxy: %s\n", redact.Text(err.Error()))
		os.Exit(1)
	}
}
