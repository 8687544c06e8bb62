// Package all links every native HTTP filter (package filters) into the
// binary that imports it.
package all

import (
	_ "github.com/wasmproxy/wasmproxy/filters/buffer"
	_ "github.com/wasmproxy/wasmproxy/filters/compressor"
	_ "github.com/wasmproxy/wasmproxy/filters/cors"
	_ "github.com/wasmproxy/wasmproxy/filters/csrf"
	_ "github.com/wasmproxy/wasmproxy/filters/decompressor"
	_ "github.com/wasmproxy/wasmproxy/filters/extauthz"
	_ "github.com/wasmproxy/wasmproxy/filters/fault"
	_ "github.com/wasmproxy/wasmproxy/filters/grpchttp1bridge"
	_ "github.com/wasmproxy/wasmproxy/filters/grpcweb"
	_ "github.com/wasmproxy/wasmproxy/filters/headermutation"
	_ "github.com/wasmproxy/wasmproxy/filters/headertometadata"
	_ "github.com/wasmproxy/wasmproxy/filters/healthcheck"
	_ "github.com/wasmproxy/wasmproxy/filters/localratelimit"
	_ "github.com/wasmproxy/wasmproxy/filters/lua"
	_ "github.com/wasmproxy/wasmproxy/filters/ratelimit"
	_ "github.com/wasmproxy/wasmproxy/filters/rbac"
)
