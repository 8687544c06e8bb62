package rbac_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// echoUpstream is a TCP server on 127.0.0.1 that echoes what it reads
// and, when a connection ends, sends everything it received on got.
func echoUpstream(t *testing.T) (port int, got <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var all []byte
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					all = append(all, buf[:n]...)
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						ch <- string(all)
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, ch
}

func rbacListener(name string, port int, rbac, cluster string) string {
	return fmt.Sprintf(`
  - name: %s
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
%s
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: %s`, name, port, rbac, name, cluster)
}

// TestNetworkRBAC runs envoy.filters.network.rbac ahead of a tcp_proxy
// in the library proxy with real sockets: a connection from 127.0.0.1 to
// the listener's port is allowed by source IP and destination port and
// reaches the upstream; the same policy on another port, and a policy
// for another source network, deny: the client's bytes never reach the
// upstream and the connection is closed; shadow rules only count.
// Stats are Envoy's <stat_prefix>.rbac.* names.
func TestNetworkRBAC(t *testing.T) {
	allowedPort := testnet.FreePort(t)
	up := map[string]<-chan string{}
	clusters := ""
	for _, name := range []string{"allowed", "byport", "byip", "shadow"} {
		port, ch := echoUpstream(t)
		up[name] = ch
		clusters += inproc.Cluster(name+"_up", port)
	}
	localPolicy := fmt.Sprintf(`          rules:
            action: ALLOW
            policies:
              local:
                permissions: [{destination_port: %d}]
                principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]`, allowedPort)
	p := inproc.Start(t, `
static_resources:
  listeners:`+
		rbacListener("allowed", allowedPort, "          stat_prefix: allowed.\n"+localPolicy+`
          shadow_rules:
            action: DENY
            policies: {all: {permissions: [{any: true}], principals: [{any: true}]}}`, "allowed_up")+
		rbacListener("byport", testnet.FreePort(t), "          stat_prefix: byport\n"+localPolicy, "byport_up")+
		rbacListener("byip", testnet.FreePort(t), `          stat_prefix: byip
          rules:
            action: ALLOW
            policies:
              ten:
                permissions: [{any: true}]
                principals: [{source_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}]`, "byip_up")+
		rbacListener("shadow", testnet.FreePort(t), `          stat_prefix: shadow
          shadow_rules_stat_prefix: s_
          shadow_rules:
            action: ALLOW
            policies: {port1: {permissions: [{destination_port: 1}], principals: [{any: true}]}}`, "shadow_up")+`
  clusters:`+clusters)

	// roundTrip sends msg, reads the echo, half-closes and reads to EOF.
	roundTrip := func(listener, msg string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.Addr(listener), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, len(msg))
		if _, err := io.ReadFull(c, echo); err != nil || string(echo) != msg {
			t.Fatalf("%s: echo %q, %v; want %q", listener, echo, err, msg)
		}
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("%s: after the echo %q, %v", listener, rest, err)
		}
		if got := <-up[listener]; got != msg {
			t.Fatalf("%s: upstream got %q, want %q", listener, got, msg)
		}
	}
	// denied sends msg and expects the proxy to close the connection
	// with nothing back, and the upstream to see none of it.
	denied := func(listener, msg string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.Addr(listener), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(c)
		if len(rest) != 0 {
			t.Fatalf("%s: a denied connection got %q back", listener, rest)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the denied connection was not closed: %v", listener, err)
		}
		// The tcp_proxy connects before the first byte (as Envoy's);
		// that upstream connection ends with nothing received.
		if got := <-up[listener]; got != "" {
			t.Fatalf("%s: upstream got %q from a denied connection", listener, got)
		}
	}

	roundTrip("allowed", "hello")
	denied("byport", "secret by port")
	denied("byip", "secret by ip")
	roundTrip("shadow", "shadowed")

	for name, want := range map[string]int64{
		"allowed.rbac.allowed":        1,
		"allowed.rbac.denied":         0,
		"allowed.rbac.shadow_denied":  1,
		"allowed.rbac.shadow_allowed": 0,
		"byport.rbac.denied":          1,
		"byport.rbac.allowed":         0,
		"byip.rbac.denied":            1,
		"byip.rbac.allowed":           0,
		"shadow.rbac.s_shadow_denied": 1,
		"shadow.rbac.allowed":         0,
		"shadow.rbac.denied":          0,
	} {
		if got := p.Stat(t, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestNetworkRBACContinuous: enforcement_type CONTINUOUS decides the
// rules and the shadow rules again on every read, as Envoy's filter;
// ONE_TIME_ON_FIRST_BYTE decides once. Each one-byte write is one read
// (the echo comes back before the next write), so three writes are
// three decisions.
func TestNetworkRBACContinuous(t *testing.T) {
	policy := `
          rules:
            action: ALLOW
            policies: {local: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]}}
          shadow_rules:
            action: DENY
            policies: {all: {permissions: [{any: true}], principals: [{any: true}]}}`
	clusters, listeners := "", ""
	for _, c := range []struct{ name, enforcement string }{
		{"continuous", "CONTINUOUS"},
		{"onetime", "ONE_TIME_ON_FIRST_BYTE"},
	} {
		port, _ := echoUpstream(t)
		clusters += inproc.Cluster(c.name+"_up", port)
		listeners += rbacListener(c.name, testnet.FreePort(t), "          stat_prefix: "+c.name+"\n          enforcement_type: "+c.enforcement+policy, c.name+"_up")
	}
	p := inproc.Start(t, "\nstatic_resources:\n  listeners:"+listeners+"\n  clusters:"+clusters)
	for _, tc := range []struct {
		listener      string
		allowed, shad int64
	}{
		{"continuous", 3, 3},
		{"onetime", 1, 1},
	} {
		c, err := net.DialTimeout("tcp", p.Addr(tc.listener), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		for _, b := range []string{"a", "b", "c"} {
			if _, err := io.WriteString(c, b); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, 1)
			if _, err := io.ReadFull(c, echo); err != nil || string(echo) != b {
				t.Fatalf("%s: echo %q, %v; want %q", tc.listener, echo, err, b)
			}
		}
		// Counted while the connection is open: its end is a read too.
		if got := p.Stat(t, tc.listener+".rbac.allowed"); got != tc.allowed {
			t.Errorf("%s: rbac.allowed = %d, want %d", tc.listener, got, tc.allowed)
		}
		if got := p.Stat(t, tc.listener+".rbac.shadow_denied"); got != tc.shad {
			t.Errorf("%s: rbac.shadow_denied = %d, want %d", tc.listener, got, tc.shad)
		}
		c.Close()
	}
}
