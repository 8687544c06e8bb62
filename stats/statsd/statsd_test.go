package statsd

import (
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/stats"
)

// server is a statsd server on loopback UDP: it returns each datagram
// received.
func server(t *testing.T) (string, <-chan string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	out := make(chan string, 100)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			out <- string(buf[:n])
		}
	}()
	return pc.LocalAddr().String(), out
}

// receive collects datagrams until want lines (in any order, across
// datagrams) have arrived.
func receive(t *testing.T, got <-chan string, want []string) []string {
	t.Helper()
	var lines []string
	need := map[string]bool{}
	for _, w := range want {
		need[w] = true
	}
	deadline := time.After(30 * time.Second)
	for len(need) > 0 {
		select {
		case d := <-got:
			for _, l := range strings.Split(d, "\n") {
				lines = append(lines, l)
				delete(need, l)
			}
		case <-deadline:
			var missing []string
			for l := range need {
				missing = append(missing, l)
			}
			sort.Strings(missing)
			t.Fatalf("missing %v; received %v", missing, lines)
		}
	}
	return lines
}

// TestStatsdLines: a flush sends counters as deltas, gauges as values
// and each histogram sample as a timer, in Envoy's statsd line format;
// DogStatsD names stats by their tag-extracted name with the tags.
func TestStatsdLines(t *testing.T) {
	addr, got := server(t)
	dogAddr, dogGot := server(t)
	st := stats.New()
	f, err := New(st, time.Hour, []Config{{Address: addr}, {Address: dogAddr, DogStatsD: true, Prefix: "edge"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	st.OnSample(f.sample)

	st.Counter("cluster.backend.upstream_rq_total").Add(3)
	st.Counter("never.used")
	st.Gauge("cluster.backend.upstream_cx_active").Set(2)
	st.CustomCounter("requests_seen").Inc()
	st.Histogram("cluster.backend.upstream_rq_time").Record(12)
	f.Flush()
	receive(t, got, []string{
		"envoy.cluster.backend.upstream_rq_total:3|c",
		"envoy.cluster.backend.upstream_cx_active:2|g",
		"envoy.wasmcustom.requests_seen:1|c",
		"envoy.cluster.backend.upstream_rq_time:12|ms",
	})
	receive(t, dogGot, []string{
		"edge.cluster.upstream_rq_total:3|c|#envoy.cluster_name:backend",
		"edge.cluster.upstream_cx_active:2|g|#envoy.cluster_name:backend",
		"edge.cluster.upstream_rq_time:12|ms|#envoy.cluster_name:backend",
	})

	// The next flush sends what changed since: a delta, and 0 for a used
	// counter that did not move (as Envoy does).
	st.Counter("cluster.backend.upstream_rq_total").Add(2)
	f.Flush()
	lines := receive(t, got, []string{
		"envoy.cluster.backend.upstream_rq_total:2|c",
		"envoy.wasmcustom.requests_seen:0|c",
	})
	for _, l := range lines {
		if strings.HasPrefix(l, "envoy.never.used") || strings.HasSuffix(l, "|ms") {
			t.Errorf("second flush sent %q", l)
		}
	}
}

// TestStatsdDatagramSize: lines are joined into datagrams no larger
// than the bound, and none is lost.
func TestStatsdDatagramSize(t *testing.T) {
	addr, got := server(t)
	st := stats.New()
	f, err := New(st, time.Hour, []Config{{Address: addr, MaxBytesPerDatagram: 100}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	var want []string
	for i := 0; i < 20; i++ {
		name := "listener.x.counter_" + string(rune('a'+i))
		st.Counter(name).Inc()
		want = append(want, "envoy."+name+":1|c")
	}
	f.Flush()
	var lines []string
	for len(lines) < len(want) {
		select {
		case d := <-got:
			if len(d) > 100 {
				t.Errorf("datagram of %d bytes, bound 100", len(d))
			}
			lines = append(lines, strings.Split(d, "\n")...)
		case <-time.After(30 * time.Second):
			t.Fatalf("received %d of %d lines", len(lines), len(want))
		}
	}
	sort.Strings(lines)
	sort.Strings(want)
	if strings.Join(lines, " ") != strings.Join(want, " ") {
		t.Errorf("lines %v, want %v", lines, want)
	}
}
