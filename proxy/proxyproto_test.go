package proxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// proxyProtoYAML: listener "main" requires a PROXY header; "lenient"
// (allow_requests_without_proxy_protocol, v1 disallowed) takes
// connections without one. Both send the downstream addresses to the
// upstream in headers, as the route's header mutations render them.
func proxyProtoYAML(upPort string) string {
	listener := func(name, ip, pp string) string {
		return `
  - name: ` + name + `
    address: {socket_address: {address: ` + ip + `, port_value: 0}}
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
` + pp + `
    - name: envoy.filters.listener.http_inspector
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ` + name + `
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              request_headers_to_add:
              - header: {key: x-remote, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}
              - header: {key: x-local, value: "%DOWNSTREAM_LOCAL_ADDRESS%"}
              routes: [{match: {prefix: /}, route: {cluster: up}}]`
	}
	return `
static_resources:
  listeners:` + listener("main", "127.0.0.1", "        stat_prefix: pp") + listener("lenient", "127.0.0.2", `        allow_requests_without_proxy_protocol: true
        disallowed_versions: [V1]`) + `
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + upPort + `}}}}]}]
`
}

// ppV2 is a v2 PROXY header: command (0 LOCAL, 1 PROXY) and, for PROXY,
// the TCP source and destination.
func ppV2(cmd byte, src, dst netip.AddrPort) []byte {
	b := append([]byte{}, ppV2Sig...)
	var addrs []byte
	fam := byte(0x11) // AF_INET, STREAM
	if src.Addr().Is6() {
		fam = 0x21
	}
	if cmd == 1 {
		addrs = append(addrs, src.Addr().AsSlice()...)
		addrs = append(addrs, dst.Addr().AsSlice()...)
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
		addrs = append(addrs, 0x04, 0x00, 0x01, 'x') // a TLV (NOOP), skipped
	} else {
		fam = 0
	}
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

// TestProxyProtocol: the proxy_protocol listener filter reads v1 and v2
// headers (with the request in the same write, as load balancers send
// them) and the connection's addresses become theirs; LOCAL and UNKNOWN
// keep the socket's; a connection without a header, a malformed or a
// disallowed one is closed; allow_requests_without_proxy_protocol lets a
// plain connection through.
func TestProxyProtocol(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Remote")+" "+r.Header.Get("X-Local"))
	})
	_, port, _ := strings.Cut(up, ":")
	f := startYAML(t, proxyProtoYAML(port), "")
	lenient := f.srv.Addr("lenient")
	const get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	send := func(addr string, data []byte) (string, error) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(data); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	// The socket's own addresses: the client's (loopback), then the
	// listener's.
	local := func(addr string) string { return "127.0.0.1:" }
	src4, dst4 := netip.MustParseAddrPort("203.0.113.7:4321"), netip.MustParseAddrPort("198.51.100.1:443")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::1]:5555"), netip.MustParseAddrPort("[2001:db8::2]:8443")
	for _, tc := range []struct {
		name, addr string
		data       []byte
		want       string // the upstream's answer; prefix match when it ends in ":"
	}{
		{"v1 TCP4", f.addr, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 4321 443\r\n" + get), "203.0.113.7:4321 198.51.100.1:443"},
		{"v1 TCP6", f.addr, []byte("PROXY TCP6 2001:db8::1 2001:db8::2 5555 8443\r\n" + get), "[2001:db8::1]:5555 [2001:db8::2]:8443"},
		{"v1 UNKNOWN", f.addr, []byte("PROXY UNKNOWN\r\n" + get), local(f.addr)},
		{"v2 IPv4", f.addr, append(ppV2(1, src4, dst4), get...), "203.0.113.7:4321 198.51.100.1:443"},
		{"v2 IPv6", f.addr, append(ppV2(1, src6, dst6), get...), "[2001:db8::1]:5555 [2001:db8::2]:8443"},
		{"v2 LOCAL", f.addr, append(ppV2(0, src4, dst4), get...), local(f.addr)},
		{"lenient without header", lenient, []byte(get), local(lenient)},
		{"lenient v2", lenient, append(ppV2(1, src4, dst4), get...), "203.0.113.7:4321 198.51.100.1:443"},
	} {
		got, err := send(tc.addr, tc.data)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if strings.HasSuffix(tc.want, ":") && !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(tc.want, ":") && got != tc.want {
			t.Errorf("%s: upstream saw %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, addr string
		data       []byte
	}{
		{"no header", f.addr, []byte(get)},
		{"malformed v1", f.addr, []byte("PROXY TCP4 203.0.113.7 nope 4321 443\r\n" + get)},
		{"v1 family mismatch", f.addr, []byte("PROXY TCP4 2001:db8::1 198.51.100.1 4321 443\r\n" + get)},
		{"disallowed v1", lenient, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 4321 443\r\n" + get)},
	} {
		if got, err := send(tc.addr, tc.data); err == nil {
			t.Errorf("%s: answered %q, want the connection closed", tc.name, got)
		}
	}
	for name, want := range map[string]uint64{
		"listener.127.0.0.1_0.proxy_proto.pp.versions.v1.found":    3,
		"listener.127.0.0.1_0.proxy_proto.pp.versions.v2.found":    3,
		"listener.127.0.0.1_0.proxy_proto.pp.not_found_disallowed": 1,
		"listener.127.0.0.1_0.proxy_proto.pp.versions.v1.error":    2,
		"listener.127.0.0.2_0.proxy_proto.not_found_allowed":       1,
		"listener.127.0.0.2_0.proxy_proto.versions.v1.disallowed":  1,
	} {
		if got := f.st.Counter(name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestOriginalDstNotRedirected: with the original_dst listener filter, a
// connection netfilter did not redirect keeps its own local address (the
// redirected case needs iptables, which tests cannot set up).
func TestOriginalDstNotRedirected(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Local"))
	})
	_, port, _ := strings.Cut(up, ":")
	yaml := strings.Replace(proxyProtoYAML(port), `    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
        stat_prefix: pp
`, `    listener_filters:
    - name: envoy.filters.listener.original_dst
`, 1)
	f := startYAML(t, yaml, "")
	resp, body := do(t, mustRequest(t, "GET", "http://"+f.addr+"/"))
	if resp.StatusCode != 200 || body != f.addr {
		t.Errorf("local address %d %q, want %q", resp.StatusCode, body, f.addr)
	}
}
