package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// lbConfig routes to cluster "up" whose lb_policy and endpoint lines
// (YAML flow mappings, one per locality) are given; route adds fields
// to the route action.
func lbConfig(policy, route string, localities ...string) string {
	return yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: up` + route + `}
  clusters:
  - name: up
    connect_timeout: 1s
    lb_policy: ` + policy + `
    load_assignment:
      cluster_name: up
      endpoints: [` + strings.Join(localities, ", ") + `]
`
}

func lbEndpoint(addr, extra string) string {
	return `{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + hcPort(addr) + `}}}` + extra + `}`
}

// TestWeightedRoundRobin: load_balancing_weight 3 and 1 share 8
// requests 6 and 2.
func TestWeightedRoundRobin(t *testing.T) {
	var ok atomic.Int32
	ok.Store(200)
	a, b := odBackend(t, "a", &ok), odBackend(t, "b", &ok)
	f := startYAML(t, lbConfig("ROUND_ROBIN", "", `{lb_endpoints: [`+lbEndpoint(a, ", load_balancing_weight: 3")+`, `+lbEndpoint(b, ", load_balancing_weight: 1")+`]}`), "")
	if got := bodies(t, f, 8); got["200 a"] != 6 || got["200 b"] != 2 {
		t.Errorf("answers %v, want a 6, b 2", got)
	}
}

// TestPriorityFailover: priority 1 takes no traffic while priority 0
// is healthy; when priority 0's only host is UNHEALTHY (health_status)
// everything fails over to priority 1.
func TestPriorityFailover(t *testing.T) {
	var ok atomic.Int32
	ok.Store(200)
	a, b := odBackend(t, "a", &ok), odBackend(t, "b", &ok)
	f := startYAML(t, lbConfig("ROUND_ROBIN", "", `{lb_endpoints: [`+lbEndpoint(a, "")+`]}`, `{priority: 1, lb_endpoints: [`+lbEndpoint(b, "")+`]}`), "")
	if got := bodies(t, f, 6); got["200 a"] != 6 {
		t.Errorf("healthy priority 0: answers %v", got)
	}
	f = startYAML(t, lbConfig("ROUND_ROBIN", "", `{lb_endpoints: [`+lbEndpoint(a, ", health_status: UNHEALTHY")+`]}`, `{priority: 1, lb_endpoints: [`+lbEndpoint(b, "")+`]}`), "")
	if got := bodies(t, f, 6); got["200 b"] != 6 {
		t.Errorf("unhealthy priority 0: answers %v", got)
	}
	for _, c := range f.srv.ClusterStatuses() {
		for _, e := range c.Endpoints {
			if e.Address == a && !e.FailedEDSHealth {
				t.Error("health_status UNHEALTHY not shown as failed_eds_health")
			}
		}
	}
}

// TestHashPolicies: RING_HASH and MAGLEV send every request with the
// same header value to the same host, and a cookie policy with a ttl
// sets Envoy's cookie on a request without it; sent back, the cookie
// keeps the host.
func TestHashPolicies(t *testing.T) {
	var ok atomic.Int32
	ok.Store(200)
	var addrs []string
	for _, n := range []string{"a", "b", "c", "d"} {
		addrs = append(addrs, odBackend(t, n, &ok))
	}
	eps := []string{}
	for _, a := range addrs {
		eps = append(eps, lbEndpoint(a, ""))
	}
	loc := `{lb_endpoints: [` + strings.Join(eps, ", ") + `]}`
	for _, policy := range []string{"RING_HASH", "MAGLEV"} {
		f := startYAML(t, lbConfig(policy, `, hash_policy: [{header: {header_name: x-user}}]`, loc), "")
		seen := map[string]bool{}
		for _, user := range []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"} {
			hosts := map[string]bool{}
			for i := 0; i < 4; i++ {
				req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
				req.Header.Set("x-user", user)
				_, body := do(t, req)
				hosts[body] = true
				seen[body] = true
			}
			if len(hosts) != 1 {
				t.Errorf("%s: user %s went to %v", policy, user, hosts)
			}
		}
		if len(seen) < 2 {
			t.Errorf("%s: 8 users all on %v", policy, seen)
		}

		f = startYAML(t, lbConfig(policy, `, hash_policy: [{cookie: {name: sticky, ttl: 60s, path: /}}]`, loc), "")
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
		resp, first := do(t, req)
		sc := resp.Header.Get("Set-Cookie")
		if !strings.HasPrefix(sc, `sticky="`) || !strings.Contains(sc, "; Max-Age=60; Path=/; HttpOnly") {
			t.Fatalf("%s: Set-Cookie %q", policy, sc)
		}
		val := strings.Trim(strings.TrimPrefix(strings.SplitN(sc, ";", 2)[0], "sticky="), `"`)
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
			req.Header.Set("Cookie", "sticky="+val)
			resp, body := do(t, req)
			if body != first || resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("%s: with the cookie: %q (Set-Cookie %q), first %q", policy, body, resp.Header.Get("Set-Cookie"), first)
			}
		}
	}
}
