package compressor

import "testing"

// TestChosen: the compressors of a chain agree on one encoding by the
// request's Accept-Encoding q-values, as Envoy's do.
func TestChosen(t *testing.T) {
	for _, tt := range []struct{ accept, registered, want string }{
		{"gzip", "gzip,br", "gzip"},
		{"br, gzip", "gzip,br", "gzip"}, // tie: the first configured
		{"br;q=1, gzip;q=0.5", "gzip,br", "br"},
		{"*", "zstd,gzip", "zstd"},
		{"gzip;q=0, *;q=0.3", "gzip,br", "br"},
		{"gzip;q=0", "gzip", ""},
		{"identity;q=1, gzip;q=0.9", "gzip", ""},
		{"identity;q=0.5, gzip;q=0.9", "gzip", "gzip"},
		{"GZIP ; q=0.7", "gzip", "gzip"},
		{"gzip;q=2", "gzip", ""}, // invalid q: the entry is ignored
		{"deflate", "gzip", ""},
		{"", "gzip", ""},
	} {
		if got := chosen(tt.accept, tt.registered); got != tt.want {
			t.Errorf("chosen(%q, %q) = %q, want %q", tt.accept, tt.registered, got, tt.want)
		}
	}
}
