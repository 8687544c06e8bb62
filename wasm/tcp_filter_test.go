package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/proxy"
)

// These tests run the tcpfilter test plugin as a network filter of the
// real proxy: a TCP listener with the plugin ahead of a tcp_proxy, real
// sockets on both sides.

// pluginLoader gives the proxy a loaded plugin as its network filter.
type pluginLoader struct{ p *Plugin }

func (l pluginLoader) LoadHTTPFilter(context.Context, string, *config.HTTPFilter) (filter.Factory, error) {
	return l.p, nil
}

func (l pluginLoader) LoadNetworkFilter(context.Context, string, *config.NetworkFilter) (filter.NetworkFactory, error) {
	return l.p, nil
}

func tcpPlugin(t *testing.T, mode string) *config.WasmPlugin {
	return &config.WasmPlugin{Name: "tcpfilter", CodeFile: buildPlugin(t, "tcpfilter"), PluginConfiguration: []byte(mode)}
}

const tcpPrefix = "wasm log tcpfilter: "

// tcpProxyFor runs a proxy whose listener passes connections through the
// plugin to upstream; tlsChain and upstreamTLS are optional.
func tcpProxyFor(t *testing.T, h *testHost, p *Plugin, upstream string, tlsChain *config.DownstreamTLS, upstreamTLS *config.UpstreamTLS) string {
	t.Helper()
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "tcp", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20,
			FilterChains: []*config.FilterChain{{
				TLS:            tlsChain,
				NetworkFilters: []*config.NetworkFilter{{Name: "envoy.filters.network.wasm", Wasm: &p.cfg}},
				TCPProxy:       &config.TCPProxy{StatPrefix: "tcp", Cluster: "up", IdleTimeout: config.Duration(time.Hour), MaxConnectAttempts: 1},
			}},
		}},
		Clusters: []*config.Cluster{{
			Name: "up", Type: config.ClusterStatic, LBPolicy: config.LBRoundRobin, ConnectTimeout: config.Duration(5 * time.Second),
			Endpoints: []config.Endpoint{{Address: upstream}}, TLS: upstreamTLS,
		}},
	}
	srv, err := proxy.New(context.Background(), cfg, proxy.Options{
		Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: h.stats, Loader: pluginLoader{p}, DrainTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv.Addr("tcp")
}

// echoServer echoes each connection until the client half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// talk writes part, half-closes, and reads until the proxy closes the
// connection.
func talk(t *testing.T, c net.Conn, part string) string {
	t.Helper()
	return talkParts(t, c, nil, part)
}

// talkParts is talk writing the parts one by one: before each part
// after the first, arrived(i) returns once part i has been seen by the
// proxy, so that each part is a read of its own (a pause between writes
// would not ensure it on a busy machine).
func talkParts(t *testing.T, c net.Conn, arrived func(i int), parts ...string) string {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	for i, p := range parts {
		if i > 0 {
			arrived(i - 1)
		}
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read %q then %v", got, err)
	}
	return string(got)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitLog waits until the plugin has logged line (the connection's last
// callbacks run after the client has seen the end).
func waitLog(t *testing.T, h *testHost, line string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs := h.logs.pluginLogs(tcpPrefix)
		for _, l := range logs {
			if l == line || strings.HasPrefix(line, "~") && strings.HasPrefix(l, line[1:]) {
				return logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin never logged %q; it logged:\n  %s", line, strings.Join(logs, "\n  "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireLogPrefixes is requireLogs where an entry starting with "~"
// matches any line with that prefix.
func requireLogPrefixes(t *testing.T, got []string, want ...string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && (g == want[i] || strings.HasPrefix(want[i], "~") && strings.HasPrefix(g, want[i][1:])) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("log line %q missing or out of order; plugin logged:\n  %s", want[i], strings.Join(got, "\n  "))
	}
}

func TestTCPFilterLifecycle(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, tcpPlugin(t, "lifecycle"))
	addr := tcpProxyFor(t, h, p, echoServer(t), nil, nil)
	if got := talk(t, dial(t, addr), "hello"); got != "hello" {
		t.Fatalf("got %q", got)
	}
	logs := waitLog(t, h, "delete 2")
	// The two directions interleave; each keeps its order, and the end
	// is done → log → delete (Envoy's TCP order).
	requireLogs(t, logs, "create 2 1", "new_connection 2", "downstream_data 2 5 0", "downstream_data 2 0 1",
		"downstream_close 2 2", "done 2", "log 2", "delete 2")
	requireLogs(t, logs, "new_connection 2", "upstream_data 2 5 0", "upstream_data 2 0 1", "upstream_close 2 0",
		"downstream_close 2 2", "done 2", "log 2", "delete 2")
}

func TestTCPFilterModes(t *testing.T) {
	echo := echoServer(t)
	tests := []struct {
		mode     string
		parts    []string
		want     string
		wantLogs []string
	}{
		{"prepend", []string{"abc"}, "prefix:abc:suffix", []string{"prepend 0", "append 0"}},
		{"replace", []string{"abcdef"}, "replaced", []string{"replace 0"}},
		// Envoy's edit rules: start 0 or at the end only; reads clamp to the
		// buffer; the upstream buffer is not available downstream.
		{"rules", []string{"hello"}, "hello!", []string{
			"rules: data hello 0, status size 5, upstream buffer 1, middle 2, type 9 2, from 2 llo", "append 0"}},
		{"pause", []string{"a", "b", "c"}, "abc", []string{
			"downstream_data 2 1 0", "downstream_data 2 2 0", "downstream_data 2 3 0", "downstream_data 2 3 1"}},
		{"pause_tick", []string{"late"}, "late", []string{"new_connection 2", "downstream_data 2 4 0",
			"tick: effective 0, continue upstream 12, continue downstream 0", "upstream_data 2 4 0"}},
		{"close", []string{"quit"}, "", []string{"close 0", "downstream_close 2 1", "done 2"}},
		{"close_upstream", []string{"x"}, "", []string{"close upstream 0", "downstream_close 2 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			h := newTestHost(t, 1)
			p := h.load(t, tcpPlugin(t, tc.mode))
			addr := tcpProxyFor(t, h, p, echo, nil, nil)
			// Each part is written once the plugin has seen the ones
			// before it (the pause mode's log counts what it holds).
			arrived := func(i int) {
				n := 0
				for _, p := range tc.parts[:i+1] {
					n += len(p)
				}
				waitLog(t, h, fmt.Sprintf("downstream_data 2 %d 0", n))
			}
			if got := talkParts(t, dial(t, addr), arrived, tc.parts...); got != tc.want {
				t.Fatalf("client got %q, want %q", got, tc.want)
			}
			requireLogs(t, waitLog(t, h, "delete 2"), tc.wantLogs...)
		})
	}
}

// TestTCPFilterTrap: a trap closes the connection (FAIL_CLOSED) or lets
// it through (FAIL_OPEN), is counted, and the proxy keeps serving.
func TestTCPFilterTrap(t *testing.T) {
	echo := echoServer(t)
	for _, policy := range []config.FailurePolicy{config.FailClosed, config.FailOpen} {
		t.Run(string(policy), func(t *testing.T) {
			h := newTestHost(t, 1)
			cfg := tcpPlugin(t, "trap")
			cfg.FailurePolicy = policy
			p := h.load(t, cfg)
			addr := tcpProxyFor(t, h, p, echo, nil, nil)
			want := ""
			if policy == config.FailOpen {
				want = "trap"
			}
			if got := talk(t, dial(t, addr), "trap"); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if n := h.stats.Counter("wasm.tcpfilter.runtime_errors").Value(); n != 1 {
				t.Errorf("runtime_errors = %d, want 1", n)
			}
			// The only instance is poisoned: later connections follow the
			// same policy, and the listener still accepts them.
			if got := talk(t, dial(t, addr), "next"); got != strings.Replace(want, "trap", "next", 1) {
				t.Fatalf("next connection got %q", got)
			}
		})
	}
}

// TestTCPFilterTrapAnswersHeldConnections: a connection whose data the
// guest holds paused is answered when its instance traps on another
// connection, as the policy says (closed, or let through under
// FAIL_OPEN), instead of waiting for a resume that cannot come.
func TestTCPFilterTrapAnswersHeldConnections(t *testing.T) {
	echo := echoServer(t)
	for _, tc := range []struct {
		policy config.FailurePolicy
		want   string
	}{
		{config.FailClosed, ""},
		{config.FailReload, ""},
		{config.FailOpen, "hold"},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			h := newTestHost(t, 1)
			cfg := tcpPlugin(t, "trap")
			cfg.FailurePolicy = tc.policy
			p := h.load(t, cfg)
			addr := tcpProxyFor(t, h, p, echo, nil, nil)
			held := make(chan string, 1)
			heldConn := dial(t, addr)
			start := time.Now()
			go func() { held <- talk(t, heldConn, "hold") }()
			waitLog(t, h, "hold 2")
			wantTrap := ""
			if tc.policy == config.FailOpen {
				wantTrap = "trap"
			}
			if got := talk(t, dial(t, addr), "trap"); got != wantTrap {
				t.Errorf("trapping connection got %q, want %q", got, wantTrap)
			}
			// Unanswered, the held connection would wait for the tcp_proxy
			// idle timeout (an hour); the bound is generous, below talk's
			// own deadline.
			select {
			case got := <-held:
				if got != tc.want {
					t.Errorf("held connection got %q, want %q", got, tc.want)
				}
				t.Logf("held connection answered after %v", time.Since(start))
			case <-time.After(25 * time.Second):
				t.Fatal("the held connection was never answered")
			}
		})
	}
}

// TestTCPFilterProperties reads the connection.* and upstream.*
// properties, plaintext and over mTLS both ways.
func TestTCPFilterProperties(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "proxy"}, DNSNames: []string{"proxy.example.com"}})
	alice := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}},
		URIs: []string{"spiffe://cluster.local/ns/kafka/sa/alice"}, DNSNames: []string{"alice.example.com"}})
	broker := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "broker"}, DNSNames: []string{"broker.internal"}})
	proxyClient := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "the proxy"}})

	t.Run("plaintext", func(t *testing.T) {
		h := newTestHost(t, 1)
		p := h.load(t, tcpPlugin(t, "properties"))
		addr := tcpProxyFor(t, h, p, echoServer(t), nil, nil)
		c := dial(t, addr)
		local := c.LocalAddr().String()
		if got := talk(t, c, "x"); got != "x" {
			t.Fatalf("got %q", got)
		}
		requireLogPrefixes(t, waitLog(t, h, "delete 2"),
			"source.address="+local, "destination.address="+addr, "~connection.id=",
			"connection.mtls=false/00", "connection.requested_server_name=",
			"connection.tls_version: status 1", "connection.subject_peer_certificate: status 1",
			"xds.cluster_name=up", "plugin_name=tcpfilter",
			"~upstream.address=", "~upstream.port=", "~upstream.local_address=127.0.0.1:", "upstream.tls_version: status 1")
	})

	t.Run("mTLS both ways", func(t *testing.T) {
		// The upstream requires the proxy's client certificate.
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{broker.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					b, _ := io.ReadAll(c)
					_, _ = c.Write(b)
				}()
			}
		}()
		caPEM := config.DataSource{Inline: ca.CertPEM}
		down := &config.DownstreamTLS{RequireClientCertificate: true, CommonTLS: config.CommonTLS{
			MinVersion: "TLSv1_2", MaxVersion: "TLSv1_3", TrustedCA: &caPEM,
			Certificates: []config.TLSCertificate{{CertificateChain: config.DataSource{Inline: server.CertPEM}, PrivateKey: config.DataSource{Inline: server.KeyPEM}}},
		}}
		up := &config.UpstreamTLS{SNI: "broker.internal", CommonTLS: config.CommonTLS{
			MinVersion: "TLSv1_2", MaxVersion: "TLSv1_3", TrustedCA: &caPEM,
			Certificates: []config.TLSCertificate{{CertificateChain: config.DataSource{Inline: proxyClient.CertPEM}, PrivateKey: config.DataSource{Inline: proxyClient.KeyPEM}}},
		}}
		h := newTestHost(t, 1)
		p := h.load(t, tcpPlugin(t, "properties"))
		addr := tcpProxyFor(t, h, p, ln.Addr().String(), down, up)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.example.com", Certificates: []tls.Certificate{alice.TLS}})
		if err != nil {
			t.Fatal(err)
		}
		if got := talk(t, c, "over TLS"); got != "over TLS" {
			t.Fatalf("got %q", got)
		}
		digest := sha256.Sum256(alice.Leaf.Raw)
		requireLogs(t, waitLog(t, h, "delete 2"),
			"connection.mtls=true/01", "connection.requested_server_name=proxy.example.com", "connection.tls_version=TLSv1.3",
			"connection.subject_peer_certificate=CN=alice,O=Acme",
			"connection.uri_san_peer_certificate=spiffe://cluster.local/ns/kafka/sa/alice",
			"connection.dns_san_peer_certificate=alice.example.com",
			"connection.sha256_peer_certificate_digest="+fmt.Sprintf("%x", digest[:]),
			"connection.subject_local_certificate=CN=proxy", "connection.dns_san_local_certificate=proxy.example.com",
			"connection.uri_san_local_certificate: status 1",
			"upstream.tls_version=TLSv1.3", "upstream.subject_peer_certificate=CN=broker",
			"upstream.subject_local_certificate=CN=the proxy", "upstream.dns_san_peer_certificate=broker.internal")
	})
}

