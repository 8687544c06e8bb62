package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: the Envoy config loader never panics, whatever the bytes;
// seeded with every golden input in testdata.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.envoytest")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		in, _, _ := strings.Cut(string(b), "----------")
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse(data, "envoy.yaml")
	})
}
