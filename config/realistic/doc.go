// Package realistic only tests: it loads Envoy bootstraps written the way
// Envoy's sandboxes and common deployments combine features, with every
// native filter linked in as in the wasmproxy binary (testdata/).
package realistic
