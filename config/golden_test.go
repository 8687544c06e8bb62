package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expectations of testdata/*.envoytest from the current output")

// goldenSeparator splits a golden file into its input and its expectation.
const goldenSeparator = "----------\n"

// TestGolden runs every testdata/*.envoytest file: an Envoy config (YAML
// or JSON), a line of ten dashes, then either the expected model as
// indented JSON or "error: <text>". Inputs are parsed with source
// "envoy.yaml". Run with -update to rewrite the expectations after a
// deliberate change, and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.envoytest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.envoytest files")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".envoytest")
		t.Run(name, func(t *testing.T) {
			content, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(content), "\n"+goldenSeparator)
			if !ok {
				t.Fatalf("%s: no %q line", file, strings.TrimSpace(goldenSeparator))
			}
			input += "\n"
			got := goldenOutput(t, []byte(input))
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: output differs (run go test ./config -run TestGolden -update to accept)\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

// goldenOutput is what a golden file expects for input.
func goldenOutput(t *testing.T, input []byte) string {
	t.Helper()
	model, err := Parse(input, "envoy.yaml")
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		return "error: " + err.Error() + "\n"
	}
	checkModelInvariants(t, model)
	got := modelJSON(t, model)

	// RawJSON (for /config_dump) must describe the same config.
	again, err := Parse(model.RawJSON, "envoy.yaml")
	if err != nil {
		t.Errorf("RawJSON does not load again: %v\n%s", err, model.RawJSON)
	} else if dumped := modelJSON(t, again); dumped != got {
		t.Errorf("RawJSON loads as a different model:\n%s\nwant\n%s", dumped, got)
	}
	return got
}

func modelJSON(t *testing.T, model *Bootstrap) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(model); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// checkModelInvariants checks what the model's doc comments promise for
// every config that loads.
func checkModelInvariants(t *testing.T, b *Bootstrap) {
	t.Helper()
	if !json.Valid(b.RawJSON) {
		t.Errorf("RawJSON is not valid JSON: %s", b.RawJSON)
	}
	if b.Node != nil && len(b.Node.Proto) == 0 && (b.Node.ID != "" || b.Node.Cluster != "") {
		t.Errorf("Node.Proto is empty for node %+v", b.Node)
	}
	for _, l := range b.Listeners {
		for _, c := range l.FilterChains {
			if (c.HTTP == nil) == (c.TCPProxy == nil) {
				t.Errorf("listener %q: want exactly one of HTTP and TCPProxy in each chain", l.Name)
			}
			if c.HTTP != nil {
				checkHTTPModel(t, l.Name, c.HTTP)
			}
		}
	}
}

// checkHTTPModel checks the invariants of one HTTP connection manager.
func checkHTTPModel(t *testing.T, listener string, h *HTTPConnectionManager) {
	t.Helper()
	filters := h.Filters
	if len(filters) == 0 || !filters[len(filters)-1].Router {
		t.Errorf("listener %q: router is not the last filter", listener)
	}
	for _, f := range filters {
		if (f.Wasm != nil) == f.Router {
			t.Errorf("listener %q filter %q: want exactly one of Wasm and Router", listener, f.Name)
		}
		if w := f.Wasm; w != nil && countTrue(w.CodeFile != "", len(w.Code) > 0, w.Remote != nil) != 1 {
			t.Errorf("listener %q filter %q: want exactly one of CodeFile, Code and Remote", listener, f.Name)
		}
	}
	for _, vh := range h.Routes.VirtualHosts {
		for _, r := range vh.Routes {
			if countTrue(r.Cluster != "", len(r.WeightedClusters) > 0, r.ClusterHeader != "", r.DirectResponse != nil, r.Redirect != nil) != 1 {
				t.Errorf("route %q: want exactly one of Cluster, WeightedClusters, ClusterHeader, DirectResponse and Redirect", r.Name)
			}
			if set := countTrue(r.Match.Prefix != "", r.Match.Path != "", r.Match.SafeRegex != nil, r.Match.PathSeparatedPrefix != "", r.Match.PathTemplate != nil, r.Match.Connect); set != 1 {
				t.Errorf("route %q: want exactly one of Prefix, Path, SafeRegex, PathSeparatedPrefix, PathTemplate, Connect, got %d", r.Name, set)
			}
			if r.PathTemplateRewrite != nil && r.Match.PathTemplate == nil {
				t.Errorf("route %q: PathTemplateRewrite without Match.PathTemplate", r.Name)
			}
		}
	}
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
