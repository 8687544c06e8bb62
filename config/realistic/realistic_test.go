package realistic_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	_ "github.com/wasmproxy/wasmproxy/filters/all" // the native filters these deployments use
)

var update = flag.Bool("update", false, "rewrite testdata/*.envoytest expectations")

// TestRealisticConfigs loads testdata/*.envoytest: bootstraps
// written the way Envoy's sandboxes and common deployments combine
// features (front proxy with TLS and redirects, Zipkin and OpenTelemetry
// tracing, ext_authz with Lua, gRPC with WebSockets and CORS). Each is a
// config, a line of ten dashes, then the whole model as indented JSON or
// "error: <text>"; the model's RawJSON must load as the same model. The
// native filters (package filters, which imports config) are linked, as
// in the binary, which config's own golden tests leave out. Run with
// -update to rewrite the expectations, and review the diff.
func TestRealisticConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.envoytest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.envoytest files (%v)", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".envoytest"), func(t *testing.T) {
			content, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(content), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no separator line", file)
			}
			input += "\n"
			got := realisticOutput(t, []byte(input))
			if *update {
				if err := os.WriteFile(file, []byte(input+"----------\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: output differs (rerun with -update to accept)\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

func realisticOutput(t *testing.T, input []byte) string {
	t.Helper()
	model, err := config.Parse(input, "envoy.yaml")
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		return "error: " + err.Error() + "\n"
	}
	got := indentJSON(t, model)
	again, err := config.Parse(model.RawJSON, "envoy.yaml")
	if err != nil {
		t.Errorf("RawJSON does not load again: %v", err)
	} else if dumped := indentJSON(t, again); dumped != got {
		t.Errorf("RawJSON loads as a different model:\n%s\nwant\n%s", dumped, got)
	}
	return got
}

func indentJSON(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
