package config

import "testing"

// TestPickWeighted: a random value picks the entry whose share of the
// total weight holds it (modulo the total), as Envoy's
// WeightedClusterEntry pick; a weight of 0 is never picked.
func TestPickWeighted(t *testing.T) {
	r := &Route{WeightedClusters: []*WeightedCluster{{Name: "a", Weight: 1}, {Name: "zero", Weight: 0}, {Name: "b", Weight: 3}}}
	for _, tc := range []struct {
		random uint64
		want   string
	}{
		{0, "a"}, {1, "b"}, {2, "b"}, {3, "b"}, {4, "a"}, {5, "b"}, {1<<64 - 1, "b"}, {1 << 63, "a"},
	} {
		if got := r.PickWeighted(tc.random); got == nil || got.Name != tc.want {
			t.Errorf("PickWeighted(%d) = %v, want %s", tc.random, got, tc.want)
		}
	}
	if got := (&Route{Cluster: "x"}).PickWeighted(7); got != nil {
		t.Errorf("a route without weighted clusters picked %v", got)
	}
}