// TestTCPFilter100MB streams 100 MiB through the proxy and the plugin to
// an echo upstream and back: the bytes arrive intact both ways, and the
// plugin saw every one of them (its FNV-1a hash of the downstream bytes
// equals the client's).
func TestTCPFilter100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB transfer")
	}
	h := newTestHost(t, 1)
	// A throughput test, not a deadline test: a generous call deadline,
	// so a slow run (-race, a busy machine) measures data, not CPU.
	pc := tcpPlugin(t, "count")
	pc.EnvKeyValues = map[string]string{EnvCallDeadline: "10000"}
	p := h.load(t, pc)
	addr := tcpProxyFor(t, h, p, echoServer(t), nil, nil)
	const size = 100 << 20
	c := dial(t, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	sent, sentFNV := sha256.New(), fnv.New64a()
	errc := make(chan error, 1)
	go func() {
		block := make([]byte, 256<<10)
		state := uint32(7)
		for n := 0; n < size; n += len(block) {
			for i := range block {
				state = state*1664525 + 1013904223
				block[i] = byte(state >> 24)
			}
			sent.Write(block)
			sentFNV.Write(block)
			if _, err := c.Write(block); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.(*net.TCPConn).CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatalf("received %d bytes, sha256 equal %v; want %d identical bytes", n, bytes.Equal(got.Sum(nil), sent.Sum(nil)), size)
	}
	want := "count: down " + strconv.Itoa(size) + " fnv " + strconv.FormatUint(sentFNV.Sum64(), 16) + " up " + strconv.Itoa(size)
	waitLog(t, h, want)
}
