package proxy

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
)

// TestUpstreamTCPKeepalive: a cluster's upstream_connection_options.
// tcp_keepalive sets SO_KEEPALIVE and the configured probe count, idle
// time and interval on the connections the cluster opens (read back from
// the real socket); a field left unset keeps the system's value.
func TestUpstreamTCPKeepalive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	ep := `{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}`
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: ka}}]
  clusters:
  - name: ka
    upstream_connection_options:
      tcp_keepalive: {keepalive_probes: 3, keepalive_time: 77, keepalive_interval: 11}
    load_assignment: {cluster_name: ka, endpoints: [` + ep + `]}
  - name: partial
    upstream_connection_options:
      tcp_keepalive: {keepalive_time: 123}
    load_assignment: {cluster_name: partial, endpoints: [` + ep + `]}
`
	f := startYAML(t, yaml, "")
	sysIdle := readSockopts(t, dialPlain(t))
	for _, tc := range []struct {
		cluster string
		want    [4]int // SO_KEEPALIVE, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL
	}{
		{"ka", [4]int{1, 3, 77, 11}},
		{"partial", [4]int{1, sysIdle[1], 123, sysIdle[3]}},
	} {
		cl := f.srv.currentClusters()[tc.cluster]
		conn, _, err := cl.dialTCP(context.Background(), cl.pick())
		if err != nil {
			t.Fatal(err)
		}
		if got := readSockopts(t, conn); got != tc.want {
			t.Errorf("cluster %s: keepalive, count, idle, interval = %v, want %v", tc.cluster, got, tc.want)
		}
		conn.Close()
	}
}

// dialPlain is a connection with the system's keep-alive values, which
// the test machine may have tuned.
func dialPlain(t *testing.T) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readSockopts(t *testing.T, c net.Conn) [4]int {
	t.Helper()
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("not a TCP connection: %T", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out [4]int
	var serr error
	err = raw.Control(func(fd uintptr) {
		for i, o := range [][2]int{{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE}, {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT}, {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE}, {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL}} {
			v, err := syscall.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				serr = err
			}
			out[i] = v
		}
	})
	if err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return out
}
