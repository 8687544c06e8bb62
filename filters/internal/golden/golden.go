// Package golden runs the native filters' config golden tests: each
// testdata/*.envoytest file is an Envoy config, a line of ten dashes, and
// the expected result: the route configs and HTTP filters of every
// connection manager as indented JSON, or "error: <text>". It is the
// format of config's own golden files, narrowed to what a filter adds.
package golden

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

const separator = "----------\n"

// Run checks every testdata/*.envoytest under the calling package;
// update rewrites the expectations from the current output.
func Run(t *testing.T, update bool) {
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
			input, want, ok := strings.Cut(string(content), "\n"+separator)
			if !ok {
				t.Fatalf("%s: no %q line", file, strings.TrimSpace(separator))
			}
			input += "\n"
			got := output(t, []byte(input))
			if update {
				if err := os.WriteFile(file, []byte(input+separator+got), 0o644); err != nil {
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

func output(t *testing.T, input []byte) string {
	model, err := config.Parse(input, "envoy.yaml")
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		return "error: " + err.Error() + "\n"
	}
	type hcm struct {
		Routes  *config.RouteConfig  `json:"route_config"`
		Filters []*config.HTTPFilter `json:"http_filters"`
	}
	// A chain with native network filters shows them (its terminal's
	// config is the config package's to test).
	type network struct {
		Filters []*config.NetworkFilter `json:"network_filters"`
	}
	var out []any
	for _, l := range model.Listeners {
		for _, fc := range l.FilterChains {
			if len(fc.NetworkFilters) > 0 {
				out = append(out, network{fc.NetworkFilters})
			}
			if fc.HTTP != nil {
				out = append(out, hcm{fc.HTTP.Routes, fc.HTTP.Filters})
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	// RawJSON (for /config_dump) must load again.
	if _, err := config.Parse(model.RawJSON, "envoy.yaml"); err != nil {
		t.Errorf("RawJSON does not load again: %v", err)
	}
	return buf.String()
}
