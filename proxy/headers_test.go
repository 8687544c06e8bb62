package proxy

import (
	"strings"
	"testing"
)

// TestLowerKey: every path of lowerKey (already lower, a well-known
// name in canonical or upper case, another name, twice for the cache,
// non-ASCII) agrees with strings.ToLower.
func TestLowerKey(t *testing.T) {
	for _, k := range []string{
		"content-type", "Content-Type", "CONTENT-TYPE", "Host", "X-Request-Id",
		"X-My-Header", "X-My-Header", "x-my-header", "Te", "", "A", "Ünicode-Name",
	} {
		if got, want := lowerKey(k), strings.ToLower(k); got != want {
			t.Errorf("lowerKey(%q) = %q, want %q", k, got, want)
		}
	}
}
