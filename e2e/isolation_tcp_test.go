package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// chaosTCPConfig is chaosConfig for TCP listeners: the chaos plugin as
// envoy.filters.network.wasm ahead of a tcp_proxy to the echo service,
// with cluster "callout" (an HTTP server) for the plugin's calls.
func chaosTCPConfig(t *testing.T, ls []*chaosListener, echo, callout, admin int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: %d}}\nstatic_resources:\n  listeners:\n", admin)
	for _, l := range ls {
		env := l.prepare(t, 20)
		fmt.Fprintf(&b, `    - name: %[1]s
      address: {socket_address: {address: 127.0.0.1, port_value: %[2]d}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.wasm
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
                config:
                  name: %[1]s
                  failure_policy: %[3]s
                  reload_config: {backoff: {base_interval: %[6]s}}
                  configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: %[4]q}
                  vm_config:
                    vm_id: %[1]s
                    code: {local: {filename: chaos.wasm}}
%[5]s            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: %[1]s
                cluster: echo
`, l.name, l.port, l.policy, l.conf, env, l.backoff)
	}
	b.WriteString("  clusters:\n")
	for _, c := range []struct {
		name string
		port int
	}{{"echo", echo}, {"callout", callout}} {
		fmt.Fprintf(&b, "    - name: %s\n      connect_timeout: 1s\n      load_assignment: {cluster_name: %s, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]}\n", c.name, c.name, c.port)
	}
	return b.String()
}

// TestIsolationTCP is TestIsolation for TCP connections: the chaos
// plugin as a network filter misbehaves on a connection's first data
// (panic, infinite loop, unbounded allocation, a held connection whose
// callout response handler traps), under concurrent load. A failed
// connection is closed (FAIL_CLOSED, FAIL_RELOAD) or passed through
// (FAIL_OPEN); the others, and every other plugin's, keep echoing.
func TestIsolationTCP(t *testing.T) {
	wasmPath := plugin(t, "e2e/testdata/chaos")
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	calloutPort := okServer(t)
	cs := newChaosSet("t")
	control, closed, open, every, reload, greedy := cs.control, cs.closed, cs.open, cs.every, cs.reload, cs.greedy
	all := cs.all()

	adminPort := freePort(t)
	in, admin := startChaos(t, chaosTCPConfig(t, all, echo, calloutPort, adminPort), wasmPath, adminPort)

	// talk sends payload on a new connection, half-closes and returns
	// what came back: the echo, or "" when the proxy closed the
	// connection (a reset counts as closed). Never answering is an error.
	talk := func(l *chaosListener, payload string) string {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.port), 5*time.Second)
		if err != nil {
			t.Errorf("%s: %v", l.name, err)
			return "dial error"
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(payload)); err != nil {
			return ""
		}
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s %q: no answer in 10 s (got %q)", l.name, payload, b)
			return "timeout"
		}
		return string(b)
	}
	stat := func(name string) int { return adminStat(t, admin, name) }
	// load opens n connections per worker on l from 4 workers, each
	// sending payload, and counts what came back.
	load := func(l *chaosListener, payload string, n int) map[string]int {
		return tally(n, func() string { return talk(l, payload) })
	}

	stopControl := inBackground(func() (string, bool) { r := talk(control, "ping"); return r, r == "ping" })

	t.Run("fail_closed", func(t *testing.T) {
		if r := talk(closed, "panic"); r != "" {
			t.Errorf("panicking connection got %q, want it closed", r)
		}
		if got := load(closed, "x", 25); got["x"] != 100 {
			t.Errorf("after one panic, results = %v, want 100 echoes", got)
		}
		if n := stat("wasm.tclosed.runtime_errors"); n != 1 {
			t.Errorf("runtime_errors = %d, want 1", n)
		}
	})
	t.Run("fail_open", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if r := talk(open, "panic"); r != "panic" {
				t.Errorf("panicking connection under FAIL_OPEN got %q, want the echo (filter skipped)", r)
			}
		}
		if got := load(open, "x", 25); got["x"] != 100 {
			t.Errorf("results = %v, want 100 echoes", got)
		}
	})
	t.Run("fail_reload_panic_every_7th", func(t *testing.T) {
		got := load(every, "hello", 50)
		traps, refused := stat("wasm.tevery.runtime_errors"), stat("wasm.tevery.vm_reload_backoff")
		// As for HTTP: a failed connection trapped, or was in flight on
		// the instance a trap poisoned, or met only poisoned instances
		// while the reload backed off.
		if got["hello"]+got[""] != 200 || got[""] == 0 || got[""] > 4*traps+refused || got["hello"] < 100 {
			t.Errorf("results = %v (traps %d, backoff refusals %d): want only echoes and closes, at least one close, at most 4*traps+refusals, mostly echoes", got, traps, refused)
		}
		if stat("wasm.tevery.vm_reload_success") == 0 {
			t.Errorf("no reload counted")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		before := stat("wasm.treload.deadline_exceeded")
		start := time.Now()
		if r := talk(reload, "loop"); r != "" {
			t.Errorf("looping connection got %q, want it closed", r)
		}
		// The deadline counts CPU time, which a busy machine hands out
		// slower than the wall clock: the counter below, not the time,
		// says the deadline stopped the loop.
		t.Logf("looping connection answered after %v", time.Since(start))
		if n := stat("wasm.treload.deadline_exceeded"); n != before+1 {
			t.Errorf("deadline_exceeded = %d, want %d", n, before+1)
		}
		if r := talk(reload, "slow"); r != "slow" {
			t.Errorf("slow connection got %q, want the echo", r)
		}
	})
	t.Run("memory_limit", func(t *testing.T) {
		before := stat("wasm.tgreedy.memory_limit_exceeded")
		if r := talk(greedy, "alloc"); r != "" {
			t.Errorf("allocating connection got %q, want it closed", r)
		}
		if r := talk(greedy, "x"); r != "x" {
			t.Errorf("connection after the memory-limit trap got %q, want the echo", r)
		}
		if n := stat("wasm.tgreedy.memory_limit_exceeded"); n != before+1 {
			t.Errorf("memory_limit_exceeded = %d, want %d", n, before+1)
		}
	})
	t.Run("held_connection_callout_trap", func(t *testing.T) {
		// The connection's data is held until the callout's response,
		// whose handler traps: the connection is answered at the trap.
		start := time.Now()
		if r := talk(reload, "callout"); r != "" {
			t.Errorf("held connection got %q, want it closed", r)
		}
		if r := talk(open, "callout"); r != "callout" {
			t.Errorf("held connection under FAIL_OPEN got %q, want its data let through", r)
		}
		// Unanswered, talk would have returned "timeout" at its 10 s
		// deadline; the answers above prove the trap released them.
		t.Logf("held connections answered after %v", time.Since(start))
	})

	if controlBad := stopControl(); len(controlBad) != 0 {
		t.Errorf("the control plugin's connections failed: %v", controlBad)
	}
	expectLogs(t, in,
		"plugin tclosed: proxy_on_downstream_data failed",
		"proxy_on_downstream_data failed: deadline exceeded",
		"proxy_on_downstream_data failed: memory limit exceeded",
		"proxy_on_http_call_response failed",
		"wasm stack trace")
}
