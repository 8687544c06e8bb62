// Package codedigest is the one hash of plugin code: the lowercase hex
// sha256 that Envoy's `sha256` fields, OCI digests and wasmproxy's caches
// use. It is a leaf so that the Wasm host can name code by its digest
// without importing the fetching code (source), whose OCI dependencies
// would then reach every plugin's `go test` through wasmtest.
package codedigest

import (
	"crypto/sha256"
	"encoding/hex"
)

// Of returns the lowercase hex sha256 of b.
func Of(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
