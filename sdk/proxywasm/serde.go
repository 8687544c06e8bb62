package proxywasm

import "github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/serde"

// The encodings live in internal/serde, shared with the emulator of
// package proxytest.
var (
	serializeMap          = serde.SerializeMap
	deserializeMap        = serde.DeserializeMap
	serializePropertyPath = serde.SerializePropertyPath
)
