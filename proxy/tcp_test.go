package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// netFilter is a native Go network filter driven by hooks, exercising
// the TCP proxy the way a Wasm network filter does.
type netFilter struct {
	cb    filter.NetworkCallbacks
	hooks *netHooks
}

type netHooks struct {
	newConn    func(cb filter.NetworkCallbacks) filter.NetworkStatus
	downstream func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus
	upstream   func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus
	mu         sync.Mutex
	log        []string
	infos      []*filter.StreamInfo
}

func (h *netHooks) record(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *netHooks) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (f *netFilter) OnNewConnection() filter.NetworkStatus {
	f.hooks.record("new")
	f.hooks.mu.Lock()
	f.hooks.infos = append(f.hooks.infos, f.cb.Info())
	f.hooks.mu.Unlock()
	if f.hooks.newConn != nil {
		return f.hooks.newConn(f.cb)
	}
	return filter.NetworkContinue
}

func (f *netFilter) OnDownstreamData(b *filter.Buffer, end bool) filter.NetworkStatus {
	f.hooks.record(fmt.Sprintf("down(%d,%v)", b.Len(), end))
	if f.hooks.downstream != nil {
		return f.hooks.downstream(f.cb, b, end)
	}
	return filter.NetworkContinue
}

func (f *netFilter) OnUpstreamData(b *filter.Buffer, end bool) filter.NetworkStatus {
	f.hooks.record(fmt.Sprintf("up(%d,%v)", b.Len(), end))
	if f.hooks.upstream != nil {
		return f.hooks.upstream(f.cb, b, end)
	}
	return filter.NetworkContinue
}

func (f *netFilter) OnUpstreamClose(p filter.PeerType) { f.hooks.record(fmt.Sprintf("upclose(%d)", p)) }
func (f *netFilter) OnDownstreamClose(p filter.PeerType) {
	f.hooks.record(fmt.Sprintf("downclose(%d)", p))
}
func (f *netFilter) OnDestroy() { f.hooks.record("destroy") }

type netFactory struct{ hooks *netHooks }

func (n netFactory) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &netFilter{cb: cb, hooks: n.hooks}
}

// netLoader hands out native network filters by name (and no HTTP ones).
type netLoader map[string]*netHooks

func (l netLoader) LoadHTTPFilter(_ context.Context, _ string, f *config.HTTPFilter) (filter.Factory, error) {
	return nil, fmt.Errorf("no HTTP filter %q", f.Name)
}

func (l netLoader) LoadNetworkFilter(_ context.Context, _ string, f *config.NetworkFilter) (filter.NetworkFactory, error) {
	h, ok := l[f.Name]
	if !ok {
		return nil, fmt.Errorf("no test network filter %q", f.Name)
	}
	return netFactory{h}, nil
}

// echoUpstream is a real TCP service: it echoes what it reads and
// half-closes when the client does.
func echoUpstream(t testing.TB) string {
	t.Helper()
	return tcpUpstream(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
}

// tcpUpstream serves every connection with serve on a loopback port.
func tcpUpstream(t testing.TB, serve func(net.Conn)) string {
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
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// tcpChain is a plaintext chain: the named native network filters, then
// a tcp_proxy to cluster.
func tcpChain(cluster string, filters ...string) *config.FilterChain {
	c := &config.FilterChain{TCPProxy: &config.TCPProxy{StatPrefix: "tcp", Cluster: cluster, IdleTimeout: config.Duration(time.Hour), MaxConnectAttempts: 1}}
	for _, f := range filters {
		c.NetworkFilters = append(c.NetworkFilters, &config.NetworkFilter{Name: f})
	}
	return c
}

// startListener runs a proxy with one listener made of chains.
func startListener(t *testing.T, l netLoader, bufferLimit uint32, chains []*config.FilterChain, clusters ...*config.Cluster) *fixture {
	t.Helper()
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: bufferLimit, FilterChains: chains}},
		Clusters:  clusters,
	}
	return startBootstrap(t, cfg, l)
}

// startBootstrap runs a proxy for a whole bootstrap and stops it at the
// end of the test.
func startBootstrap(t testing.TB, cfg *config.Bootstrap, l FilterLoader) *fixture {
	t.Helper()
	st := stats.New()
	srv, err := New(context.Background(), cfg, Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: st, Loader: l, DrainTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &fixture{srv: srv, addr: srv.Addr("main"), st: st}
}

// exchange connects, writes each part (pausing between parts so they
// arrive as separate reads), half-closes, and returns everything read
// until the proxy closes.
func exchange(t *testing.T, addr string, parts ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading from the proxy: %v (got %q)", err, got)
	}
	return string(got)
}

