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
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "wasmproxy: %v\n", err)
		os.Exit(1)
	}
}
