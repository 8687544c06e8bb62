package extauthz

import (
	"flag"
	"testing"

	"github.com/wasmproxy/wasmproxy/filters/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.envoytest expectations")

// TestGolden: ext_authz configs (gRPC and HTTP services, per-route
// entries) load into the model, and bad ones fail with the field path
// (testdata/*.envoytest).
func TestGolden(t *testing.T) { golden.Run(t, *update) }