// counter reads a counter's value; the store creates it at 0 if absent.
func (f *fixture) counter(name string) uint64 { return f.st.Counter(name).Value() }

// waitCounter waits (bounded) until a counter reaches want: stats of a
// connection are final only once its session has finished.
func (f *fixture) waitCounter(t *testing.T, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.counter(name) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", name, f.counter(name), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTCPProxyFilters(t *testing.T) {
	up := echoUpstream(t)
	tests := []struct {
		name  string
		hooks *netHooks
		parts []string
		want  string
		// wantEvents are ordered subsequences of the filter's calls (the two
		// directions interleave freely).
		wantEvents [][]string
	}{
		{
			name:  "pass through",
			hooks: &netHooks{},
			parts: []string{"hello"},
			want:  "hello",
			wantEvents: [][]string{
				{"new", "down(5,false)", "down(0,true)", "downclose(2)", "destroy"},
				{"new", "up(5,false)", "up(0,true)", "upclose(2)", "downclose(2)"},
			},
		},
		{
			name: "prepend to every downstream chunk, as the seed's filter does",
			hooks: &netHooks{downstream: func(_ filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
				if b.Len() > 0 {
					b.Bytes = append([]byte("prefix:"), b.Bytes...)
				}
				return filter.NetworkContinue
			}},
			parts: []string{"one", "two"},
			want:  "prefix:oneprefix:two",
		},
		{
			name: "rewrite upstream data",
			hooks: &netHooks{upstream: func(_ filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
				b.Bytes = bytes.ToUpper(b.Bytes)
				return filter.NetworkContinue
			}},
			parts: []string{"shout"},
			want:  "SHOUT",
		},
		{
			name: "stop buffers downstream data until the end, then sees all of it",
			hooks: &netHooks{downstream: func(_ filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
				if !end {
					return filter.NetworkStopIteration
				}
				b.Bytes = append(b.Bytes, '!')
				return filter.NetworkContinue
			}},
			parts:      []string{"a", "b", "c"},
			want:       "abc!",
			wantEvents: [][]string{{"new", "down(1,false)", "down(2,false)", "down(3,false)", "down(3,true)"}},
		},
		{
			name: "stop on new connection, continue later from another goroutine",
			hooks: &netHooks{newConn: func(cb filter.NetworkCallbacks) filter.NetworkStatus {
				time.AfterFunc(50*time.Millisecond, cb.ContinueReading)
				return filter.NetworkStopIteration
			}},
			parts: []string{"late"},
			want:  "late",
		},
		{
			name: "stop downstream data and continue from the upstream-independent timer",
			hooks: &netHooks{downstream: func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
				if end {
					return filter.NetworkContinue
				}
				time.AfterFunc(20*time.Millisecond, cb.ContinueReading)
				return filter.NetworkStopIteration
			}},
			parts: []string{"held"},
			want:  "held",
		},
		{
			name: "close from the filter ends the connection",
			hooks: &netHooks{downstream: func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
				if bytes.Contains(b.Bytes, []byte("quit")) {
					cb.Close("filter asked")
					return filter.NetworkStopIteration
				}
				return filter.NetworkContinue
			}},
			parts:      []string{"quit"},
			want:       "",
			wantEvents: [][]string{{"new", "down(4,false)", "upclose(1)", "downclose(1)", "destroy"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startListener(t, netLoader{"f": tc.hooks}, 1<<20, []*config.FilterChain{tcpChain("echo", "f")}, staticCluster("echo", up))
			if got := exchange(t, f.addr, tc.parts...); got != tc.want {
				t.Fatalf("client got %q, want %q", got, tc.want)
			}
			f.waitCounter(t, ListenerStatPrefix(f.srv.cfg.Listeners[0])+"downstream_cx_destroy", 1)
			got := tc.hooks.events()
			for _, want := range tc.wantEvents {
				i := 0
				for _, e := range got {
					if i < len(want) && e == want[i] {
						i++
					}
				}
				if i < len(want) {
					t.Fatalf("filter events %v: %q missing or out of order (want subsequence %v)", got, want[i], want)
				}
			}
		})
	}
}

