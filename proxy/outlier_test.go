package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// odBackend answers its name, or status when status is not 200.
func odBackend(t *testing.T, name string, status *atomic.Int32) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if s := int(status.Load()); s != 200 {
			w.WriteHeader(s)
		}
		io.WriteString(w, name)
	})
}

// odConfig routes everything to cluster "up" with outlier_detection od
// (a YAML flow mapping's fields).
func odConfig(od string, addrs ...string) string {
	eps := []string{}
	for _, a := range addrs {
		eps = append(eps, `{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: `+hcPort(a)+`}}}}`)
	}
	return yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: up}
  clusters:
  - name: up
    connect_timeout: 1s
    outlier_detection: {` + od + `}
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [` + strings.Join(eps, ", ") + `]}]
`
}

func hostEjected(f *fixture, addr string) bool {
	for _, c := range f.srv.ClusterStatuses() {
		for _, e := range c.Endpoints {
			if c.Name == "up" && e.Address == addr {
				return e.FailedOutlierCheck
			}
		}
	}
	return false
}

// TestOutlierConsecutive5xx: a host answering 500 three times in a row
// is ejected (the other host's successes between do not reset its run),
// leaves load balancing, and comes back once base_ejection_time has
// passed (checked at each interval).
func TestOutlierConsecutive5xx(t *testing.T) {
	var aStatus, bStatus atomic.Int32
	aStatus.Store(500)
	bStatus.Store(200)
	a, b := odBackend(t, "a", &aStatus), odBackend(t, "b", &bStatus)
	f := startYAML(t, odConfig(`consecutive_5xx: 3, interval: 0.05s, base_ejection_time: 0.2s, max_ejection_percent: 50`, a, b), "")
	got := bodies(t, f, 6) // round robin: three to each
	if got["500 a"] != 3 || got["200 b"] != 3 {
		t.Fatalf("answers %v", got)
	}
	if !hostEjected(f, a) {
		t.Fatal("a not ejected after 3 consecutive 5xx")
	}
	if got := bodies(t, f, 6); got["200 b"] != 6 {
		t.Errorf("a ejected: answers %v, want all from b", got)
	}
	p := "cluster.up.outlier_detection."
	for name, want := range map[string]uint64{"ejections_enforced_consecutive_5xx": 1, "ejections_detected_consecutive_5xx": 1, "ejections_enforced_total": 1, "ejections_overflow": 0} {
		if got := f.st.Counter(p + name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if g := f.st.Gauge(p + "ejections_active").Value(); g != 1 {
		t.Errorf("ejections_active = %d, want 1", g)
	}
	aStatus.Store(200)
	waitFor(t, "a to come back", func() bool { return !hostEjected(f, a) })
	if got := bodies(t, f, 4); got["200 a"] != 2 || got["200 b"] != 2 {
		t.Errorf("a back: answers %v", got)
	}
	if g := f.st.Gauge(p + "ejections_active").Value(); g != 0 {
		t.Errorf("ejections_active = %d after the uneject", g)
	}
}

// TestOutlierMaxEjectionPercent: with Envoy's default 10%, a cluster of
// two hosts ejects none (one is 50%): the detection is an overflow.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	var aStatus, bStatus atomic.Int32
	aStatus.Store(503)
	bStatus.Store(200)
	a, b := odBackend(t, "a", &aStatus), odBackend(t, "b", &bStatus)
	f := startYAML(t, odConfig(`consecutive_5xx: 2`, a, b), "")
	bodies(t, f, 8)
	if hostEjected(f, a) {
		t.Error("a ejected past max_ejection_percent")
	}
	if got := f.st.Counter("cluster.up.outlier_detection.ejections_overflow").Value(); got == 0 {
		t.Error("ejections_overflow is 0")
	}
}

// TestOutlierGatewayFailureNotEnforced: consecutive gateway failures are
// detected, but enforcing_consecutive_gateway_failure defaults to 0 as
// in Envoy, so nothing is ejected.
func TestOutlierGatewayFailureNotEnforced(t *testing.T) {
	var aStatus, bStatus atomic.Int32
	aStatus.Store(502)
	bStatus.Store(200)
	a, b := odBackend(t, "a", &aStatus), odBackend(t, "b", &bStatus)
	f := startYAML(t, odConfig(`consecutive_5xx: 100, consecutive_gateway_failure: 2, max_ejection_percent: 100`, a, b), "")
	bodies(t, f, 4)
	p := "cluster.up.outlier_detection."
	if f.st.Counter(p+"ejections_detected_consecutive_gateway_failure").Value() != 1 || f.st.Counter(p+"ejections_enforced_consecutive_gateway_failure").Value() != 0 {
		t.Errorf("detected %d, enforced %d; want 1, 0",
			f.st.Counter(p+"ejections_detected_consecutive_gateway_failure").Value(), f.st.Counter(p+"ejections_enforced_consecutive_gateway_failure").Value())
	}
	if hostEjected(f, a) {
		t.Error("a ejected with enforcing 0")
	}
}

// TestOutlierLocalOrigin: with split_external_local_origin_errors, a
// host refusing connections is ejected by consecutive_local_origin_failure
// and its failures do not count as 5xx; without the split the same
// failures are 503s for consecutive_5xx.
func TestOutlierLocalOrigin(t *testing.T) {
	var bStatus atomic.Int32
	bStatus.Store(200)
	b := odBackend(t, "b", &bStatus)
	for _, tc := range []struct {
		od, stat string
	}{
		{`split_external_local_origin_errors: true, consecutive_local_origin_failure: 2, max_ejection_percent: 50`, "ejections_enforced_consecutive_local_origin_failure"},
		{`consecutive_5xx: 2, max_ejection_percent: 50`, "ejections_enforced_consecutive_5xx"},
	} {
		dead := refusedAddr(t)
		f := startYAML(t, odConfig(tc.od, dead, b), "")
		got := bodies(t, f, 4)
		if got["200 b"] != 2 || len(got) != 2 {
			t.Fatalf("%s: answers %v", tc.od, got)
		}
		if !hostEjected(f, dead) {
			t.Fatalf("%s: the dead host is not ejected", tc.od)
		}
		if n := f.st.Counter("cluster.up.outlier_detection." + tc.stat).Value(); n != 1 {
			t.Errorf("%s: %s = %d", tc.od, tc.stat, n)
		}
		if got := bodies(t, f, 3); got["200 b"] != 3 {
			t.Errorf("%s: after the ejection: %v", tc.od, got)
		}
	}
}

// TestOutlierRates: the interval detectors. A host failing every request
// is ejected by failure_percentage (two hosts, threshold 50%), and by
// success_rate among three hosts (below mean - 1.0 × stdev); requests
// keep flowing until an interval has seen the request volume.
func TestOutlierRates(t *testing.T) {
	for _, tc := range []struct {
		od, stat string
		hosts    int
	}{
		{`consecutive_5xx: 1000, interval: 0.05s, max_ejection_percent: 50, enforcing_success_rate: 0, enforcing_failure_percentage: 100, failure_percentage_threshold: 50, failure_percentage_minimum_hosts: 2, failure_percentage_request_volume: 5`, "ejections_enforced_failure_percentage", 2},
		{`consecutive_5xx: 1000, interval: 0.05s, max_ejection_percent: 50, success_rate_minimum_hosts: 3, success_rate_request_volume: 5, success_rate_stdev_factor: 1000`, "ejections_enforced_success_rate", 3},
	} {
		var bad, good atomic.Int32
		bad.Store(500)
		good.Store(200)
		addrs := []string{odBackend(t, "a", &bad)}
		for i := 1; i < tc.hosts; i++ {
			addrs = append(addrs, odBackend(t, "ok", &good))
		}
		f := startYAML(t, odConfig(tc.od, addrs...), "")
		waitFor(t, tc.stat, func() bool {
			bodies(t, f, 10)
			return hostEjected(f, addrs[0])
		})
		if n := f.st.Counter("cluster.up.outlier_detection." + tc.stat).Value(); n != 1 {
			t.Errorf("%s = %d, want 1", tc.stat, n)
		}
		for _, a := range addrs[1:] {
			if hostEjected(f, a) {
				t.Errorf("healthy host %s ejected", a)
			}
		}
	}
}
