package proxy

import "testing"

// maxProxiedRequestAllocs is what one proxied keep-alive request of
// bench/run.sh's shape may allocate, the whole proxy included: the
// counts BenchmarkProxiedRequest measured once the pool's exchange ended
// at a connection deadline and the request's own cancel instead of
// context layers (docs/perf.md, "Allocations per request, round 2"),
// held since the benchmark's connection manager has Envoy's default
// idle and stream idle timeouts (whose per-stream timer cost 2 until the
// HTTP/1 connection's timer was reused; docs/perf.md, "Issue 12, round
// 3"), 11/13 once the filter chain's queue made its channel only for a
// stream that waits, 10/12 with the first response in the router's
// request. Lower them when a change allocates less;
// raising them needs a reason.
var maxProxiedRequestAllocs = map[string]float64{"GET": 10, "POST": 12}

// TestProxiedRequestAllocs fails when a proxied request allocates more
// than it did: a raw-socket client (allocating nothing) sends the
// benchmark's GET and POST through the proxy to a raw-socket upstream
// (allocating nothing), and testing.AllocsPerRun counts the process's
// allocations per round trip, which are the proxy's.
func TestProxiedRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	if testing.Short() {
		t.Skip("counts allocations over 1000 requests")
	}
	addr := startProxiedRequestProxy(t)
	for _, rc := range proxiedRequests {
		t.Run(rc.name, func(t *testing.T) {
			roundTrip := rawRoundTrip(t, addr, rc.req)
			roundTrip() // the upstream connection is open from here on
			got := testing.AllocsPerRun(1000, roundTrip)
			if max := maxProxiedRequestAllocs[rc.name]; got > max {
				t.Errorf("a proxied %s allocates %v times, more than %v", rc.name, got, max)
			}
			t.Logf("%s: %v allocations per proxied request", rc.name, got)
		})
	}
}
