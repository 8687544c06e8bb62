package accesslog

import (
	"strings"
	"testing"
)

// TestDynamicMetadata: %DYNAMIC_METADATA(NS:KEY...)% reads the stream's
// dynamic metadata: a string as itself, other values as JSON, a missing
// namespace or key as "-", and :Z truncates; json_format keeps the type.
func TestDynamicMetadata(t *testing.T) {
	e := entry()
	e.Info.DynamicMetadata.Merge("envoy.lb", map[string]any{
		"version": "v2", "weight": float64(12), "nested": map[string]any{"a": true},
	})
	for format, want := range map[string]string{
		"%DYNAMIC_METADATA(envoy.lb:version)%":   "v2",
		"%DYNAMIC_METADATA(envoy.lb:version):1%": "v",
		"%DYNAMIC_METADATA(envoy.lb:weight)%":    "12",
		"%DYNAMIC_METADATA(envoy.lb:nested:a)%":  "true",
		"%DYNAMIC_METADATA(envoy.lb:nested)%":    `{"a":true}`,
		"%DYNAMIC_METADATA(envoy.lb:missing)%":   "-",
		"%DYNAMIC_METADATA(other:version)%":      "-",
		"%DYNAMIC_METADATA(envoy.lb:version:x)%": "-",
		"[%DYNAMIC_METADATA(envoy.lb:weight)%]":  "[12]",
		"%DYNAMIC_METADATA(envoy.lb)%":           `{"nested":{"a":true},"version":"v2","weight":12}`,
	} {
		f, err := Parse(format)
		if err != nil {
			t.Fatalf("Parse(%q): %v", format, err)
		}
		if got := f.Format(e); got != want {
			t.Errorf("Format(%q) = %q, want %q", format, got, want)
		}
	}
	j, err := ParseJSON(map[string]any{
		"v": "%DYNAMIC_METADATA(envoy.lb:version)%", "w": "%DYNAMIC_METADATA(envoy.lb:weight)%",
		"n": "%DYNAMIC_METADATA(envoy.lb:nested)%", "m": "%DYNAMIC_METADATA(envoy.lb:none)%",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.Format(e), `{"m":null,"n":{"a":true},"v":"v2","w":12}`+"\n"; got != want {
		t.Errorf("json: got %q want %q", got, want)
	}
	for format, msg := range map[string]string{
		"%DYNAMIC_METADATA%":       "needs a metadata namespace",
		"%DYNAMIC_METADATA(:k)%":   "needs a metadata namespace",
		"%DYNAMIC_METADATA(ns::)%": "an empty key",
	} {
		if _, err := Parse(format); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%q) = %v, want %q", format, err, msg)
		}
	}
}
