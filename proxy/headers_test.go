package proxy

import (
	"net/textproto"
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
		"cOnTeNt-LeNgTh", "Content-Lengtj", "Content-LengtH\u212a", "X-Forwarded-Proto-Long-Name",
	} {
		if got, want := lowerKey(k), strings.ToLower(k); got != want {
			t.Errorf("lowerKey(%q) = %q, want %q", k, got, want)
		}
	}
}

// TestLowerKeyCommon: a common name in canonical or upper case is its
// shared lower-case string, with no allocation; isHopByHop agrees with
// its list.
func TestLowerKeyCommon(t *testing.T) {
	for _, n := range commonLowerNames {
		for _, k := range []string{strings.ToUpper(n), textproto.CanonicalMIMEHeaderKey(n)} {
			if got := lowerKey(k); got != n {
				t.Errorf("lowerKey(%q) = %q, want %q", k, got, n)
			}
			if a := testing.AllocsPerRun(10, func() { _ = lowerKey(k) }); a != 0 {
				t.Errorf("lowerKey(%q): %v allocations", k, a)
			}
		}
	}
	hop := map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true,
		"transfer-encoding": true, "upgrade": true, "te": true, "trailer": true}
	for _, k := range append(commonLowerNames, "proxy-connection", "proxy-authenticate", "proxy-authorization", "tf", "trailers", "") {
		if got := isHopByHop(k); got != hop[k] {
			t.Errorf("isHopByHop(%q) = %v", k, got)
		}
	}
}
