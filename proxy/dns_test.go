package proxy

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDNSLookupFamily: which resolved addresses a DNS cluster uses, per
// dns_lookup_family, as Envoy chooses them.
func TestDNSLookupFamily(t *testing.T) {
	both := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("10.0.0.2")}
	v4only := []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1")} // v4-mapped counts as IPv4
	v6only := []netip.Addr{netip.MustParseAddr("::1")}
	tests := []struct {
		family string
		addrs  []netip.Addr
		want   string
	}{
		{"", both, "::1"}, // AUTO: IPv6 when there is any
		{"", v4only, "127.0.0.1"},
		{"V4_PREFERRED", both, "127.0.0.1 10.0.0.2"},
		{"V4_PREFERRED", v6only, "::1"},
		{"V4_ONLY", both, "127.0.0.1 10.0.0.2"},
		{"V4_ONLY", v6only, ""},
		{"V6_ONLY", both, "::1"},
		{"V6_ONLY", v4only, ""},
		{"ALL", both, "127.0.0.1 10.0.0.2 ::1"},
	}
	for _, tc := range tests {
		if got := strings.Join(pickFamily(tc.addrs, tc.family), " "); got != tc.want {
			t.Errorf("%s of %v: %q, want %q", familyName(tc.family), tc.addrs, got, tc.want)
		}
	}
	// A name with no address of the family fails like a failed lookup.
	if _, err := lookupFamily(t.Context(), "127.0.0.1", "V6_ONLY"); err == nil || !strings.Contains(err.Error(), "no address for dns_lookup_family V6_ONLY") {
		t.Errorf("V6_ONLY of 127.0.0.1: %v", err)
	}
}