func TestTCPProxyStreamInfo(t *testing.T) {
	up := echoUpstream(t)
	h := &netHooks{}
	chain := tcpChain("echo", "f")
	chain.Name = "plain-chain"
	f := startListener(t, netLoader{"f": h}, 1<<20, []*config.FilterChain{chain}, staticCluster("echo", up))
	if got := exchange(t, f.addr, "x"); got != "x" {
		t.Fatalf("got %q", got)
	}
	f.waitCounter(t, "tcp.tcp.downstream_cx_total", 1)
	f.waitCounter(t, ListenerStatPrefix(f.srv.cfg.Listeners[0])+"downstream_cx_destroy", 1)
	h.mu.Lock()
	info := h.infos[0]
	h.mu.Unlock()
	if info.ConnectionID == 0 || !info.DownstreamAddr.IsValid() || info.LocalAddr.String() != f.addr ||
		info.UpstreamAddr != up || !info.UpstreamLocalAddr.IsValid() || info.ClusterName != "echo" || info.ListenerName != "main" ||
		info.FilterChainName != "plain-chain" || info.DownstreamTLS != nil {
		t.Fatalf("stream info = %+v", info)
	}
	for name, want := range map[string]uint64{
		"tcp.tcp.downstream_cx_rx_bytes_total":     1,
		"tcp.tcp.downstream_cx_tx_bytes_total":     1,
		"cluster.echo.upstream_cx_tx_bytes_total":  1,
		"cluster.echo.upstream_cx_rx_bytes_total":  1,
		"cluster.echo.upstream_cx_total":           1,
		"cluster.echo.upstream_cx_destroy_remote":  1,
		"listener.127.0.0.1_0.downstream_cx_total": 1, // named by the configured address, as Envoy: ip_port
	} {
		if got := f.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := f.st.Gauge("cluster.echo.upstream_cx_active").Value(); got != 0 {
		t.Errorf("upstream_cx_active = %d after the connection ended", got)
	}
}

// TestTCPProxyUpstreamFailures: an upstream that resets mid-stream, a
// refused connection, retries over max_connect_attempts, and the idle
// timeout each end the client connection cleanly, are counted, and the
// proxy keeps serving.
func TestTCPProxyUpstreamFailures(t *testing.T) {
	resetter := tcpUpstream(t, func(c net.Conn) {
		buf := make([]byte, 5)
		_, _ = io.ReadFull(c, buf)
		_, _ = c.Write([]byte("partial"))
		time.Sleep(20 * time.Millisecond)
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
	})
	echo := echoUpstream(t)
	refused := refusedAddr(t)

	t.Run("upstream reset mid-stream", func(t *testing.T) {
		f := startListener(t, nil, 1<<20, []*config.FilterChain{tcpChain("reset")}, staticCluster("reset", resetter))
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = c.Write([]byte("hello"))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "partial" {
			t.Fatalf("client read %q, %v; want the bytes sent before the reset, then a clean end", got, err)
		}
		f.waitCounter(t, "cluster.reset.upstream_cx_destroy_remote", 1)
		// Still serving.
		if got := exchange(t, f.addr, "hello"); got != "partial" {
			t.Fatalf("second connection got %q", got)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		f := startListener(t, nil, 1<<20, []*config.FilterChain{tcpChain("refused")}, staticCluster("refused", refused))
		if got := exchange(t, f.addr, "hello"); got != "" {
			t.Fatalf("got %q, want nothing and a closed connection", got)
		}
		f.waitCounter(t, "cluster.refused.upstream_cx_connect_fail", 1)
		f.waitCounter(t, "tcp.tcp.downstream_cx_no_route", 1)
	})

	t.Run("max_connect_attempts retries another endpoint", func(t *testing.T) {
		chain := tcpChain("mixed")
		chain.TCPProxy.MaxConnectAttempts = 2
		cl := staticCluster("mixed", refused, echo)
		f := startListener(t, nil, 1<<20, []*config.FilterChain{chain}, cl)
		for i := 0; i < 4; i++ { // round robin starts on either endpoint
			if got := exchange(t, f.addr, "again"); got != "again" {
				t.Fatalf("connection %d got %q", i, got)
			}
		}
		if f.counter("cluster.mixed.upstream_cx_connect_fail") == 0 {
			t.Error("no connect failure counted")
		}
	})

	t.Run("attempts exceeded", func(t *testing.T) {
		chain := tcpChain("dead")
		chain.TCPProxy.MaxConnectAttempts = 3
		f := startListener(t, nil, 1<<20, []*config.FilterChain{chain}, staticCluster("dead", refused))
		if got := exchange(t, f.addr, "x"); got != "" {
			t.Fatalf("got %q", got)
		}
		f.waitCounter(t, "cluster.dead.upstream_cx_connect_attempts_exceeded", 1)
		if got := f.counter("cluster.dead.upstream_cx_connect_fail"); got != 3 {
			t.Errorf("connect_fail = %d, want 3", got)
		}
	})

	t.Run("no endpoints", func(t *testing.T) {
		f := startListener(t, nil, 1<<20, []*config.FilterChain{tcpChain("empty")}, staticCluster("empty"))
		if got := exchange(t, f.addr, "x"); got != "" {
			t.Fatalf("got %q", got)
		}
		f.waitCounter(t, "cluster.empty.upstream_cx_none_healthy", 1)
	})

	t.Run("idle timeout", func(t *testing.T) {
		chain := tcpChain("echo")
		chain.TCPProxy.IdleTimeout = config.Duration(150 * time.Millisecond)
		f := startListener(t, nil, 1<<20, []*config.FilterChain{chain}, staticCluster("echo", echo))
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute)) // generous: the timeout is 150 ms
		_, _ = c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: read %v, want EOF", err)
		}
		f.waitCounter(t, "tcp.tcp.idle_timeout", 1)
	})
}

