package grpcweb

import (
	"flag"
	"testing"

	"github.com/wasmproxy/wasmproxy/filters/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.envoytest expectations")

// TestGolden: gRPC-Web configs load into the model, and bad ones fail with
// the field path (testdata/*.envoytest).
func TestGolden(t *testing.T) { golden.Run(t, *update) }