// TestTCPProxyHalfClose: the client half-closes first and still reads
// everything the upstream sends afterwards; then the upstream finishes.
func TestTCPProxyHalfClose(t *testing.T) {
	up := tcpUpstream(t, func(c net.Conn) {
		got, _ := io.ReadAll(c) // until the client's FIN arrives through the proxy
		time.Sleep(30 * time.Millisecond)
		_, _ = fmt.Fprintf(c, "read %d bytes after your FIN", len(got))
		_ = c.(*net.TCPConn).CloseWrite()
	})
	f := startListener(t, nil, 1<<20, []*config.FilterChain{tcpChain("up")}, staticCluster("up", up))
	if got := exchange(t, f.addr, "abc", "def"); got != "read 6 bytes after your FIN" {
		t.Fatalf("got %q", got)
	}
}

// TestTCPProxyLargeTransferFlowControl streams 32 MiB both ways through
// a filter with a 64 KiB buffer limit: flow control pauses reading
// instead of buffering, and the bytes arrive intact.
func TestTCPProxyLargeTransferFlowControl(t *testing.T) {
	up := echoUpstream(t)
	seen := &netHooks{}
	var mu sync.Mutex
	var down, upBytes int
	seen.downstream = func(_ filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
		mu.Lock()
		down += b.Len()
		mu.Unlock()
		return filter.NetworkContinue
	}
	seen.upstream = func(_ filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
		mu.Lock()
		upBytes += b.Len()
		mu.Unlock()
		return filter.NetworkContinue
	}
	f := startListener(t, netLoader{"count": seen}, 64<<10, []*config.FilterChain{tcpChain("echo", "count")}, staticCluster("echo", up))
	const size = 32 << 20
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		// Pseudo-random, so a reordering or a lost chunk changes the sum.
		block := make([]byte, 64<<10)
		state := uint32(1)
		for n := 0; n < size; n += len(block) {
			for i := range block {
				state = state*1664525 + 1013904223
				block[i] = byte(state >> 24)
			}
			sent.Write(block)
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
		t.Fatalf("echoed %d bytes, sha256 match %v; want %d identical bytes", n, bytes.Equal(got.Sum(nil), sent.Sum(nil)), size)
	}
	f.waitCounter(t, ListenerStatPrefix(f.srv.cfg.Listeners[0])+"downstream_cx_destroy", 1)
	mu.Lock()
	defer mu.Unlock()
	if down != size || upBytes != size {
		t.Errorf("filter saw %d bytes down and %d up, want %d each", down, upBytes, size)
	}
	if f.counter("tcp.tcp.downstream_flow_control_paused_reading_total") == 0 {
		t.Error("reading was never paused with a 64 KiB buffer limit")
	}
}

// TestTCPProxyShutdown: a connection still open when the proxy shuts
// down is closed once the drain time is over, and Shutdown returns.
func TestTCPProxyShutdown(t *testing.T) {
	up := echoUpstream(t)
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: []*config.FilterChain{tcpChain("echo")}}},
		Clusters:  []*config.Cluster{staticCluster("echo", up)},
	}
	srv, err := New(context.Background(), cfg, Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New(), DrainTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", srv.Addr("main"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return with a TCP connection open")
	}
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("connection still open after shutdown (read %d bytes)", n)
	}
}

// Listener stats are named by the listener's stat_prefix when it has one
// (Envoy's ListenerImpl scope), else by its address.
func TestListenerStatPrefix(t *testing.T) {
	up := echoUpstream(t)
	for _, tc := range []struct {
		statPrefix, want string
	}{
		{"", "listener.127.0.0.1_0.downstream_cx_total"},
		{"public", "listener.public.downstream_cx_total"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			cfg := &config.Bootstrap{
				Listeners: []*config.Listener{{Name: "main", Address: "127.0.0.1:0", StatPrefix: tc.statPrefix,
					FilterChains: []*config.FilterChain{tcpChain("echo")}}},
				Clusters: []*config.Cluster{staticCluster("echo", up)},
			}
			f := startBootstrap(t, cfg, netLoader{})
			if got := exchange(t, f.addr, "x"); got != "x" {
				t.Fatalf("got %q", got)
			}
			f.waitCounter(t, tc.want, 1)
		})
	}
}
